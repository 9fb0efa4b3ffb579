"""Engines behind one interface (`base.Engine`); `build_engines` picks the implementation per replica kind."""

from __future__ import annotations

from collections.abc import Sequence

from service.engines.base import Engine
from service.engines.cpu import allowed_cpus, assign_cores
from service.settings import RemoteReplicaConfig, ReplicaConfig, VllmReplicaConfig


def build_engines(replicas: Sequence[ReplicaConfig]) -> list[Engine]:
    local = [r for r in replicas if isinstance(r, VllmReplicaConfig)]
    binds = dict(
        zip(
            (r.name for r in local),
            assign_cores([r.engine.cpu_cores for r in local], allowed_cpus()),
            strict=True,
        )
    )
    engines: list[Engine] = []
    for replica in replicas:
        if isinstance(replica, RemoteReplicaConfig):
            from service.engines.remote import RemoteEngine

            engines.append(RemoteEngine(replica))
        else:
            # Imported only when needed: importing vllm takes seconds and tests of the rest do without it.
            from service.engines.vllm_local import VllmLocalEngine

            engines.append(VllmLocalEngine(replica.name, replica.model, replica.engine, binds[replica.name]))
    return engines
