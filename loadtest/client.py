"""An httpx client for any OpenAI-compatible server (the gateway, or plain `vllm serve`).

Each request streams (`stream_options.include_usage`), so TTFT and the gaps between output chunks are seen on
the client side. Every request ends as a `RequestRecord`, success or a classified error; nothing raises out of
`send` except a programming error, so one bad request never stops a run.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Literal

import httpx

from loadtest.errors import TargetError
from loadtest.records import RequestRecord
from loadtest.workloads import RequestSpec

Endpoint = Literal["completions", "chat"]
_PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


class GatewayClient:
    """Talks to one server. Use as `async with GatewayClient(url) as client: ...`."""

    def __init__(
        self,
        base_url: str,
        *,
        endpoint: Endpoint = "completions",
        request_timeout_s: float = 120.0,
        ignore_eos: bool = True,
        connect_timeout_s: float = 5.0,
        api_key: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.endpoint = endpoint
        self.request_timeout_s = request_timeout_s
        self.ignore_eos = ignore_eos
        # No pool limit: the profile bounds how many requests are in flight, the client must not queue them.
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            timeout=httpx.Timeout(None, connect=connect_timeout_s),
            headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
        )

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    # -- discovery -------------------------------------------------------------------------------------------

    async def models(self) -> list[dict[str, Any]]:
        """The cards of `/v1/models` (the gateway lists variants and replicas, each with its `kind`)."""
        response = await self._get("/v1/models")
        if response.status_code != 200:
            raise TargetError(
                f"{self.base_url}/v1/models answered HTTP {response.status_code}; "
                "is this an OpenAI-compatible server?"
            )
        try:
            cards = response.json()["data"]
            if not all(isinstance(c, dict) and "id" in c for c in cards):
                raise TypeError
            return cards
        except (ValueError, KeyError, TypeError):
            raise TargetError(f"{self.base_url}/v1/models did not return an OpenAI model list") from None

    async def check_variants(self, variants: list[str]) -> None:
        """Every name must be served (a variant, or a replica to pin to); the error lists the variants."""
        cards = await self.models()
        unknown = [v for v in variants if v not in {c["id"] for c in cards}]
        if unknown:
            named = [c["id"] for c in cards if c.get("kind", "variant") == "variant"]
            raise TargetError(
                f"unknown variant {', '.join(map(repr, unknown))}; {self.base_url} serves: "
                f"{', '.join(named) or 'nothing'}"
            )

    async def replicas(self) -> Any | None:
        """The gateway's `/replicas` body, or None where the server has no such route (plain vLLM)."""
        response = await self._get("/replicas", optional=True)
        if response is None or response.status_code != 200:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    async def scrape(self) -> str | None:
        """`/metrics` as text, or None when the server has none."""
        response = await self._get("/metrics", optional=True)
        return response.text if response is not None and response.status_code == 200 else None

    async def _get(self, path: str, optional: bool = False) -> httpx.Response | None:
        try:
            return await self._http.get(path, timeout=30.0)
        except httpx.HTTPError as exc:
            if optional:
                return None
            raise TargetError(f"cannot reach {self.base_url}: {_reason(exc)}") from None

    # -- one measured request --------------------------------------------------------------------------------

    def payload(self, spec: RequestSpec, variant: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": variant,
            "max_tokens": spec.max_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.ignore_eos:  # vLLM's extension: generate exactly max_tokens, so variants do the same work
            body["ignore_eos"] = True
        if self.endpoint == "chat":
            body["messages"] = spec.messages or [{"role": "user", "content": spec.prompt}]
        else:
            if spec.prompt is None:
                raise TargetError(f"request {spec.index} has chat messages; use --endpoint chat")
            body["prompt"] = spec.prompt
        return body

    async def send(
        self,
        spec: RequestSpec,
        variant: str,
        *,
        phase_start: float,
        scheduled_s: float,
        stop_at: float | None = None,
    ) -> RequestRecord:
        """Send one streaming request and time it. `stop_at` (a `time.perf_counter()` value) ends the phase:
        a request still running then is recorded as `cancelled`; past `request_timeout_s` as `timeout`."""
        body = self.payload(spec, variant)
        start = time.perf_counter()
        record = RequestRecord(
            index=spec.index, variant=variant, scheduled_s=scheduled_s, start_s=start - phase_start
        )
        budget = self.request_timeout_s
        cancelled_first = stop_at is not None and stop_at - start < budget
        if cancelled_first:
            budget = max(0.0, stop_at - start)
        try:
            async with asyncio.timeout(budget):
                await self._stream(body, start, record)
        except TimeoutError:
            record.error = "cancelled" if cancelled_first else "timeout"
            record.message = (
                "still running when the phase ended"
                if cancelled_first
                else f"no answer within {self.request_timeout_s:g}s"
            )
        except httpx.TimeoutException as exc:
            record.error, record.message = "timeout", _reason(exc)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            record.error, record.message = "connection", _reason(exc)
        except httpx.HTTPError as exc:  # broken connection mid-stream, protocol errors
            record.error, record.message = "stream", _reason(exc)
        if record.error is not None:
            record.ttft_s = record.e2el_s = None
        return record

    async def _stream(self, body: dict[str, Any], start: float, record: RequestRecord) -> None:
        last: float | None = None
        chunks = 0
        usage: dict[str, Any] | None = None
        async with self._http.stream("POST", _PATHS[self.endpoint], json=body) as response:
            if response.status_code != 200:
                await response.aread()
                record.error, record.message = _classify_status(response)
                return
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    event = json.loads(data)
                except json.JSONDecodeError:
                    record.error, record.message = "stream", f"unparseable event: {data[:80]}"
                    return
                if "error" in event:
                    record.error, record.message = "stream", _error_message(event)
                    return
                usage = event.get("usage") or usage
                if _is_token_event(event, self.endpoint):
                    now = time.perf_counter()
                    if last is None:
                        record.ttft_s = now - start
                    else:
                        record.itl_s.append(now - last)
                    last = now
                    chunks += 1
        if chunks == 0 or last is None:
            record.error, record.message = "stream", "the stream ended without any output"
            return
        record.e2el_s = last - start  # as vllm bench serve: until the last output chunk
        record.output_tokens = int(usage.get("completion_tokens") or chunks) if usage else chunks
        if usage and usage.get("prompt_tokens") is not None:
            record.prompt_tokens = int(usage["prompt_tokens"])


def _is_token_event(event: dict[str, Any], endpoint: Endpoint) -> bool:
    """Whether an event carries output. As `vllm bench serve`, a completion chunk with choices counts even if
    its text is empty (special tokens, partial UTF-8); a chat chunk needs content (the first chunk of a chat
    stream only announces the assistant role)."""
    choices = event.get("choices") or []
    if endpoint == "completions":
        return bool(choices)
    return any((c.get("delta") or {}).get("content") for c in choices)


def _classify_status(response: httpx.Response) -> tuple[str, str]:
    message = f"HTTP {response.status_code}: {_error_message(_json_or_text(response))}"
    kind = {429: "rejected", 503: "unavailable", 504: "timeout"}.get(response.status_code, "http_error")
    return kind, message


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:200]


def _error_message(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body))
        if isinstance(error, dict):
            return str(error.get("message", error))[:300]
        return str(error)[:300]
    return str(body)[:300]


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
