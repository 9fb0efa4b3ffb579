"""Reports: versioned JSON that reads back, a Markdown summary with ratios and fleet, non-empty PNG plots."""

import io
import json

import pytest

from loadtest.errors import LoadTestError
from loadtest.report import load_result, summary_markdown, verdict, write_reports
from loadtest.slo import Slo

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_writes_json_summary_and_plots(tmp_path, sample_result):
    paths = write_reports(sample_result, tmp_path)
    names = sorted(p.name for p in paths)
    assert names == [
        "gpus_vs_traffic.png",
        "latency_vs_rate.png",
        "result.json",
        "summary.md",
        "throughput.png",
    ]
    for png in tmp_path.glob("*.png"):
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000  # a real figure, not an empty canvas

    raw = json.loads((tmp_path / "result.json").read_text())
    assert raw["schema_version"] == 1 and raw["kind"] == "sparsefleet-loadtest-result"
    assert "itl_s" not in raw["phases"][0]["requests"][0]  # per-gap lists stay out of the file
    again = load_result(tmp_path / "result.json")
    assert again.ratios[0].figures["output_throughput"] == pytest.approx(0.95)
    assert [c.variant for c in again.capacities] == ["dense", "sparse-2:4"]


def test_summary_shows_both_views_ratios_fleet_and_quality(sample_result):
    text = summary_markdown(sample_result)
    assert "| figure | dense client | dense server | sparse-2:4 client | sparse-2:4 server |" in text
    assert "| output throughput (tok/s) |" in text and "0.95×" in text
    assert "## Fleet sizing" in text and "saving vs dense" in text
    assert "159.60 (+135.14)" in text
    assert "**not faster**" in text  # 5% slower is inside the ±10% noise band


@pytest.mark.parametrize(
    ("speed", "word"), [(0.8, "**slower**"), (1.3, "**faster**"), (1.02, "**not faster**")]
)
def test_verdict_words_follow_the_measured_ratio(result_builder, speed, word):
    result = result_builder({"dense": 1.0, "sparse": speed}, {"dense": 20.0, "sparse": 30.0}, None)
    (sentence,) = verdict(result)
    assert word in sentence and "perplexity 30.00 vs 20.00 (+10.00" in sentence


def test_variant_missing_the_slo_gets_no_fleet(result_builder):
    result = result_builder({"dense": 1.0, "sparse": 0.5}, {}, Slo(e2el=0.4))  # sparse E2E ≈ 650 ms
    sparse = next(c for c in result.capacities if c.variant == "sparse")
    assert sparse.rps == 0 and sparse.source == "slo_not_met"
    assert "cannot meet the SLO" in summary_markdown(result)
    assert "perplexity unknown" in verdict(result)[0]


def test_load_result_rejects_foreign_files(tmp_path):
    other = tmp_path / "other.json"
    other.write_text('{"schema_version": 1}')
    with pytest.raises(LoadTestError, match="not a loadtest result.json"):
        load_result(other)
    newer = tmp_path / "newer.json"
    newer.write_text('{"kind": "sparsefleet-loadtest-result", "schema_version": 99}')
    with pytest.raises(LoadTestError, match="schema_version 99"):
        load_result(newer)
    with pytest.raises(LoadTestError, match="does not exist"):
        load_result(tmp_path / "absent.json")


def test_perplexities_measured_after_the_run_feed_the_fleet_and_verdict(result_builder):
    from loadtest.run import with_perplexities

    result = result_builder({"dense": 1.0, "sparse": 1.0}, {}, None)
    assert "perplexity unknown" in verdict(result)[0]
    updated = with_perplexities(result, {"dense": 20.0, "sparse": 35.0}, "measured by the demo")
    assert [line.perplexity_delta for line in updated.fleet.lines] == [0.0, 15.0]
    assert "perplexity 35.00 vs 20.00 (+15.00" in verdict(updated)[0]
    assert updated.notes == ["measured by the demo"] and result.notes == []  # the original is unchanged


def test_demo_quality_step_says_why_a_perplexity_stays_unknown(result_builder, tmp_path, monkeypatch):
    from rich.console import Console

    from loadtest.demo import DemoOptions, measure_quality

    monkeypatch.delenv("SPARSEFLEET_EVAL_TEXT", raising=False)
    result = result_builder({"dense": 1.0, "sparse": 1.0}, {}, None)
    quiet = Console(file=io.StringIO())
    options = DemoOptions(output_dir=tmp_path, eval_text=tmp_path / "absent.txt")
    assert "no evaluation text" in measure_quality(result, {}, options, quiet).notes[-1]
    text = tmp_path / "text.txt"
    text.write_text("some words " * 50)
    options = DemoOptions(output_dir=tmp_path, eval_text=text)
    # a checkpoint prune-jobs cannot evaluate: the step reports it instead of failing the demo
    updated = measure_quality(result, {"sparse": tmp_path / "not-a-checkpoint"}, options, quiet)
    assert "prune-jobs eval failed" in updated.notes[-1]
    assert all(v.perplexity is None for v in updated.variants)


def test_busy_machine_is_noted():
    from loadtest.run import busy_machine_note

    assert busy_machine_note((0.5, 0.5, 0.5), (0.9, 0.6, 0.5), "sequential") is None
    note = busy_machine_note((1000.0, 0.0, 0.0), (3.0, 0.0, 0.0), "sequential")
    assert "load average up to 1000.0" in note and "--mode interleaved" in note
    assert "shared it alike" in busy_machine_note((1000.0, 0.0, 0.0), (3.0, 0.0, 0.0), "interleaved")


def test_demo_explains_a_2of4_variant_that_is_not_faster(result_builder):
    from loadtest.demo import why_not_faster

    not_faster = result_builder({"dense": 1.0, "sparse-2:4": 1.03}, {}, None)
    assert "no 2:4 sparse kernel" in why_not_faster(not_faster)
    assert why_not_faster(result_builder({"dense": 1.0, "sparse-2:4": 1.4}, {}, None)) is None
