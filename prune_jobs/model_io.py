"""Model in and out: resolve `--model`, load a causal LM in float32, find its decoder blocks and their linear
layers without naming one architecture's attributes, and save a Hugging Face checkpoint directory."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from prune_jobs.embedded import EMBEDDED_MODELS, embedded_model_dir, file_sha256, gguf_model_dir, is_embedded
from prune_jobs.errors import ModelSourceError

# Copied verbatim from the source so the checkpoint chats and stops exactly like the original.
SIDECAR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
)
WEIGHT_SUFFIXES = (".safetensors", ".bin")
SERVE_MARKER_METHOD = "sparsefleet_24"


@dataclass(frozen=True)
class ModelSource:
    source: str  # what the user gave
    path: Path  # a local Hugging Face directory
    sha256: str  # of the source file (.gguf) or of the directory's weight files


def resolve_model(source: str, *, quiet: bool = False) -> ModelSource:
    """`embedded:NAME`, a .gguf file (converted once into the cache) or a local HF directory."""
    if is_embedded(source):
        path = embedded_model_dir(source, quiet=quiet)
        return ModelSource(source, path, weights_sha256(path))
    candidate = Path(source).expanduser()
    if candidate.is_file() and candidate.suffix.lower() == ".gguf":
        return ModelSource(source, gguf_model_dir(candidate, quiet=quiet), file_sha256(candidate))
    if candidate.is_dir():
        if not (candidate / "config.json").is_file():
            raise ModelSourceError(
                f"{source}: directory has no config.json (not a Hugging Face model directory)"
            )
        return ModelSource(source, candidate, weights_sha256(candidate))
    if candidate.exists():
        raise ModelSourceError(f"{source}: not a directory nor a .gguf file")
    known = ", ".join(f"embedded:{name}" for name in EMBEDDED_MODELS)
    raise ModelSourceError(
        f"model {source!r} not found; give a local HF directory, a .gguf file or one of: {known}"
    )


def weights_sha256(path: Path) -> str:
    """sha256 over the weight files of a directory, in name order (what identifies the model's numbers)."""
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    if len(files) == 1:
        return file_sha256(files[0])
    import hashlib

    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0" + file_sha256(f).encode())
    return digest.hexdigest()


def load_causal_lm(path: Path) -> tuple[nn.Module, object]:
    """(model in float32, eval mode; tokenizer). One-line `ModelSourceError` for anything unusable."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(path)
    except Exception as exc:  # broken JSON, unknown model_type, ...
        raise ModelSourceError(f"{path}: cannot read config.json: {_first_line(exc)}") from exc
    architectures = getattr(config, "architectures", None) or []
    is_causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)
    if getattr(config, "is_encoder_decoder", False) or (architectures and not is_causal):
        shown = ", ".join(architectures) or config.model_type
        raise ModelSourceError(f"{path}: not a causal (decoder-only) language model ({shown})")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except Exception as exc:
        raise ModelSourceError(f"{path}: cannot load the model: {_first_line(exc)}") from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as exc:
        raise ModelSourceError(f"{path}: cannot load the tokenizer: {_first_line(exc)}") from exc
    model.eval()
    decoder_layers(model)  # fail now, with a clear message, if the layout is not a stack of decoder blocks
    return model, tokenizer


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """(qualified name, blocks) of the stack of decoder blocks: the ModuleList of same-class blocks holding
    linear layers (`model.layers` in Llama/Mistral/Qwen2, `transformer.h` in GPT-2 style models)."""
    expected = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    best: tuple[int, str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if len({type(block) for block in module}) != 1 or expected not in (None, len(module)):
            continue
        if not any(isinstance(m, nn.Linear) for m in module[0].modules()):
            continue
        size = sum(p.numel() for p in module.parameters())
        if best is None or size > best[0]:
            best = (size, name, module)
    if best is None:
        raise ModelSourceError(f"{type(model).__name__}: no stack of decoder blocks with linear layers found")
    return best[1], best[2]


def layer_linears(layer: nn.Module, prefix: str) -> dict[str, nn.Linear]:
    """Every nn.Linear inside one block, by fully qualified module name, in registration order."""
    return {f"{prefix}.{name}": m for name, m in layer.named_modules() if isinstance(m, nn.Linear)}


def usable_context(model: nn.Module, tokenizer: object) -> int:
    """The longest sequence the model can really attend over: the smallest of its position limit, the
    tokenizer's limit (when set), a sliding window and the pre-extension length of scaled RoPE."""
    config = model.config
    limits = [getattr(config, "max_position_embeddings", None)]
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and tok_limit < 10**7:  # transformers' "unset" is ~1e30
        limits.append(tok_limit)
    if getattr(config, "use_sliding_window", True):
        limits.append(getattr(config, "sliding_window", None))
    for rope in (getattr(config, "rope_scaling", None), getattr(config, "rope_parameters", None)):
        if isinstance(rope, dict):
            limits.append(rope.get("original_max_position_embeddings"))
    valid = [int(v) for v in limits if isinstance(v, int) and v > 0]
    return min(valid) if valid else 2048


def model_summary(model: nn.Module) -> dict[str, object]:
    params = list(model.parameters())  # shared (tied) tensors appear once
    return {
        "architecture": (getattr(model.config, "architectures", None) or [type(model).__name__])[0],
        "parameters": sum(p.numel() for p in params),
        "nonzero_parameters": int(sum(int(torch.count_nonzero(p)) for p in params)),
    }


def save_checkpoint(
    model: nn.Module, source_dir: Path, out_dir: Path, *, serve_marker: dict[str, object] | None
) -> None:
    """Write weights (safetensors) + config into `out_dir`, then the source's tokenizer/chat template/
    generation config verbatim. `serve_marker` becomes config.json's quantization_config (2:4 serving)."""
    _drop_stale_marker(model)
    quiet = logging.getLogger("transformers.modeling_utils")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "unknown quantization method" warnings about our own marker
    try:
        model.save_pretrained(out_dir)
    finally:
        quiet.setLevel(level)
    copy_sidecar_files(source_dir, out_dir)
    if serve_marker is not None:
        set_quantization_config(out_dir, serve_marker)


def copy_sidecar_files(source_dir: Path, out_dir: Path) -> None:
    for name in SIDECAR_FILES:
        if (source_dir / name).is_file():
            shutil.copyfile(source_dir / name, out_dir / name)


def set_quantization_config(out_dir: Path, quantization_config: dict[str, object]) -> None:
    config_path = out_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["quantization_config"] = quantization_config
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _drop_stale_marker(model: nn.Module) -> None:
    """A source that is itself a sparsefleet 2:4 checkpoint must not pass its marker on unchecked."""
    qc = getattr(model.config, "quantization_config", None)
    method = qc.get("quant_method") if isinstance(qc, dict) else getattr(qc, "quant_method", None)
    if method == SERVE_MARKER_METHOD:
        del model.config.quantization_config
