# syntax=docker/dockerfile:1.7
# NeuMeta weight service. Two final targets:
#   docker build --target cpu  -t neumeta-serve:0.1.0-cpu  .   (python:3.11-slim, torch 2.13.0+cpu)
#   docker build --target cuda -t neumeta-serve:0.1.0-cuda .   (CUDA 12.8 runtime, torch 2.13.0+cu128,
#                                                               triton, onnxruntime-gpu)
# Builder stages hold the compilers and turn the lock (deploy/requirements-<target>.lock, written by
# deploy/docker/lock.py from the tested environment) into wheels; final stages install those wheels
# offline through a bind mount, so neither the wheels nor a compiler end up in a layer.
# Checkpoints ship inside the package (service/checkpoints); to serve others, mount a directory of
# *.safetensors at /checkpoints and set NEUMETA_CHECKPOINT_DIR=/checkpoints.

ARG PYTHON_IMAGE=python:3.11-slim
# The CUDA tag must match CUDA_TAG in deploy/docker/lock.py (cu128 wheels need a 12.8 runtime).
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------- wheels (CPU): compilers live here
FROM ${PYTHON_IMAGE} AS wheels-cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY kernels ./kernels
COPY deploy/requirements-cpu.lock deploy/requirements-cuda.lock ./deploy/
COPY deploy/docker/wheels.sh ./deploy/docker/
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN --mount=type=cache,target=/root/.cache/pip \
    TORCH_INDEX_URL=${TORCH_INDEX_URL} sh deploy/docker/wheels.sh build cpu /wheels /src

# ---------------------------------------------------------------- final (CPU)
FROM ${PYTHON_IMAGE} AS cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    OMP_WAIT_POLICY=PASSIVE \
    NEUMETA_HOST=0.0.0.0 \
    NEUMETA_PORT=8000
RUN groupadd --system --gid 10001 neumeta \
 && useradd --system --uid 10001 --gid neumeta --create-home --home-dir /home/neumeta neumeta \
 && python -m venv /opt/venv \
 && mkdir /checkpoints && chown neumeta:neumeta /checkpoints
RUN --mount=type=bind,from=wheels-cpu,source=/wheels,target=/wheels \
    --mount=type=bind,from=wheels-cpu,source=/src/deploy,target=/deploy \
    sh /deploy/docker/wheels.sh install cpu /wheels
USER 10001:10001
WORKDIR /home/neumeta
EXPOSE 8000
# Liveness only: /readyz answers "degraded" while Redis is away, and that must not restart us.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["neumeta", "serve", "--host", "0.0.0.0", "--port", "8000"]

# ---------------------------------------------------------------- wheels (CUDA)
FROM ${CUDA_IMAGE} AS wheels-cuda
ENV DEBIAN_FRONTEND=noninteractive PATH=/opt/build/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential python3 python3-dev python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY kernels ./kernels
COPY deploy/requirements-cpu.lock deploy/requirements-cuda.lock ./deploy/
COPY deploy/docker/wheels.sh ./deploy/docker/
ARG TORCH_CUDA_INDEX_URL=https://download.pytorch.org/whl/cu128
RUN --mount=type=cache,target=/root/.cache/pip \
    TORCH_INDEX_URL=${TORCH_CUDA_INDEX_URL} sh deploy/docker/wheels.sh build cuda /wheels /src

# ---------------------------------------------------------------- final (CUDA)
FROM ${CUDA_IMAGE} AS cuda
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    TRITON_CACHE_DIR=/tmp/triton \
    OMP_WAIT_POLICY=PASSIVE \
    NEUMETA_HOST=0.0.0.0 \
    NEUMETA_PORT=8000
# The one compiler in a final image, on purpose: Triton JIT-compiles its small C launcher stubs
# with the system cc and Python.h at first kernel launch (triton/runtime/build.py). Without them the
# triton backend cannot start; the cpu target has no compiler.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 neumeta \
 && useradd --system --uid 10001 --gid neumeta --create-home --home-dir /home/neumeta neumeta \
 && python3 -m venv /opt/venv \
 && mkdir /checkpoints && chown neumeta:neumeta /checkpoints
RUN --mount=type=bind,from=wheels-cuda,source=/wheels,target=/wheels \
    --mount=type=bind,from=wheels-cuda,source=/src/deploy,target=/deploy \
    sh /deploy/docker/wheels.sh install cuda /wheels
USER 10001:10001
WORKDIR /home/neumeta
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["neumeta", "serve", "--host", "0.0.0.0", "--port", "8000"]
