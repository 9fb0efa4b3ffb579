"""The replicas of one gateway: start them, stop them in reverse order, probe them, restart dead engines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from service.engines import build_engines
from service.engines.base import Engine, EngineError
from service.errors import ConfigError
from service.replicas import Replica, ReplicaState
from service.routing import Candidate
from service.settings import FleetConfig, HealthConfig
from service.variants import read_variant_metadata

log = logging.getLogger(__name__)


class Fleet:
    def __init__(self, replicas: Sequence[Replica], health: HealthConfig) -> None:
        self._replicas = {replica.name: replica for replica in replicas}
        self._health = health
        self._prober: asyncio.Task[None] | None = None
        self.variants: dict[str, list[Replica]] = {}
        for replica in replicas:
            self.variants.setdefault(replica.variant, []).append(replica)
        clash = sorted(
            set(self._replicas) & {v for v, rs in self.variants.items() if rs[0].name != v or len(rs) > 1}
        )
        if clash:
            raise ConfigError(
                f"replica name {clash[0]!r} is also a variant label; `model` would be ambiguous"
            )

    @classmethod
    def from_config(cls, config: FleetConfig, engines: Sequence[Engine] | None = None) -> Fleet:
        """Replicas with their variant metadata; `engines` replaces the real ones (unit tests)."""
        engines = list(engines) if engines is not None else build_engines(config.replicas)
        limits = config.limits
        replicas = [
            Replica(
                rc.name,
                rc.kind,
                read_variant_metadata(rc.model, rc.variant),
                engine,
                max_concurrency=rc.max_concurrency or limits.max_concurrency,
                max_queue=rc.max_queue if rc.max_queue is not None else limits.max_queue,
                retry_after_s=limits.retry_after_s,
            )
            for rc, engine in zip(config.replicas, engines, strict=True)
        ]
        return cls(replicas, config.health)

    @property
    def replicas(self) -> list[Replica]:
        return list(self._replicas.values())

    def get(self, name: str) -> Replica | None:
        return self._replicas.get(name)

    def candidates(self) -> list[Candidate]:
        return [
            Candidate(r.name, r.variant, r.healthy, r.outstanding, r.saturated)
            for r in self._replicas.values()
        ]

    async def start(self) -> None:
        """Start every engine, one after the other (they compete for the same cores while loading); a replica
        that fails is reported and the rest carry on."""
        for replica in self._replicas.values():
            await self._start_one(replica)
        ready = [r.name for r in self._replicas.values() if r.healthy]
        log.info("%d of %d replicas ready: %s", len(ready), len(self._replicas), ", ".join(ready) or "none")
        self._prober = asyncio.create_task(self._probe_forever(), name="sparsefleet-prober")

    async def _start_one(self, replica: Replica) -> None:
        replica.set_state(ReplicaState.starting)
        began = time.perf_counter()
        log.info("starting replica %s (%s, %s engine)", replica.name, replica.variant, replica.kind)
        try:
            await replica.engine.start()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any start failure: this replica is down, the others keep serving
            replica.set_state(ReplicaState.failed, f"engine failed to start: {_one_line(exc)}")
            return
        try:
            await asyncio.wait_for(replica.engine.check_health(), self._health.probe_timeout_s)
        except (EngineError, TimeoutError) as exc:
            # Started but not answering (e.g. a remote server still loading): probed until it does.
            replica.set_state(
                ReplicaState.unhealthy, _one_line(exc) if str(exc) else "health check timed out"
            )
            return
        replica.set_state(ReplicaState.ready)
        log.info(
            "replica %s (%s) up in %.1f s, context %s tokens",
            replica.name,
            replica.variant,
            time.perf_counter() - began,
            replica.engine.max_model_len,
        )

    async def stop(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        for replica in reversed(list(self._replicas.values())):
            try:
                await replica.engine.stop()
            except Exception as exc:  # keep stopping the others
                log.warning("replica %s did not stop cleanly: %s", replica.name, _one_line(exc))
            replica.set_state(ReplicaState.stopped)
            log.info("replica %s stopped", replica.name)

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self._health.probe_interval_s)
            await asyncio.gather(*(self.probe(r) for r in self._replicas.values()))

    async def probe(self, replica: Replica) -> None:
        """One health check: re-admit a recovered replica, take out a failing one, restart a dead engine."""
        if replica.state in (ReplicaState.failed, ReplicaState.stopped, ReplicaState.starting):
            return
        if replica.engine.needs_restart:
            await self._restart(replica)
            return
        try:
            await asyncio.wait_for(replica.engine.check_health(), self._health.probe_timeout_s)
        except (EngineError, TimeoutError) as exc:
            error = _one_line(exc) if isinstance(exc, EngineError) else "health check timed out"
            if replica.state is ReplicaState.ready:
                replica.set_state(ReplicaState.unhealthy, error)
            return
        if replica.state is ReplicaState.unhealthy:
            replica.set_state(ReplicaState.ready)

    async def _restart(self, replica: Replica) -> None:
        if not self._health.restart_dead_engines or replica.restarts >= self._health.max_restarts:
            replica.set_state(ReplicaState.failed, f"engine died; {replica.restarts} restarts used")
            return
        replica.restarts += 1
        log.warning(
            "replica %s: engine died, restart %d of %d",
            replica.name,
            replica.restarts,
            self._health.max_restarts,
        )
        try:
            await replica.engine.stop()
        except Exception as exc:  # a dead engine may fail to stop; start a new one regardless
            log.warning("replica %s: stopping the dead engine failed: %s", replica.name, _one_line(exc))
        await self._start_one(replica)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
