"""Routing policies as pure functions of replica snapshots."""

from collections import Counter

from service.routing import Candidate, Router, SmoothWeightedRoundRobin
from service.settings import RoutingPolicy


def cand(name, variant, *, healthy=True, outstanding=0, saturated=False):
    return Candidate(name, variant, healthy, outstanding, saturated)


FLEET = [cand("d0", "dense"), cand("d1", "dense"), cand("s0", "sparse")]


def test_smooth_weighted_round_robin_gives_exact_shares_interleaved():
    swrr = SmoothWeightedRoundRobin({"a": 3, "b": 1})
    picks = [swrr.pick({"a", "b"}) for _ in range(8)]
    assert Counter(picks) == {"a": 6, "b": 2}
    assert picks[:4].count("b") == 1  # interleaved, not "aaaaaabb"


def test_weighted_split_between_variants_then_balanced_within():
    router = Router(RoutingPolicy.weighted, {"dense": 1, "sparse": 1})
    served = [router.plan(FLEET)[0] for _ in range(40)]
    by_variant = Counter("dense" if name.startswith("d") else "sparse" for name in served)
    assert by_variant == {"dense": 20, "sparse": 20}
    assert {"d0", "d1"} <= set(served)  # both dense replicas take turns on ties


def test_weighted_skips_variants_without_healthy_replicas():
    router = Router(RoutingPolicy.weighted, {"dense": 1, "sparse": 3})
    fleet = [cand("d0", "dense"), cand("s0", "sparse", healthy=False)]
    assert {router.plan(fleet)[0] for _ in range(10)} == {"d0"}
    assert router.plan([cand("s0", "sparse", healthy=False)]) == []


def test_zero_weight_variant_is_reachable_only_when_pinned():
    router = Router(RoutingPolicy.weighted, {"dense": 1, "sparse": 0})
    assert {router.plan(FLEET)[0] for _ in range(10)} <= {"d0", "d1"}
    assert router.plan(FLEET, variant="sparse") == ["s0"]


def test_pinned_variant_prefers_least_outstanding_and_lists_failover_in_the_same_variant():
    router = Router(RoutingPolicy.weighted, {})
    fleet = [cand("d0", "dense", outstanding=5), cand("d1", "dense", outstanding=1), cand("s0", "sparse")]
    assert router.plan(fleet, variant="dense") == ["d1", "d0"]


def test_saturated_replicas_come_last():
    router = Router(RoutingPolicy.least_outstanding, {})
    fleet = [cand("d0", "dense", outstanding=0, saturated=True), cand("d1", "dense", outstanding=9)]
    assert router.plan(fleet, variant="dense") == ["d1", "d0"]


def test_pinned_replica_goes_there_or_nowhere():
    router = Router(RoutingPolicy.weighted, {"dense": 1})
    assert router.plan(FLEET, replica="s0") == ["s0"]
    sick = [cand("d0", "dense", healthy=False), cand("d1", "dense")]
    assert router.plan(sick, replica="d0") == []


def test_least_outstanding_picks_the_least_loaded_replica_of_any_variant():
    router = Router(RoutingPolicy.least_outstanding, {})
    fleet = [
        cand("d0", "dense", outstanding=3),
        cand("d1", "dense", outstanding=2),
        cand("s0", "sparse", outstanding=1),
    ]
    assert router.plan(fleet) == ["s0"]
    fleet[2] = cand("s0", "sparse", outstanding=7)
    assert router.plan(fleet) == ["d1", "d0"]


def test_least_outstanding_rotates_ties():
    router = Router(RoutingPolicy.least_outstanding, {})
    assert Counter(router.plan(FLEET)[0] for _ in range(30)) == {"d0": 10, "d1": 10, "s0": 10}


def test_unhealthy_replicas_are_never_planned_and_failover_can_be_disabled():
    fleet = [cand("d0", "dense", healthy=False), cand("d1", "dense"), cand("d2", "dense")]
    assert "d0" not in Router(RoutingPolicy.weighted, {}).plan(fleet, variant="dense")
    assert len(Router(RoutingPolicy.weighted, {}, failover=False).plan(fleet, variant="dense")) == 1
