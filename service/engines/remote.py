"""A replica that is an OpenAI-compatible `vllm serve` elsewhere, streamed over HTTP.

HTTP goes through `http1`, the gateway's own small HTTP/1.1 client (that module says why), and the stream
chunks are decoded with msgspec: every millisecond of CPU the gateway spends per request is added latency
and one the engines sharing the cores do not get.

Token counts come from vLLM's `continuous_usage_stats` (usage on every chunk), so deltas carry real token
numbers. Closing a response before its end closes the connection, which vLLM's server turns into an abort.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from service.engines.base import Delta, EngineError, GenerationInput, PreparedRequest, SamplingOptions
from service.engines.http1 import HTTPError, Pool
from service.errors import InvalidRequest
from service.settings import RemoteReplicaConfig

log = logging.getLogger(__name__)

_decode = msgspec.json.decode
_encode = msgspec.json.encode


class RemoteEngine:
    kind = "remote"

    def __init__(self, config: RemoteReplicaConfig) -> None:
        self._config = config
        self._base = str(config.url).rstrip("/")
        self._pool: Pool | None = None
        self._model: str | None = None
        self._max_model_len: int | None = None

    async def start(self) -> None:
        cfg = self._config
        headers = {"Authorization": f"Bearer {cfg.api_key.get_secret_value()}"} if cfg.api_key else {}
        self._pool = Pool(
            self._base,
            connect_timeout_s=cfg.connect_timeout_s,
            read_timeout_s=cfg.read_timeout_s,
            headers=headers,
        )

    async def _discover(self) -> None:
        """Which model the server serves and its context; done on the first health check so that a server
        still loading (or restarting) keeps the replica unhealthy until it answers, not failed for good."""
        try:
            status, body = await self._get("/v1/models")
            if status != 200:
                raise HTTPError(f"HTTP {status}")
            cards = _decode(body).get("data", [])
        except (HTTPError, msgspec.DecodeError, AttributeError) as exc:
            raise EngineError(f"{self._base} did not list its models: {_describe(exc)}") from exc
        wanted = self._config.served_model
        card = next((c for c in cards if wanted is None or c.get("id") == wanted), None)
        if card is None:
            listed = ", ".join(str(c.get("id")) for c in cards) or "nothing"
            raise EngineError(f"{self._base} does not serve {wanted!r} (it lists {listed})")
        self._model = card["id"]
        self._max_model_len = card.get("max_model_len")

    async def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    async def check_health(self) -> None:
        if self._model is None:
            await self._discover()
        try:
            status, _ = await self._get("/health")
        except HTTPError as exc:
            raise EngineError(f"{self._base} unreachable: {_describe(exc)}") from exc
        if status != 200:
            raise EngineError(f"{self._base}/health answered {status}")

    async def _get(self, path: str) -> tuple[int, bytes]:
        response = await self._require().request("GET", path)
        try:
            return response.status, await response.read()
        finally:
            response.close()

    @property
    def max_model_len(self) -> int | None:
        return self._max_model_len

    @property
    def needs_restart(self) -> bool:
        return False  # the remote process is someone else's to restart; it is re-admitted once healthy

    def engine_requests(self) -> int | None:
        return None

    async def prepare(self, request: GenerationInput, options: SamplingOptions) -> PreparedRequest:
        if self._model is None:
            raise EngineError(f"{self._base} has not answered yet")
        limit = self._max_model_len
        if limit is not None and options.max_tokens >= limit:
            raise InvalidRequest(
                f"`max_tokens` {options.max_tokens} exceeds the context length {limit}", param="max_tokens"
            )
        body: dict[str, Any] = {
            "model": self._model,
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
            "top_p": options.top_p,
            "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        }
        if options.stop:
            body["stop"] = list(options.stop)
        if options.seed is not None:
            body["seed"] = options.seed
        if options.ignore_eos:
            body["ignore_eos"] = True
        if request.messages is not None:
            body["messages"] = list(request.messages)
            path = "/v1/chat/completions"
        else:
            body["prompt"] = request.prompt
            path = "/v1/completions"
        return PreparedRequest(request, options, None, payload=(path, _encode(body)))

    async def generate(self, prepared: PreparedRequest, request_id: str) -> AsyncIterator[Delta]:
        path, body = prepared.payload
        try:
            response = await self._require().request(
                "POST", path, body=body, headers={"X-Request-Id": request_id}
            )
        except HTTPError as exc:
            raise EngineError(f"{self._base}: {_describe(exc)}") from exc
        completion_tokens = 0
        last: Delta | None = None
        pending = b""
        try:
            if response.status != 200:
                raise _status_error(response.status, (await response.read()).decode(errors="replace"))
            async for data in response.chunks():
                lines = (pending + data).split(b"\n") if pending else data.split(b"\n")
                pending = lines.pop()  # an event may span chunks: keep the unfinished line
                for line in lines:
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        continue  # read on to the end of the body so the connection goes back to the pool
                    chunk = _decode(payload)
                    if "error" in chunk:
                        raise EngineError(f"{self._base} failed mid-stream: {chunk['error']}")
                    delta = _delta(chunk, completion_tokens)
                    if delta is None:
                        continue
                    completion_tokens += delta.tokens
                    if delta.finish_reason is not None:
                        # Held back until the body ends: callers stop at the finish, and a response closed
                        # before its end would take its connection out of the pool (a connect per request).
                        last = delta
                        continue
                    yield delta
            if last is not None:
                yield last
        except HTTPError as exc:
            raise EngineError(f"{self._base}: {_describe(exc)}") from exc
        except (msgspec.DecodeError, AttributeError, TypeError) as exc:
            raise EngineError(f"{self._base} sent an unreadable stream chunk") from exc
        finally:
            # Synchronous, so a cancelled caller (client gone, timeout) cannot interrupt it: an unfinished
            # response closes its connection, which is how the server learns to abort the request.
            response.close()

    def _require(self) -> Pool:
        if self._pool is None:
            raise EngineError(f"{self._config.name} is not connected")
        return self._pool


def _delta(chunk: dict[str, Any], seen_tokens: int) -> Delta | None:
    usage = chunk.get("usage") or {}
    choices = chunk.get("choices") or []
    if not choices:
        return None  # the final usage-only chunk: its numbers already arrived with the last choice chunk
    choice = choices[0]
    text = choice.get("text")
    if text is None:
        text = (choice.get("delta") or {}).get("content") or ""
    total = usage.get("completion_tokens")
    tokens = max(total - seen_tokens, 0) if total is not None else (1 if text else 0)
    return Delta(
        text=text,
        tokens=tokens,
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=usage.get("prompt_tokens"),
    )


def _status_error(status: int, text: str) -> Exception:
    try:
        error = _decode(text).get("error") or {}
    except (msgspec.DecodeError, AttributeError):
        error = {}
    message = error.get("message") or text[:200] or f"HTTP {status}"
    if 400 <= status < 500 and status not in (408, 429):
        return InvalidRequest(message, param=error.get("param"))
    return EngineError(f"remote answered {status}: {message}")


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
