"""Free loopback ports for the servers the tests start (one helper for every test package)."""

from __future__ import annotations

import socket

# Ports already given to a server of this test session. A server binds its port only seconds after it is
# chosen (imports, model load), and in between the kernel may offer the same just-closed port again.
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on now and that this session has not handed out before."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
