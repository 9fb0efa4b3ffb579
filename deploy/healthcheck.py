"""Container health check: GET $SPARSEFLEET_HEALTH_URL, healthy on HTTP 200 (stdlib only: no curl here).

The gateway's containers point it at /ready (a replica is serving), `vllm serve` engines at their /health.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8000/health"


def main() -> int:
    url = os.environ.get("SPARSEFLEET_HEALTH_URL", DEFAULT_URL)
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
