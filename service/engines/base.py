"""The one engine interface the gateway talks to; `vllm_local` and `remote` implement it.

Everything above this module (replicas, dispatch, HTTP) sees only these types, so it cannot tell an
in-process AsyncLLM from a `vllm serve` across the network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class SamplingOptions:
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class GenerationInput:
    """Exactly one of `prompt` (raw text) or `messages` (chat turns, rendered with the model's template)."""

    prompt: str | None = None
    messages: tuple[dict[str, Any], ...] | None = None


@dataclass(frozen=True)
class PreparedRequest:
    """A request an engine has validated; `payload` is engine-private (token ids, a JSON body, ...)."""

    input: GenerationInput
    options: SamplingOptions
    prompt_tokens: int | None  # known before generation for local engines, from the response for remote ones
    payload: Any = field(default=None, compare=False)


@dataclass(frozen=True)
class Delta:
    """New output since the previous delta; the last one carries `finish_reason` and final token counts."""

    text: str
    tokens: int
    finish_reason: str | None = None
    prompt_tokens: int | None = None


class EngineError(Exception):
    """The engine could not serve a request (dead, unreachable, internal error); another replica may."""


class Engine(Protocol):
    kind: str

    async def start(self) -> None:
        """Load or connect; raises on failure (the replica is then reported failed)."""

    async def stop(self) -> None:
        """Release everything; in-flight generations are aborted."""

    async def check_health(self) -> None:
        """Return when the engine can serve; raise EngineError when it cannot."""

    @property
    def max_model_len(self) -> int | None:
        """Context length once started (None when unknown)."""

    @property
    def needs_restart(self) -> bool:
        """True when only a restart can bring the engine back (an in-process engine whose process died)."""

    def engine_requests(self) -> int | None:
        """Requests the engine itself still holds (None when it cannot tell); lets tests observe aborts."""

    async def prepare(self, request: GenerationInput, options: SamplingOptions) -> PreparedRequest:
        """Validate against this engine's tokenizer and context; raises `InvalidRequest` naming the field."""

    def generate(self, prepared: PreparedRequest, request_id: str) -> AsyncIterator[Delta]:
        """Stream deltas. Closing the iterator early (cancel, disconnect, timeout) aborts the request."""
