"""Request and response bodies: the gateway's own `/generate` (docs/contracts.md section 2) and the subset
of the OpenAI API that the `openai` client and common tools use."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.engines.base import GenerationInput, SamplingOptions

# ---------------------------------------------------------------- shared pieces


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str = ""

    @field_validator("content", mode="before")
    @classmethod
    def _join_parts(cls, content: Any) -> Any:
        """OpenAI's multi-part content: text parts are joined; anything else (images, audio) is refused."""
        if content is None:
            return ""
        if not isinstance(content, list):
            return content
        texts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise ValueError("only text content parts are supported")
            texts.append(part["text"])
        return "".join(texts)

    def plain(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def _stop_list(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


class _Sampling(BaseModel):
    max_tokens: int | None = Field(
        None, gt=0, description="Output tokens at most; default limits.default_max_tokens."
    )
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False

    @field_validator("stop")
    @classmethod
    def _stop_not_empty(cls, stop: str | list[str] | None) -> str | list[str] | None:
        values = [stop] if isinstance(stop, str) else stop or []
        if any(value == "" for value in values):
            raise ValueError("stop strings must not be empty")
        if len(values) > 16:
            raise ValueError("at most 16 stop strings")
        return stop

    def options(
        self, temperature: float, default_max_tokens: int, max_tokens: int | None = None
    ) -> SamplingOptions:
        return SamplingOptions(
            max_tokens=max_tokens or self.max_tokens or default_max_tokens,
            temperature=temperature,
            top_p=self.top_p,
            stop=_stop_list(self.stop),
            seed=self.seed,
        )


# ---------------------------------------------------------------- /generate


class GenerateRequest(_Sampling):
    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(None, min_length=1, description="Raw text to continue.")
    messages: list[Message] | None = Field(
        None, min_length=1, description="Chat turns (model's chat template)."
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    variant: str | None = Field(None, description="Route among this variant's replicas.")
    replica: str | None = Field(None, description="Pin to this replica.")

    @model_validator(mode="after")
    def _one_input(self) -> GenerateRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of `prompt` or `messages`")
        if self.variant is not None and self.replica is not None:
            raise ValueError("give `variant` or `replica`, not both")
        return self

    def generation_input(self) -> GenerationInput:
        if self.messages is not None:
            return GenerationInput(messages=tuple(m.plain() for m in self.messages))
        return GenerationInput(prompt=self.prompt)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class Timings(BaseModel):
    ttft_s: float | None
    total_s: float


class GenerateResponse(BaseModel):
    id: str
    text: str
    replica: str
    variant: str
    finish_reason: str | None
    usage: Usage
    timings: Timings


# ---------------------------------------------------------------- OpenAI-compatible


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class _OpenAIRequest(_Sampling):
    # Unknown OpenAI fields (user, metadata, penalties at their defaults, ...) are accepted and ignored;
    # the ones that would change the answer are refused below rather than silently dropped.
    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, description="A variant (routed) or a replica (pinned); none = policy.")
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    n: int = Field(1, ge=1, le=1, description="Only one choice per request.")
    stream_options: StreamOptions | None = None
    logprobs: Any = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    @model_validator(mode="after")
    def _unsupported(self) -> _OpenAIRequest:
        if self.logprobs not in (None, False, 0):
            raise ValueError("logprobs are not supported")
        if self.presence_penalty or self.frequency_penalty:
            raise ValueError("presence/frequency penalties are not supported")
        return self


class CompletionRequest(_OpenAIRequest):
    prompt: str | list[str] = Field(description="Text to continue (a list must hold exactly one string).")
    echo: bool = False
    best_of: int | None = Field(None, ge=1, le=1)
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _single_prompt(cls, prompt: str | list[str]) -> str | list[str]:
        if isinstance(prompt, list) and len(prompt) != 1:
            raise ValueError("only one prompt per request")
        text = prompt if isinstance(prompt, str) else prompt[0]
        if not text:
            raise ValueError("prompt must not be empty")
        return prompt

    @model_validator(mode="after")
    def _no_echo(self) -> CompletionRequest:
        if self.echo or self.suffix:
            raise ValueError("echo and suffix are not supported")
        return self

    def generation_input(self) -> GenerationInput:
        return GenerationInput(prompt=self.prompt if isinstance(self.prompt, str) else self.prompt[0])


class ChatCompletionRequest(_OpenAIRequest):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, gt=0)

    def generation_input(self) -> GenerationInput:
        return GenerationInput(messages=tuple(m.plain() for m in self.messages))


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "sparsefleet"
    kind: Literal["variant", "replica"]
    variant: str
    replicas: list[str]
    max_model_len: int | None = None
    metadata: dict[str, Any] = Field(description="Variant metadata from prune_report.json.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# ---------------------------------------------------------------- status


class ReplicaStatus(BaseModel):
    name: str
    kind: str
    variant: str
    state: str
    ready: bool
    error: str | None
    in_flight: int
    queued: int
    max_concurrency: int
    max_queue: int
    engine_requests: int | None = Field(description="Requests the engine itself still holds (local engines).")
    max_model_len: int | None
    restarts: int
    metadata: dict[str, Any]


class ReadyStatus(BaseModel):
    ready: bool
    replicas: dict[str, str]
