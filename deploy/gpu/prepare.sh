#!/usr/bin/env bash
# Run here, before a GPU session: fill the two git-ignored folders that deploy/gpu/session.sh needs
# on the lent machine, which has PyTorch and Triton but none of the serving stack and no network.
#   data/fmnist  the four Fashion-MNIST .gz files (the Debian package's, or DATA=dir)
#   .whl         wheels of the project's packages its image lacks (docs/GPU.md), for CPython 3.12
# Then: device run, command "bash deploy/gpu/session.sh", carry [".whl", "data/fmnist"].
set -euo pipefail
cd "$(dirname "$0")/../.."

DATA=${DATA:-/usr/share/datasets/fashion-mnist}
# The versions this checkout is tested with; the image's own numpy, torch, triton, safetensors,
# onnx, onnxruntime, httpx, tqdm, click and h11 are used as they are.
WHEELS=${WHEELS:-"pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4
  annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0 fast-tsp==0.2.2
  fastapi==0.165.0 starlette==1.10.0 uvicorn==0.55.0 redis==8.1.0 pytest-asyncio==1.5.0"}

mkdir -p data/fmnist .whl
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [[ -f "$DATA/$f.gz" ]] || { echo "missing $DATA/$f.gz: apt-get install dataset-fashion-mnist, or DATA=dir" >&2; exit 2; }
  cp "$DATA/$f.gz" data/fmnist/
done

rm -f .whl/*.whl  # one version of each: two stop the whole install there
# shellcheck disable=SC2086  # WHEELS is a list
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl $WHEELS

du -sh data/fmnist .whl
echo "ready: carry [\".whl\", \"data/fmnist\"] and run: bash deploy/gpu/session.sh"
