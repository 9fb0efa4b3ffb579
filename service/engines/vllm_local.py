"""An in-process vLLM `AsyncLLM` engine: the only module of the gateway that imports vllm.

The engine core and its worker run in child processes that vLLM spawns; this object is the asyncio client
side. Requests go in as token ids rendered here (chat template applied with the model's tokenizer), so the
gateway knows the prompt length before queueing and can reject an oversize `max_tokens` with a 400.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from vllm import SamplingParams
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.exceptions import VLLMClientError
from vllm.inputs import tokens_input
from vllm.sampling_params import RequestOutputKind
from vllm.v1.engine.async_llm import AsyncLLM
from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

from service.engines.base import Delta, EngineError, GenerationInput, PreparedRequest, SamplingOptions
from service.errors import InvalidRequest
from service.settings import VllmEngineArgs

log = logging.getLogger(__name__)

# The engine core inherits the environment at spawn time, and the thread binding is read from it there;
# engines start one at a time under this lock so that each sees its own VLLM_CPU_OMP_THREADS_BIND.
_SPAWN_ENV_LOCK = threading.Lock()
# Tokenizing a long prompt can take tens of milliseconds: do that off the event loop.
_INLINE_TOKENIZE_CHARS = 4096
_SHUTDOWN_TIMEOUT_S = 30.0


class VllmLocalEngine:
    kind = "vllm"

    def __init__(self, name: str, model_dir: Path, args: VllmEngineArgs, cpu_bind: str | None) -> None:
        self._name = name
        self._model_dir = model_dir
        self._args = args
        self._cpu_bind = cpu_bind
        self._llm: AsyncLLM | None = None
        self._tokenizer: Any = None

    async def start(self) -> None:
        if not self._model_dir.is_dir():
            raise EngineError(f"checkpoint directory {self._model_dir} does not exist")
        if not (self._model_dir / "config.json").is_file():
            raise EngineError(f"{self._model_dir} is not a checkpoint directory (no config.json)")
        # Construction blocks for tens of seconds (engine spawn, weight load): keep the event loop serving.
        self._llm = await asyncio.to_thread(self._build)
        self._tokenizer = self._llm.get_tokenizer()

    def _build(self) -> AsyncLLM:
        engine_args = AsyncEngineArgs(
            model=str(self._model_dir),
            dtype=self._args.dtype,
            enforce_eager=self._args.enforce_eager,
            max_model_len=self._args.max_model_len,
            max_num_seqs=self._args.max_num_seqs,
            kv_cache_memory_bytes=int(self._args.kv_cache_gib * 2**30),
            seed=self._args.seed,
            disable_log_stats=True,
            **self._args.extra,
        )
        with _SPAWN_ENV_LOCK:
            previous = os.environ.get("VLLM_CPU_OMP_THREADS_BIND")
            if self._cpu_bind is not None:
                os.environ["VLLM_CPU_OMP_THREADS_BIND"] = self._cpu_bind
            try:
                return AsyncLLM.from_engine_args(engine_args)
            finally:
                if previous is None:
                    os.environ.pop("VLLM_CPU_OMP_THREADS_BIND", None)
                else:
                    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = previous

    async def stop(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            # Stop reading engine outputs first: otherwise the reader sees the engine process go away
            # before shutdown() cancels it and logs a spurious EngineDeadError.
            if llm.output_handler is not None:
                llm.output_handler.cancel()
            # shutdown() waits for the engine processes to exit (thread-safe by design). vLLM's default 5 s
            # is shorter than a loaded 2-core machine needs to stop the worker, which then gets SIGKILLed.
            await asyncio.to_thread(llm.shutdown, _SHUTDOWN_TIMEOUT_S)

    async def check_health(self) -> None:
        llm = self._require()
        try:
            await llm.check_health()
        except Exception as exc:  # EngineDeadError and whatever a dying engine raises
            raise EngineError(f"engine of {self._name} is not healthy: {type(exc).__name__}") from exc

    @property
    def max_model_len(self) -> int | None:
        return self._llm.model_config.max_model_len if self._llm is not None else None

    @property
    def needs_restart(self) -> bool:
        return self._llm is not None and self._llm.errored

    def engine_requests(self) -> int | None:
        return self._llm.get_num_unfinished_requests() if self._llm is not None else None

    async def prepare(self, request: GenerationInput, options: SamplingOptions) -> PreparedRequest:
        self._require()
        size = len(request.prompt or "") + sum(len(str(m.get("content", ""))) for m in request.messages or ())
        if size > _INLINE_TOKENIZE_CHARS:
            text, ids = await asyncio.to_thread(self._render, request)
        else:
            text, ids = self._render(request)
        field = "prompt" if request.messages is None else "messages"
        if not ids:
            raise InvalidRequest(f"`{field}` tokenizes to nothing", param=field)
        limit = self.max_model_len or 0
        if len(ids) >= limit:
            raise InvalidRequest(
                f"`{field}` has {len(ids)} tokens; the context of {self._name} is {limit}", param=field
            )
        if len(ids) + options.max_tokens > limit:
            raise InvalidRequest(
                f"`max_tokens` {options.max_tokens} + {len(ids)} prompt tokens exceeds the context length "
                f"{limit}; at most {limit - len(ids)} here",
                param="max_tokens",
            )
        params = SamplingParams(
            max_tokens=options.max_tokens,
            temperature=options.temperature,
            top_p=options.top_p,
            stop=list(options.stop) or None,
            seed=options.seed,
            output_kind=RequestOutputKind.DELTA,
        )
        return PreparedRequest(request, options, len(ids), payload=(tokens_input(ids, prompt=text), params))

    def _render(self, request: GenerationInput) -> tuple[str, list[int]]:
        if request.messages is None:
            text = request.prompt or ""
            return text, list(self._tokenizer.encode(text))
        try:
            text = self._tokenizer.apply_chat_template(
                list(request.messages), tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # templates raise their own errors on turns they cannot render
            raise InvalidRequest(f"`messages` cannot be rendered: {exc}", param="messages") from None
        return text, list(self._tokenizer.encode(text, add_special_tokens=False))

    async def generate(self, prepared: PreparedRequest, request_id: str) -> AsyncIterator[Delta]:
        llm = self._require()
        engine_input, params = prepared.payload
        stream = llm.generate(engine_input, params, request_id)
        finished = False
        try:
            async for output in stream:
                completion = output.outputs[0]
                finished = output.finished
                yield Delta(
                    text=completion.text,
                    tokens=len(completion.token_ids),
                    finish_reason=completion.finish_reason if finished else None,
                    prompt_tokens=prepared.prompt_tokens,
                )
        except VLLMClientError as exc:
            raise InvalidRequest(str(exc), param=getattr(exc, "parameter", None)) from exc
        except (EngineDeadError, EngineGenerateError) as exc:
            raise EngineError(f"engine of {self._name} failed: {type(exc).__name__}") from exc
        finally:
            # Closing vLLM's generator aborts the request in the engine core (no orphaned decoding).
            await stream.aclose()
            if not finished and llm is self._llm and not llm.errored:
                await llm.abort(request_id)

    def _require(self) -> AsyncLLM:
        if self._llm is None:
            raise EngineError(f"engine of {self._name} is not running")
        return self._llm
