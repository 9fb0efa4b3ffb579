"""Parsing the serving marker and mapping vLLM's fused layers back to checkpoint modules."""

import pytest

from sparse24.marker import coverage, parse_marker, shard_names

LLAMA_PACKED = {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]}


def test_marker_parses_and_matches_full_names():
    marker = parse_marker(
        {
            "quant_method": "sparsefleet_24",
            "pattern": "2:4",
            "targets": [r"model\.layers\.\d+\.mlp\.\w+_proj", "re:.*self_attn\\.o_proj"],
        }
    )
    assert marker.matches("model.layers.3.mlp.down_proj")
    assert marker.matches("model.layers.0.self_attn.o_proj")
    assert not marker.matches("model.layers.0.self_attn.q_proj")
    assert not marker.matches("lm_head")


def test_no_targets_means_every_linear():
    assert parse_marker({"quant_method": "sparsefleet_24", "pattern": "2:4"}).matches("anything.at_all")


@pytest.mark.parametrize(
    "config,fragment",
    [
        ({"quant_method": "sparsefleet_24", "pattern": "4:8"}, "pattern"),
        ({"quant_method": "sparsefleet_24"}, "pattern: Field required"),
        ({"quant_method": "sparsefleet_24", "pattern": "2:4", "targets": ["(unclosed"]}, "not a valid regex"),
        ({"quant_method": "other", "pattern": "2:4"}, "quant_method"),
    ],
)
def test_bad_marker_is_one_readable_line(config, fragment):
    with pytest.raises(ValueError) as info:
        parse_marker(config)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_fused_layers_map_to_their_checkpoint_modules():
    assert shard_names("model.layers.1.self_attn.qkv_proj", LLAMA_PACKED) == [
        "model.layers.1.self_attn.q_proj",
        "model.layers.1.self_attn.k_proj",
        "model.layers.1.self_attn.v_proj",
    ]
    assert shard_names("model.layers.1.mlp.down_proj", LLAMA_PACKED) == ["model.layers.1.mlp.down_proj"]


def test_coverage_of_fused_layers():
    marker = parse_marker(
        {"quant_method": "sparsefleet_24", "pattern": "2:4", "targets": [r".*\.(q|k|v)_proj"]}
    )
    assert coverage(marker, shard_names("m.layers.0.self_attn.qkv_proj", LLAMA_PACKED)) == "all"
    assert coverage(marker, shard_names("m.layers.0.mlp.gate_up_proj", LLAMA_PACKED)) == "none"
    partial = parse_marker({"quant_method": "sparsefleet_24", "pattern": "2:4", "targets": [r".*\.q_proj"]})
    assert coverage(partial, shard_names("m.layers.0.self_attn.qkv_proj", LLAMA_PACKED)) == "partial"
