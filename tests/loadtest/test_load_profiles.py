"""Load profiles: validated models with a `kind` tag, bounded arrival schedules, sweep rates."""

import pytest
from pydantic import TypeAdapter, ValidationError

from loadtest.profiles import (
    ConcurrencyProfile,
    PoissonProfile,
    Profile,
    SweepProfile,
    arrival_offsets,
    fixed_step,
    sweep_rates,
    sweep_steps,
)


def test_profiles_parse_by_kind():
    adapter = TypeAdapter(Profile)
    assert adapter.validate_python({"kind": "concurrency", "concurrency": 3}) == ConcurrencyProfile(
        concurrency=3
    )
    assert adapter.validate_python({"kind": "poisson", "rate": 2}).rate == 2.0
    assert adapter.validate_python({"kind": "sweep", "rates": [1, 2]}).rates == (1.0, 2.0)
    for bad in (
        {"kind": "burst"},
        {"kind": "constant", "rate": 0},
        {"kind": "concurrency", "concurrency": 0},
        {"kind": "sweep", "rates": [1, -1]},
        {"kind": "sweep", "steps": 1},
    ):
        with pytest.raises(ValidationError):
            adapter.validate_python(bad)


def test_constant_arrivals_are_evenly_spaced_and_bounded():
    times = arrival_offsets(4.0, "constant", duration_s=2.0, max_requests=None)
    assert times == pytest.approx([i / 4 for i in range(8)])
    assert len(arrival_offsets(4.0, "constant", duration_s=2.0, max_requests=3)) == 3


def test_poisson_arrivals_are_seeded_with_the_right_mean_rate():
    a = arrival_offsets(10.0, "poisson", duration_s=500.0, max_requests=None, seed=1)
    assert a == arrival_offsets(10.0, "poisson", duration_s=500.0, max_requests=None, seed=1)
    assert a != arrival_offsets(10.0, "poisson", duration_s=500.0, max_requests=None, seed=2)
    assert len(a) / 500.0 == pytest.approx(10.0, rel=0.05)
    assert all(t < 500.0 for t in a) and list(a) == sorted(a)


def test_fixed_steps():
    closed = fixed_step(ConcurrencyProfile(concurrency=5), 10.0, None)
    assert closed.concurrency == 5 and closed.arrivals_s is None
    opened = fixed_step(PoissonProfile(rate=2.0, seed=3), 10.0, 4)
    assert opened.rate == 2.0 and len(opened.arrivals_s) == 4


def test_sweep_rates_from_probe_or_explicit():
    profile = SweepProfile(steps=4, headroom=1.0)
    assert sweep_rates(profile, 8.0) == pytest.approx([2.0, 4.0, 6.0, 8.0])
    assert sweep_rates(profile, 0.0) == []
    assert sweep_rates(SweepProfile(rates=(3.0, 1.0)), 100.0) == [1.0, 3.0]
    steps = sweep_steps(SweepProfile(rates=(1.0, 2.0), arrivals="constant"), [1.0, 2.0], 3.0, None)
    assert [s.step for s in steps] == [1, 2] and [len(s.arrivals_s) for s in steps] == [3, 6]
