"""One replica: its engine, its health state and its admission control (slots + a bounded queue)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum

from service.engines.base import Engine
from service.errors import QueueFull
from service.variants import VariantMetadata

log = logging.getLogger(__name__)


class ReplicaState(StrEnum):
    starting = "starting"
    ready = "ready"
    unhealthy = "unhealthy"  # failed a request or a probe; probed until it recovers
    failed = "failed"  # could not start (or restart); not retried
    stopped = "stopped"


class Replica:
    def __init__(
        self,
        name: str,
        kind: str,
        metadata: VariantMetadata,
        engine: Engine,
        *,
        max_concurrency: int,
        max_queue: int,
        retry_after_s: int,
    ) -> None:
        self.name = name
        self.kind = kind
        self.metadata = metadata
        self.engine = engine
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self._retry_after_s = retry_after_s
        self._slots = asyncio.Semaphore(max_concurrency)
        self.state = ReplicaState.starting
        self.last_error: str | None = None
        self.in_flight = 0
        self.queued = 0
        self.restarts = 0
        self.state_since = time.time()

    @property
    def variant(self) -> str:
        return self.metadata.variant

    @property
    def healthy(self) -> bool:
        return self.state is ReplicaState.ready

    @property
    def outstanding(self) -> int:
        return self.in_flight + self.queued

    @property
    def slot_free(self) -> bool:
        """`slot()` would be entered without waiting."""
        return not self._slots.locked()

    @property
    def saturated(self) -> bool:
        """No free slot and a full queue: one more request would be rejected."""
        return self.in_flight >= self.max_concurrency and self.queued >= self.max_queue

    def set_state(self, state: ReplicaState, error: str | None = None) -> None:
        if state is not self.state:
            level = logging.INFO if state is ReplicaState.ready else logging.WARNING
            detail = f": {error}" if error else ""
            log.log(level, "replica %s (%s) %s -> %s%s", self.name, self.variant, self.state, state, detail)
            self.state = state
            self.state_since = time.time()
        self.last_error = error if state is not ReplicaState.ready else None

    def report_failure(self, error: str) -> None:
        """A request failed inside the engine: stop routing here until a probe says it recovered."""
        if self.state is ReplicaState.ready:
            self.set_state(ReplicaState.unhealthy, error)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the engine's slots for the duration of a generation; wait in the queue when all are
        taken, or raise QueueFull (429) when the queue is full too."""
        if self._slots.locked():
            if self.queued >= self.max_queue:
                raise QueueFull(
                    f"replica {self.name} is at capacity ({self.in_flight} running, {self.queued} queued); "
                    "retry later",
                    headers={"Retry-After": str(self._retry_after_s)},
                )
            self.queued += 1
            try:
                await self._slots.acquire()
            finally:
                self.queued -= 1
        else:
            await self._slots.acquire()
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._slots.release()
