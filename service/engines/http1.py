"""A small keep-alive HTTP/1.1 client for the `remote` engine: asyncio protocol + httptools' C parser.

Why not aiohttp (or httpx): for one streamed one-token completion aiohttp's client spends ~1 ms of CPU
(measured: 1.05 ms against 0.35 ms for a protocol like this one, same `vllm serve`, uvloop), and on a
CPU-bound host every such millisecond is added latency and one the engines do not get. The remote engine needs
little of HTTP: a few requests to one origin, bodies it sends whole, responses it streams, connection reuse,
connect/read timeouts, and a way to abort a response (closing its connection, which vLLM turns into an
abort of the request). That is all this module does.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools


class HTTPError(Exception):
    """The request could not be sent or its response not be read (refused, reset, timed out, garbled)."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.response: Response | None = None
        self._parser: httptools.HttpResponseParser | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.response is not None:
            reason = f"connection lost: {exc}" if exc else "server closed the connection"
            self.response._fail(HTTPError(reason))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost reports it

    def send(self, request: bytes, response: Response) -> None:
        self.response = response
        self._parser = httptools.HttpResponseParser(self)
        assert self.transport is not None
        self.transport.write(request)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None or self._parser is None:
            self.abort()  # bytes nobody asked for: the connection can no longer be trusted
            return
        response.received = True
        response.last_data_at = response.loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            response._fail(HTTPError(f"malformed HTTP response: {exc}"))
            self.abort()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        self.response.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        assert self.response is not None and self._parser is not None
        self.response._start(self._parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response._feed(body)

    def on_message_complete(self) -> None:
        assert self.response is not None and self._parser is not None
        response, self.response = self.response, None
        response._complete(self._parser.should_keep_alive())
        self._parser = None


class Response:
    """A response whose body arrives as it comes; `close()` it when done (aborts it when unfinished)."""

    def __init__(self, pool: Pool, connection: _Connection) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.received = False  # any byte of it arrived (a reused connection that fails before can be retried)
        self.loop = asyncio.get_running_loop()
        self.last_data_at = self.loop.time()
        self._pool = pool
        self._connection: _Connection | None = connection
        self._chunks: collections.deque[bytes] = collections.deque()
        self._complete_keep_alive: bool | None = None  # set once the whole body is in
        self._error: HTTPError | None = None
        self._waiter: asyncio.Future[None] | None = None
        # One timer per response rather than a timeout per wait: it re-arms itself for what is left of the
        # silence allowed since the last byte, and fails the response once that has passed.
        self._timer: asyncio.TimerHandle | None = None
        self._timer = self.loop.call_later(pool.read_timeout_s, self._check_silence)

    def _check_silence(self) -> None:
        limit = self._pool.read_timeout_s
        silent = self.loop.time() - self.last_data_at
        if silent >= limit:
            self._timer = None
            self._fail(HTTPError(f"no data for {limit:g} s"))
        else:
            self._timer = self.loop.call_later(limit - silent, self._check_silence)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def done(self) -> bool:
        return self._complete_keep_alive is not None

    # fed by the connection
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _start(self, status: int) -> None:
        self.status = status
        self._wake()

    def _feed(self, body: bytes) -> None:
        self._chunks.append(body)
        self._wake()

    def _complete(self, keep_alive: bool) -> None:
        self._complete_keep_alive = keep_alive
        self._stop_timer()
        self._wake()

    def _fail(self, error: HTTPError) -> None:
        if self._complete_keep_alive is None and self._error is None:
            self._error = error
            self._stop_timer()
            self._wake()

    async def _wait(self) -> None:
        self._waiter = self.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def _started(self) -> None:
        while not self.status:
            if self._error is not None:
                raise self._error
            await self._wait()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The (de-chunked) body as it arrives."""
        chunks = self._chunks
        while True:
            if chunks:
                yield chunks.popleft()
            elif self._error is not None:
                raise self._error
            elif self._complete_keep_alive is not None:
                return
            else:
                await self._wait()

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    def close(self) -> None:
        """Give the connection back when the response was read to its end, else close it (an abort)."""
        self._stop_timer()
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._complete_keep_alive and not connection.closed and self._error is None:
            self._pool._release(connection)
        else:
            connection.response = None
            connection.abort()


class Pool:
    """Keep-alive connections to one origin (`http://host:port/prefix`, https too)."""

    def __init__(
        self, base_url: str, *, connect_timeout_s: float, read_timeout_s: float, headers: dict[str, str]
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url}")
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if url.scheme == "https" else None
        self._prefix = url.path.rstrip("/")
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        host = url.netloc.rpartition("@")[2]
        fixed = {"Host": host, "User-Agent": "sparsefleet-gateway", **headers}
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self._idle: list[_Connection] = []

    async def request(
        self, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        """Send a request and return once its status and headers are in. A pooled connection the server
        closed meanwhile (keep-alive timeout) is retried on a fresh one, as long as no response byte came."""
        head = f"{method} {self._prefix}{path} HTTP/1.1\r\n".encode("latin-1") + self._fixed
        if headers:
            head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1")
        if body is not None:
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        message = head + b"\r\n" + (body or b"")
        while True:
            connection, reused = self._take()
            if connection is None:
                connection = await self._connect()
            response = Response(self, connection)
            connection.send(message, response)
            try:
                await response._started()
            except HTTPError:
                response.close()
                if reused and not response.received:
                    continue
                raise
            except BaseException:
                response.close()
                raise
            return response

    def _take(self) -> tuple[_Connection | None, bool]:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection, True
        return None, False

    def _release(self, connection: _Connection) -> None:
        self._idle.append(connection)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, connection = await loop.create_connection(
                    _Connection, self._host, self._port, ssl=self._ssl
                )
        except TimeoutError:
            raise HTTPError(f"connect timed out after {self.connect_timeout_s:g} s") from None
        except OSError as exc:
            raise HTTPError(str(exc) or type(exc).__name__) from exc
        return connection

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.abort()
