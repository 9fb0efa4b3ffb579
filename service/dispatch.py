"""Serving one request: pick a replica, wait for a slot, stream from its engine, fail over, time it.

`Dispatcher.open` returns only once the first output token exists, so that everything that can go wrong
before output (bad input, full queue, no healthy replica, a dead engine) surfaces as an HTTP status rather
than as a broken stream. The `Generation` it returns owns the slot and the engine stream until closed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from service.engines.base import Delta, EngineError, GenerationInput, PreparedRequest, SamplingOptions
from service.errors import (
    EngineFailure,
    GatewayError,
    GenerationTimeout,
    InvalidRequest,
    NoHealthyReplica,
    QueueFull,
    UnknownModel,
)
from service.fleet import Fleet
from service.replicas import Replica
from service.routing import Router
from service.telemetry import NO_REPLICA, Telemetry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    variant: str | None = None
    replica: str | None = None


@dataclass
class Summary:
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float | None = None
    total_s: float = 0.0


class Dispatcher:
    def __init__(self, fleet: Fleet, router: Router, telemetry: Telemetry, timeout_s: float) -> None:
        self._fleet = fleet
        self._router = router
        self._telemetry = telemetry
        self._timeout_s = timeout_s

    def resolve(self, model: str | None, *, param: str) -> Target:
        """An OpenAI `model`: a variant label (routed among its replicas) or a replica name (pinned)."""
        if model is None or model in self._fleet.variants:
            return Target(variant=model)
        if self._fleet.get(model) is not None:
            return Target(replica=model)
        raise self._unknown(model, param, sorted(self._fleet.variants) + self._replica_names())

    def variant(self, name: str | None) -> Target:
        if name is None or name in self._fleet.variants:
            return Target(variant=name)
        raise self._unknown(name, "variant", sorted(self._fleet.variants))

    def replica(self, name: str) -> Target:
        if self._fleet.get(name) is not None:
            return Target(replica=name)
        raise self._unknown(name, "replica", self._replica_names())

    def _replica_names(self) -> list[str]:
        return sorted(r.name for r in self._fleet.replicas)

    @staticmethod
    def _unknown(name: str, param: str, known: list[str]) -> UnknownModel:
        return UnknownModel(f"unknown {param} {name!r}; known: {', '.join(known)}", param=param)

    async def open(self, request: GenerationInput, options: SamplingOptions, target: Target) -> Generation:
        started = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + self._timeout_s
        request_id = f"sf-{secrets.token_hex(16)}"  # random bits as uuid4, no UUID object
        plan = self._router.plan(self._fleet.candidates(), variant=target.variant, replica=target.replica)
        if not plan:
            what = target.replica or target.variant or "any variant"
            self._telemetry.finished(NO_REPLICA, target.variant or NO_REPLICA, "rejected")
            raise NoHealthyReplica(
                f"no healthy replica for {what}", param="replica" if target.replica else "variant"
            )
        full: tuple[Replica, QueueFull] | None = None
        failure: str | None = None
        for name in plan:
            replica = self._fleet.get(name)
            if replica is None or not replica.healthy:
                continue  # went down while earlier candidates were tried
            try:
                # InvalidRequest propagates: bad input is the client's fault on every replica alike.
                prepared = await replica.engine.prepare(request, options)
            except EngineError as exc:
                failure = str(exc)
                replica.report_failure(failure)
                continue
            slot = replica.slot()
            try:
                if replica.slot_free:
                    await slot.__aenter__()  # no wait, so no timer to arm (and cancel) either
                else:
                    async with asyncio.timeout_at(deadline):
                        await slot.__aenter__()
            except QueueFull as exc:
                full = full or (replica, exc)  # counted only if no other replica takes the request
                continue
            except TimeoutError:
                self._telemetry.finished(replica.name, replica.variant, "timeout")
                raise GenerationTimeout(f"no slot on {replica.name} within {self._timeout_s:g} s") from None
            generation = Generation(request_id, replica, slot, self._telemetry, started, deadline)
            try:
                await generation.begin(prepared)
            except EngineError as exc:
                failure = str(exc)
                replica.report_failure(failure)
                log.warning(
                    "request %s failed on %s before output (%s); trying the next replica",
                    request_id,
                    replica.name,
                    failure,
                )
                continue
            return generation
        if full is not None:
            self._telemetry.finished(full[0].name, full[0].variant, "rejected")
            raise full[1]
        raise NoHealthyReplica(
            f"every replica for {target.replica or target.variant or 'the request'} failed: "
            f"{failure or 'none healthy'}",
            param="replica" if target.replica else "variant",
        )


class Generation:
    """A request a replica has taken: iterate `chunks()` for text; `summary` is complete once they end."""

    def __init__(
        self,
        request_id: str,
        replica: Replica,
        slot: AbstractAsyncContextManager[None],
        telemetry: Telemetry,
        started: float,
        deadline: float,
    ) -> None:
        self.id = request_id
        self.replica = replica.name
        self.variant = replica.variant
        self.summary = Summary()
        self._replica = replica
        self._slot = slot
        self._telemetry = telemetry
        self._started = started
        self._deadline = deadline
        self._stream: AsyncIterator[Delta] | None = None
        self._first: Delta | None = None
        self._last_at = started
        self._closed = False
        self._itl = telemetry.inter_token(self.replica, self.variant)

    async def begin(self, prepared: PreparedRequest) -> None:
        """Start the engine stream and wait for the first token; on failure the slot is already released."""
        self._stream = self._replica.engine.generate(prepared, self.id)
        try:
            self._first = await self._next()
        except EngineError:
            await self._close("error")
            raise
        except TimeoutError:
            await self._close("timeout")
            raise GenerationTimeout(f"no output from {self.replica} in time") from None
        except asyncio.CancelledError:
            await self._close("cancelled")
            raise
        except InvalidRequest:
            await self._close(None)  # a remote server refused the input: the client's fault, as in prepare()
            raise
        except BaseException:
            await self._close("error")
            raise

    async def chunks(self) -> AsyncIterator[str]:
        outcome = "cancelled"  # unless the loop below ends, the client went away (or was too slow to read)
        try:
            delta = self._first
            while delta is not None:
                if delta.text:
                    yield delta.text
                if delta.finish_reason is not None:
                    break
                delta = await self._next()
            outcome = "success"
        except TimeoutError:
            outcome = "timeout"
            raise GenerationTimeout(f"{self.replica} did not finish in time") from None
        except EngineError as exc:
            outcome = "error"
            self._replica.report_failure(str(exc))
            raise EngineFailure(f"{self.replica} failed mid-generation: {exc}") from exc
        except GatewayError:
            outcome = "error"
            raise
        finally:
            await self._close(outcome)

    async def _next(self) -> Delta | None:
        stream = self._stream
        if stream is None:
            return None
        while True:
            try:
                async with asyncio.timeout_at(self._deadline):
                    delta = await anext(stream)
            except StopAsyncIteration:
                return None
            except (EngineError, GatewayError, TimeoutError, asyncio.CancelledError):
                raise
            except Exception as exc:  # an engine bug must not become a 500 with a traceback for the client
                log.exception("engine of %s raised unexpectedly", self.replica)
                raise EngineError(f"{type(exc).__name__} in the engine of {self.replica}") from exc
            self._observe(delta)
            if delta.tokens or delta.text or delta.finish_reason is not None:
                return delta

    def _observe(self, delta: Delta) -> None:
        now = time.perf_counter()
        s = self.summary
        if delta.prompt_tokens is not None:
            s.prompt_tokens = delta.prompt_tokens
        if delta.tokens:
            if s.ttft_s is None:
                s.ttft_s = now - self._started
            else:
                gap = (now - self._last_at) / delta.tokens
                for _ in range(delta.tokens):
                    self._itl.observe(gap)
            self._last_at = now
            s.completion_tokens += delta.tokens
        if delta.finish_reason is not None:
            s.finish_reason = delta.finish_reason

    async def aclose(self) -> None:
        """Release everything; a generation closed before its end counts as cancelled (and is aborted)."""
        await self._close("cancelled")

    async def _close(self, outcome: str | None) -> None:
        """Release the slot and the engine stream; record the outcome (None: bad input, not a request)."""
        if self._closed:
            return
        self._closed = True
        stream, self._stream = self._stream, None
        try:
            if stream is not None:
                await stream.aclose()  # type: ignore[attr-defined]
        except Exception as exc:  # closing must not mask what happened to the request
            log.warning("closing the stream of %s on %s failed: %s", self.id, self.replica, exc)
        finally:
            await self._slot.__aexit__(None, None, None)
            if outcome is not None:
                self._record(outcome)

    def _record(self, outcome: str) -> None:
        s = self.summary
        s.total_s = time.perf_counter() - self._started
        self._telemetry.request(
            self.replica,
            self.variant,
            outcome,
            prompt_tokens=s.prompt_tokens,
            completion_tokens=s.completion_tokens,
            total_s=s.total_s,
            ttft_s=s.ttft_s,
        )
