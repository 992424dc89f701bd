#!/usr/bin/env bash
# Run here, before a GPU session: fill the two git-ignored folders that deploy/gpu/session.sh needs
# on the lent machine, which has PyTorch and Triton but none of the serving stack and no network.
#   data/fmnist  the four Fashion-MNIST .gz files (the Debian package's, or DATA=dir)
#   .whl         wheels of the project's packages its image lacks (docs/GPU.md), for CPython 3.12
# Then: device run, command "bash deploy/gpu/session.sh", carry [".whl", "data/fmnist"].
set -euo pipefail
cd "$(dirname "$0")/../.."

PY=${PY:-.venv/bin/python}  # the tested environment (make install): file names and versions come from it
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
# The image's own numpy, torch, triton, safetensors, onnx, onnxruntime, httpx, tqdm, click and h11
# are used as they are; these it lacks.
PACKAGES="pydantic pydantic-core pydantic-settings python-dotenv annotated-types typing-inspection
  typing-extensions fast-tsp fastapi starlette uvicorn redis pytest-asyncio"

mkdir -p data/fmnist .whl
FILES=$($PY -c "from service.training.data import FMNIST_FILES; print(*(f for p in FMNIST_FILES.values() for f in p))")
for f in $FILES; do
  [[ -f "$DATA/$f" ]] || { echo "missing $DATA/$f: apt-get install dataset-fashion-mnist, or DATA=dir" >&2; exit 2; }
  cp "$DATA/$f" data/fmnist/
done

# Pinned to the versions installed where the tests pass.
# shellcheck disable=SC2086  # PACKAGES is a list
PINNED=$($PY -c "import sys; from importlib.metadata import version; print(*(f'{n}=={version(n)}' for n in sys.argv[1:]))" \
  $PACKAGES)
rm -f .whl/*.whl  # one version of each: two stop the whole install there
# shellcheck disable=SC2086  # PINNED is a list
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl $PINNED

du -sh data/fmnist .whl
echo "ready: carry [\".whl\", \"data/fmnist\"] and run: bash deploy/gpu/session.sh"
