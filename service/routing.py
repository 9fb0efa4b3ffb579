"""Routing policies: which replica serves a request, and which ones to fail over to. Pure logic over
snapshots of replica state; no I/O, no FastAPI, so every rule is unit-testable without engines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.settings import RoutingPolicy


@dataclass(frozen=True)
class Candidate:
    name: str
    variant: str
    healthy: bool
    outstanding: int  # running + queued
    saturated: bool  # every slot busy and the queue full


class SmoothWeightedRoundRobin:
    """nginx's smooth weighted round-robin: over any window the picks match the weights as closely as
    integers allow (3:1 gives exactly 75/25 per 4 picks), interleaved rather than in bursts."""

    def __init__(self, weights: dict[str, float]) -> None:
        self._weights = {key: w for key, w in weights.items() if w > 0}
        self._current = dict.fromkeys(self._weights, 0.0)

    def pick(self, eligible: set[str]) -> str | None:
        keys = [key for key in self._weights if key in eligible]
        if not keys:
            return None
        total = sum(self._weights[key] for key in keys)
        for key in keys:
            self._current[key] += self._weights[key]
        best = max(keys, key=lambda key: self._current[key])
        self._current[best] -= total
        return best


class Router:
    def __init__(self, policy: RoutingPolicy, weights: dict[str, float], *, failover: bool = True) -> None:
        self._policy = policy
        self._split = SmoothWeightedRoundRobin(weights)
        self._failover = failover
        self._turns: dict[str, int] = {}  # per group: rotates ties so equally loaded replicas take turns

    def plan(
        self, candidates: Sequence[Candidate], *, variant: str | None = None, replica: str | None = None
    ) -> list[str]:
        """Replica names to try in order: the choice first, then its failover alternatives (same variant).
        Empty when nothing healthy can take the request."""
        healthy = [c for c in candidates if c.healthy]
        if replica is not None:
            return [c.name for c in healthy if c.name == replica]
        if variant is None:
            if self._policy is RoutingPolicy.weighted:
                variant = self._split.pick({c.variant for c in healthy})
                if variant is None:
                    return []
            else:
                ranked = self._rank(healthy, group="")
                if not ranked:
                    return []
                variant = ranked[0].variant
        ranked = self._rank([c for c in healthy if c.variant == variant], group=variant)
        names = [c.name for c in ranked]
        return names if self._failover else names[:1]

    def _rank(self, candidates: list[Candidate], group: str) -> list[Candidate]:
        turn = self._turns[group] = self._turns.get(group, -1) + 1
        n = len(candidates)
        order = {c.name: (i - turn) % n for i, c in enumerate(candidates)}
        return sorted(candidates, key=lambda c: (c.saturated, c.outstanding, order[c.name]))
