"""2:4 copies of the tiny Llama, made here with plain torch (not with prune_jobs): the plugin is tested on
checkpoints whose pattern and marker we control exactly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

MARKER = {
    "quant_method": "sparsefleet_24",
    "pattern": "2:4",
    "targets": [r"model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj"],
}


def make_24_copy(src: Path, dst: Path, marker: dict | None, leave_dense: str | None = None) -> Path:
    """Copy a checkpoint, prune every decoder projection to 2:4 by magnitude (except `leave_dense`), and
    write `marker` as quantization_config."""
    from safetensors.torch import load_file, save_file

    from sparse24.pattern import prune_24

    shutil.copytree(src, dst)
    for shard in dst.glob("*.safetensors"):
        tensors = load_file(shard)
        for name, tensor in tensors.items():
            if tensor.dim() == 2 and name.endswith("_proj.weight") and name != leave_dense:
                tensors[name] = prune_24(tensor).contiguous()
        save_file(tensors, shard, metadata={"format": "pt"})
    if marker is not None:
        config = json.loads((dst / "config.json").read_text())
        config["quantization_config"] = marker
        (dst / "config.json").write_text(json.dumps(config, indent=2))
    return dst


@pytest.fixture(scope="session")
def tiny_24_dirs(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """dense: 2:4 zeros, no marker; marked: same + marker; broken: marker, layer 1 k_proj left dense."""
    root = tmp_path_factory.mktemp("tiny-24")
    return {
        "dense": make_24_copy(tiny_llama_dir, root / "dense", None),
        "marked": make_24_copy(tiny_llama_dir, root / "marked", MARKER),
        "broken": make_24_copy(
            tiny_llama_dir, root / "broken", MARKER, "model.layers.1.self_attn.k_proj.weight"
        ),
    }
