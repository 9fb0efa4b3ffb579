"""Workloads: the list of requests every variant receives, in the same order (seeded, reproducible).

Two sources, each a validated model with a `kind` tag:

- `file`: prompts from a text file (one prompt per non-empty line) or JSONL (each line a string, or an object
  with `prompt` or `messages`, optionally `max_tokens`).
- `synthetic`: prompts of a given input length and `max_tokens` of a given output length, each drawn uniformly
  within ±`spread` (a fraction) of the mean. Lengths are counted with a tokenizer when one is given; otherwise
  the prompt is built from a list of common English words that are one token each in GPT-2/Llama-style BPE
  vocabularies (checked against SmolLM2's), so N words ≈ N tokens (the server may add a BOS or chat template).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from loadtest.errors import LoadTestError

# Each is one token after a space in SmolLM2's (GPT-2-style) vocabulary (tests/loadtest checks).
WORDS = tuple(
    """the of and to in is was for on that with as by at from his her it an were are which this be or has
had one their not first after but new who they its been two also other all he she time year years
city world state area school people family team game war part film music water house river light
power night story road book word street country market history village number group system order
south north east west church place land court party season point club member life line government
station series company army field name side case form hand head home body death end fact work way
day days man men woman women child children mind king queen love friend money room door sea sun moon
star tree fire stone gold iron wood paper glass bread milk wine horse dog bird fish cat cow bank
shop hotel park bridge tower wall floor window garden farm island lake hill mountain valley forest
coast port ship train car plane bus""".split()
)


class RequestSpec(BaseModel):
    """One request of the workload. Exactly one of `prompt` / `messages` is set."""

    model_config = ConfigDict(frozen=True)

    index: int
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    max_tokens: int = Field(gt=0)
    input_tokens: int | None = Field(default=None, description="intended prompt length, when known")


class FileWorkload(BaseModel):
    kind: Literal["file"] = "file"
    path: Path
    max_tokens: int = Field(default=128, gt=0, description="for entries that do not set their own")


class SyntheticWorkload(BaseModel):
    kind: Literal["synthetic"] = "synthetic"
    input_tokens: int = Field(default=128, gt=0)
    output_tokens: int = Field(default=64, gt=0)
    spread: float = Field(default=0.0, ge=0.0, lt=1.0, description="uniform ± fraction around the means")
    count: int = Field(default=256, gt=0, description="distinct prompts; the runner cycles through them")
    seed: int = 0
    tokenizer: str | None = Field(default=None, description="HF tokenizer directory to count tokens exactly")


WorkloadSpec = Annotated[FileWorkload | SyntheticWorkload, Field(discriminator="kind")]


class Tokenizer(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...


def build_workload(
    spec: FileWorkload | SyntheticWorkload, tokenizer: Tokenizer | None = None
) -> list[RequestSpec]:
    """Materialise the requests. A synthetic spec with `tokenizer` set loads it unless one is passed in."""
    if isinstance(spec, FileWorkload):
        return _from_file(spec)
    if tokenizer is None and spec.tokenizer:
        tokenizer = load_tokenizer(spec.tokenizer)
    return _synthetic(spec, tokenizer)


def load_tokenizer(path: str) -> Tokenizer:
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise LoadTestError(f"cannot load a tokenizer from {path!r}: {str(exc).splitlines()[0]}") from None


def _synthetic(spec: SyntheticWorkload, tokenizer: Tokenizer | None) -> list[RequestSpec]:
    rng = random.Random(spec.seed)
    requests = []
    for index in range(spec.count):
        n_in = _spread(rng, spec.input_tokens, spec.spread)
        n_out = _spread(rng, spec.output_tokens, spec.spread)
        words = [rng.choice(WORDS) for _ in range(n_in + 8)]  # a few spare for tokenizer trimming
        text = " ".join(words[:n_in])
        if tokenizer is not None:
            ids = tokenizer.encode(" ".join(words), add_special_tokens=False)[:n_in]
            text = tokenizer.decode(ids)
        requests.append(RequestSpec(index=index, prompt=text, max_tokens=n_out, input_tokens=n_in))
    return requests


def _spread(rng: random.Random, mean: int, spread: float) -> int:
    if spread == 0:
        return mean
    return max(1, round(rng.uniform(mean * (1 - spread), mean * (1 + spread))))


def _from_file(spec: FileWorkload) -> list[RequestSpec]:
    path = spec.path
    if not path.is_file():
        raise LoadTestError(f"prompt file {path} does not exist")
    lines = path.read_text(encoding="utf-8").splitlines()
    jsonl = path.suffix.lower() in {".jsonl", ".ndjson"}
    requests: list[RequestSpec] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        index = len(requests)
        if not jsonl:
            requests.append(RequestSpec(index=index, prompt=line.strip(), max_tokens=spec.max_tokens))
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LoadTestError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        requests.append(_from_entry(entry, index, spec.max_tokens, f"{path}:{lineno}"))
    if not requests:
        raise LoadTestError(f"prompt file {path} has no prompts")
    return requests


def _from_entry(entry: object, index: int, default_max_tokens: int, where: str) -> RequestSpec:
    if isinstance(entry, str):
        return RequestSpec(index=index, prompt=entry, max_tokens=default_max_tokens)
    if not isinstance(entry, dict):
        raise LoadTestError(f"{where}: expected a string or an object with 'prompt' or 'messages'")
    max_tokens = entry.get("max_tokens", default_max_tokens)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens <= 0:
        raise LoadTestError(f"{where}: max_tokens must be a positive integer")
    prompt, messages = entry.get("prompt"), entry.get("messages")
    if isinstance(prompt, str) and messages is None:
        return RequestSpec(index=index, prompt=prompt, max_tokens=max_tokens)
    if (
        isinstance(messages, list)
        and messages
        and all(isinstance(m, dict) for m in messages)
        and prompt is None
    ):
        return RequestSpec(index=index, messages=messages, max_tokens=max_tokens)
    raise LoadTestError(f"{where}: needs exactly one of 'prompt' (string) or 'messages' (list of objects)")
