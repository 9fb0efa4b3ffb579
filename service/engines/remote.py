"""A replica that is an OpenAI-compatible `vllm serve` elsewhere, streamed over httpx.

Token counts come from vLLM's `continuous_usage_stats` (usage on every chunk), so deltas carry real token
numbers. Closing the stream closes the connection, which vLLM's server turns into an abort.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from service.engines.base import Delta, EngineError, GenerationInput, PreparedRequest, SamplingOptions
from service.errors import InvalidRequest
from service.settings import RemoteReplicaConfig

log = logging.getLogger(__name__)


class RemoteEngine:
    kind = "remote"

    def __init__(self, config: RemoteReplicaConfig) -> None:
        self._config = config
        self._client: httpx.AsyncClient | None = None
        self._model: str | None = None
        self._max_model_len: int | None = None

    async def start(self) -> None:
        cfg = self._config
        headers = {"Authorization": f"Bearer {cfg.api_key.get_secret_value()}"} if cfg.api_key else {}
        self._client = httpx.AsyncClient(
            base_url=str(cfg.url).rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(cfg.read_timeout_s, connect=cfg.connect_timeout_s),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
        )

    async def _discover(self) -> None:
        """Which model the server serves and its context; done on the first health check so that a server
        still loading (or restarting) keeps the replica unhealthy until it answers, not failed for good."""
        try:
            response = await self._require().get("/v1/models")
            response.raise_for_status()
            cards = response.json().get("data", [])
        except (httpx.HTTPError, ValueError) as exc:
            raise EngineError(f"{self._config.url} did not list its models: {_describe(exc)}") from exc
        wanted = self._config.served_model
        card = next((c for c in cards if wanted is None or c.get("id") == wanted), None)
        if card is None:
            listed = ", ".join(str(c.get("id")) for c in cards) or "nothing"
            raise EngineError(f"{self._config.url} does not serve {wanted!r} (it lists {listed})")
        self._model = card["id"]
        self._max_model_len = card.get("max_model_len")

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def check_health(self) -> None:
        if self._model is None:
            await self._discover()
        try:
            response = await self._require().get("/health")
        except httpx.HTTPError as exc:
            raise EngineError(f"{self._config.url} unreachable: {_describe(exc)}") from exc
        if response.status_code != 200:
            raise EngineError(f"{self._config.url}/health answered {response.status_code}")

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
            raise EngineError(f"{self._config.url} has not answered yet")
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
        if request.messages is not None:
            body["messages"] = list(request.messages)
            path = "/v1/chat/completions"
        else:
            body["prompt"] = request.prompt
            path = "/v1/completions"
        return PreparedRequest(request, options, None, payload=(path, body))

    async def generate(self, prepared: PreparedRequest, request_id: str) -> AsyncIterator[Delta]:
        path, body = prepared.payload
        client = self._require()
        completion_tokens = 0
        try:
            async with client.stream(
                "POST", path, json=body, headers={"X-Request-Id": request_id}
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise _status_error(response)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise EngineError(f"{self._config.url} failed mid-stream: {chunk['error']}")
                    delta = _delta(chunk, completion_tokens)
                    if delta is not None:
                        completion_tokens += delta.tokens
                        yield delta
        except httpx.HTTPError as exc:
            raise EngineError(f"{self._config.url}: {_describe(exc)}") from exc
        except ValueError as exc:
            raise EngineError(f"{self._config.url} sent an unreadable stream chunk") from exc

    def _require(self) -> httpx.AsyncClient:
        if self._client is None:
            raise EngineError(f"{self._config.name} is not connected")
        return self._client


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


def _status_error(response: httpx.Response) -> Exception:
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    message = error.get("message") or response.text[:200] or f"HTTP {response.status_code}"
    if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
        return InvalidRequest(message, param=error.get("param"))
    return EngineError(f"remote answered {response.status_code}: {message}")


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
