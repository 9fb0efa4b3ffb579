"""Fleet file validation, environment overrides, variant metadata and core assignment: no engines."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from service.engines.cpu import assign_cores
from service.errors import ConfigError
from service.settings import (
    RemoteReplicaConfig,
    RoutingPolicy,
    VllmReplicaConfig,
    build_fleet,
    load_fleet_file,
)
from service.variants import read_variant_metadata

MINIMAL = {"replicas": [{"name": "d0", "model": "/ckpt/dense"}]}


def test_minimal_fleet_defaults_to_an_in_process_vllm_replica():
    fleet = build_fleet(MINIMAL)
    replica = fleet.replicas[0]
    assert isinstance(replica, VllmReplicaConfig)
    assert replica.engine.dtype == "float32" and replica.engine.enforce_eager
    assert fleet.routing.policy is RoutingPolicy.weighted
    assert fleet.auth.api_keys == []


def test_remote_replica_needs_a_url():
    with pytest.raises(ConfigError, match=r"replicas\.0\.remote\.url"):
        build_fleet({"replicas": [{"name": "r0", "kind": "remote"}]})
    fleet = build_fleet({"replicas": [{"name": "r0", "kind": "remote", "url": "http://127.0.0.1:9"}]})
    assert isinstance(fleet.replicas[0], RemoteReplicaConfig)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"replicas": []}, "replicas"),
        ({"replicas": [{"name": "d0", "model": "/x", "enigne": {}}]}, "enigne"),
        ({"replicas": [{"name": "d0", "model": "/x", "engine": {"max_model_len": 0}}]}, "max_model_len"),
        ({"replicas": [{"name": "bad name", "model": "/x"}]}, "name"),
        ({"replicas": [{"name": "d0", "model": "/x", "kind": "tgi"}]}, "replicas.0"),
        ({**MINIMAL, "routing": {"weights": {"dense": -1}}}, "weights"),
        ({**MINIMAL, "routing": {"policy": "random"}}, "policy"),
        ({**MINIMAL, "limits": {"max_queue": -1}}, "max_queue"),
    ],
)
def test_invalid_fleet_names_the_field(data, field):
    with pytest.raises(ConfigError, match=field):
        build_fleet(data)


def test_duplicate_replica_names_are_rejected():
    with pytest.raises(ConfigError, match="used twice"):
        build_fleet({"replicas": [{"name": "a", "model": "/x"}, {"name": "a", "model": "/y"}]})


def test_environment_overrides_the_file(monkeypatch):
    monkeypatch.setenv("SPARSEFLEET_ROUTING__POLICY", "least_outstanding")
    monkeypatch.setenv("SPARSEFLEET_LIMITS__MAX_QUEUE", "7")
    monkeypatch.setenv("SPARSEFLEET_AUTH__API_KEYS", "k-one, k-two")
    fleet = build_fleet({**MINIMAL, "routing": {"policy": "weighted"}, "limits": {"max_queue": 3}})
    assert fleet.routing.policy is RoutingPolicy.least_outstanding
    assert fleet.limits.max_queue == 7
    assert [k.get_secret_value() for k in fleet.auth.api_keys] == ["k-one", "k-two"]
    assert "k-one" not in repr(fleet) and "k-one" not in json.dumps(fleet.model_dump(mode="json"))


def test_fleet_file_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "fleet.yaml").write_text("replicas:\n  - name: d0\n    model: ckpt/dense\n")
    fleet = load_fleet_file(tmp_path / "fleet.yaml")
    assert fleet.replicas[0].model == tmp_path / "ckpt" / "dense"


@pytest.mark.parametrize("text", ["replicas: [", "- just a list", ""])
def test_unreadable_fleet_file_is_one_config_error(tmp_path, text):
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_fleet_file(path)
    assert "\n" not in str(info.value)


def test_cli_reports_bad_fleet_as_one_line_and_exit_2(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "replicas:\n  - name: d0\n    model: /x\n    engine: {dtype: float32, max_model_len: -5}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "service", "--fleet", str(path), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:") and proc.stderr.count("\n") == 1
    assert "max_model_len" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_check_prints_the_resolved_fleet_without_keys(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text("replicas:\n  - {name: d0, model: /x}\nauth: {api_keys: [sekrit-key]}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "service", "--fleet", str(path), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["replicas"][0]["engine"]["max_model_len"] == 2048
    assert "sekrit-key" not in proc.stdout


def test_cli_missing_fleet_file_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "service", "--fleet", str(tmp_path / "nope.yaml"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr


def test_variant_metadata_from_prune_report(tmp_path):
    report = {
        "schema_version": 1,
        "variant": "sparse-2:4",
        "method": "wanda",
        "pattern": "2:4",
        "sparsity": 0.5,
        "quantization": None,
        "perplexity": {"dense": 24.46, "pruned": 61.3},
        "layers": [],
    }
    (tmp_path / "prune_report.json").write_text(json.dumps(report))
    meta = read_variant_metadata(tmp_path, None)
    assert (meta.variant, meta.method, meta.pattern, meta.sparsity) == ("sparse-2:4", "wanda", "2:4", 0.5)
    assert meta.metric_labels() == {
        "method": "wanda",
        "pattern": "2:4",
        "sparsity": "0.5",
        "quantization": "none",
        "perplexity": "61.3",
        "dense_perplexity": "24.46",
    }
    assert read_variant_metadata(tmp_path, "ab-test").variant == "ab-test"


def test_missing_or_broken_report_means_dense_of_unknown_quality(tmp_path):
    meta = read_variant_metadata(tmp_path, None)
    assert meta.variant == "dense" and meta.perplexity is None and meta.report is None
    assert meta.metric_labels()["perplexity"] == "unknown"
    (tmp_path / "prune_report.json").write_text("{not json")
    assert read_variant_metadata(tmp_path, None).variant == "dense"


def test_auto_cores_give_each_engine_its_own_block():
    assert assign_cores(["auto", "auto"], [0, 1]) == ["0", "1"]
    assert assign_cores(["auto", "auto"], [0, 1, 2, 3]) == ["0-1", "2-3"]
    assert assign_cores(["auto", "auto", "auto"], [0, 1]) == ["0", "1", "0"]
    assert assign_cores(["auto"], [0, 1]) == [None]  # a lone engine keeps vLLM's own choice
    assert assign_cores(["3", "auto", "nobind"], [0, 1]) == ["3", None, "nobind"]


DOCS = Path(__file__).resolve().parents[2] / "docs" / "service.md"


def test_docs_cover_every_fleet_field_and_their_example_is_valid():
    from service.settings import (
        AuthConfig,
        HealthConfig,
        LimitsConfig,
        RoutingConfig,
        ServerConfig,
        VllmEngineArgs,
    )

    text = DOCS.read_text()
    sections = {
        "routing": RoutingConfig,
        "health": HealthConfig,
        "limits": LimitsConfig,
        "auth": AuthConfig,
        "server": ServerConfig,
        "engine": VllmEngineArgs,
    }
    for prefix, model in sections.items():
        for name in model.model_fields:
            assert f"`{prefix}.{name}`" in text, f"{prefix}.{name} undocumented"
    for model in (VllmReplicaConfig, RemoteReplicaConfig):
        for name in set(model.model_fields) - {"engine"}:  # engine.* is checked above
            assert f"`{name}`" in text, f"replica field {name} undocumented"
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    fleet = build_fleet(yaml.safe_load(example))
    assert [r.name for r in fleet.replicas] == ["dense-0", "sparse-0", "sparse-remote"]


def test_docs_list_every_metric():
    import re

    from service.telemetry import Telemetry

    documented = set(re.findall(r"`(sparsefleet_\w+)`", DOCS.read_text()))
    for family in Telemetry(lambda: []).registry.collect():
        # prometheus_client names counter families without their _total suffix
        assert {family.name, f"{family.name}_total"} & documented, family.name
