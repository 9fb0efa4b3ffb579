"""Drives load steps at the variants: the same prompts, in the same order, at the same arrival times.

Sequential mode measures one variant after another (a `/metrics` scrape around each); interleaved mode runs
all variants' copies of a step at once from one start time, so machine noise hits them alike (on one shared
CPU they also compete for it). Loops are bounded by `Bounds`; nothing here can run forever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from loadtest.client import GatewayClient
from loadtest.config import Bounds, Mode
from loadtest.errors import TargetError
from loadtest.profiles import LoadStep
from loadtest.records import RequestRecord
from loadtest.server_metrics import ServerDelta, parse_scrape, variant_deltas
from loadtest.workloads import RequestSpec

_ERROR_PAUSE_S = 0.1  # a closed-loop worker pauses after a failure instead of hammering a failing server


class Observer(Protocol):
    """Live progress hooks (the CLI's rich display implements them; tests pass None)."""

    def phase_started(self, key: str, label: str, expected: int | None, duration_s: float) -> None: ...
    def request_done(self, key: str, record: RequestRecord) -> None: ...
    def phase_finished(self, key: str) -> None: ...
    def note(self, text: str) -> None: ...


@dataclass
class PhaseOutcome:
    variant: str
    step: LoadStep
    records: list[RequestRecord]
    duration_s: float
    server: ServerDelta | None = None
    scraped: bool = False
    started_at: float = field(default_factory=time.time)


class Runner:
    def __init__(
        self,
        client: GatewayClient,
        workload: list[RequestSpec],
        bounds: Bounds,
        observer: Observer | None = None,
    ) -> None:
        if not workload:
            raise ValueError("empty workload")
        self.client = client
        self.workload = workload
        self.bounds = bounds
        self.observer = observer
        self._offset = 0  # where the next step starts in the workload, the same for every variant

    def _spec(self, k: int) -> RequestSpec:
        return self.workload[(self._offset + k) % len(self.workload)]

    async def warm_up(self, variants: list[str] | tuple[str, ...]) -> None:
        """A few unmeasured requests per variant (from the end of the workload, so measured prompts stay
        cold). If all of a variant's warm-up requests fail, the run stops with the server's message."""
        n = self.bounds.warmup_requests
        for variant in variants:
            records = []
            for k in range(n):
                spec = self.workload[-1 - (k % len(self.workload))]
                records.append(
                    await self.client.send(spec, variant, phase_start=time.perf_counter(), scheduled_s=0.0)
                )
            if records and not any(r.ok for r in records):
                raise TargetError(f"all {n} warm-up requests to {variant!r} failed: {records[-1].message}")

    async def run_step(
        self, step: LoadStep, variants: list[str] | tuple[str, ...], mode: Mode
    ) -> list[PhaseOutcome]:
        if mode == "interleaved":
            before = await self._scrape()
            outcomes = list(await asyncio.gather(*(self._drive(step, v) for v in variants)))
            self._attach_server(outcomes, before, await self._scrape())
        else:
            outcomes = []
            for variant in variants:
                before = await self._scrape()
                outcome = await self._drive(step, variant)
                self._attach_server([outcome], before, await self._scrape())
                outcomes.append(outcome)
        self._offset += max(len(o.records) for o in outcomes)
        return outcomes

    async def _scrape(self) -> str | None:
        return await self.client.scrape()

    @staticmethod
    def _attach_server(outcomes: list[PhaseOutcome], before: str | None, after: str | None) -> None:
        if before is None or after is None:
            return
        deltas = variant_deltas(parse_scrape(before), parse_scrape(after))
        for outcome in outcomes:
            outcome.scraped = True
            outcome.server = deltas.get(outcome.variant)

    async def _drive(self, step: LoadStep, variant: str) -> PhaseOutcome:
        key = f"{variant} · {step.label}"
        expected = len(step.arrivals_s) if step.arrivals_s is not None else None
        if self.bounds.max_requests is not None:
            expected = min(expected or self.bounds.max_requests, self.bounds.max_requests)
        if self.observer:
            self.observer.phase_started(key, f"{variant} · {step.label}", expected, self.bounds.duration_s)
        records: list[RequestRecord] = []

        def done(record: RequestRecord) -> None:
            records.append(record)
            if self.observer:
                self.observer.request_done(key, record)

        t0 = time.perf_counter()
        stop_issuing = t0 + self.bounds.duration_s
        stop_all = stop_issuing + self.bounds.drain_s
        if step.concurrency is not None:
            await self._closed_loop(step.concurrency, variant, t0, stop_issuing, stop_all, done)
        else:
            await self._open_loop(step.arrivals_s or (), variant, t0, stop_all, done)
        duration = time.perf_counter() - t0
        if self.observer:
            self.observer.phase_finished(key)
        records.sort(key=lambda r: r.scheduled_s)
        return PhaseOutcome(variant=variant, step=step, records=records, duration_s=duration)

    async def _closed_loop(
        self,
        concurrency: int,
        variant: str,
        t0: float,
        stop_issuing: float,
        stop_all: float,
        done: Callable[[RequestRecord], None],
    ) -> None:
        issued = 0
        limit = self.bounds.max_requests

        async def worker() -> None:
            nonlocal issued
            while time.perf_counter() < stop_issuing and (limit is None or issued < limit):
                k = issued
                issued += 1
                record = await self.client.send(
                    self._spec(k),
                    variant,
                    phase_start=t0,
                    scheduled_s=time.perf_counter() - t0,
                    stop_at=stop_all,
                )
                done(record)
                if not record.ok:
                    await asyncio.sleep(_ERROR_PAUSE_S)

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def _open_loop(
        self,
        arrivals: tuple[float, ...],
        variant: str,
        t0: float,
        stop_all: float,
        done: Callable[[RequestRecord], None],
    ) -> None:
        limit = self.bounds.max_requests

        async def one(k: int, at: float) -> None:
            done(
                await self.client.send(
                    self._spec(k), variant, phase_start=t0, scheduled_s=at, stop_at=stop_all
                )
            )

        tasks = []
        for k, at in enumerate(arrivals):
            if limit is not None and k >= limit:
                break
            delay = t0 + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(k, at)))
        await asyncio.gather(*tasks)
