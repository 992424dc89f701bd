#!/bin/sh
# The one place that says how the image gets its Python packages; the Dockerfile and
# tests/deploy/test_image_install.py both run it, so the test installs exactly what the image does.
#
#   wheels.sh build   cpu|cuda WHEEL_DIR SRC_DIR   # builder stage: every wheel, pinned by the lock
#   wheels.sh install cpu|cuda WHEEL_DIR           # final stage: offline install from WHEEL_DIR only
#
# TORCH_INDEX_URL (build only) is the PyTorch wheel index for the target; empty means pip's own
# configuration (a find-links dir holding torch 2.13.0+cpu on the dev machines, which are offline).
set -eu

action=$1 target=$2 wheels=$3
here=$(cd "$(dirname "$0")" && pwd)
lock="$here/../requirements-$target.lock"
[ -f "$lock" ] || { echo "wheels.sh: no lock for target '$target' ($lock)" >&2; exit 2; }

case "$action" in
build)
    src=$4
    extra=""
    [ -n "${TORCH_INDEX_URL:-}" ] && extra="--extra-index-url $TORCH_INDEX_URL"
    # Resolve with dependencies so anything the lock misses (the CUDA wheel's nvidia-*/triton)
    # is fetched too; binary wheels only, and sdists built here, where the compilers are.
    # shellcheck disable=SC2086
    python -m pip wheel --wheel-dir "$wheels" $extra -r "$lock"
    python -m pip wheel --wheel-dir "$wheels" --no-deps "$src"
    ;;
install)
    python -m pip install --no-index --find-links "$wheels" -r "$lock"
    if [ "$target" = cpu ]; then
        # Full resolution against the wheel dir: fails the build if the lock lost a dependency.
        python -m pip install --no-index --find-links "$wheels" neumeta-serve
        python -m pip check
    else
        # The app declares onnxruntime; onnxruntime-gpu provides the same module, so skip its deps.
        python -m pip install --no-index --find-links "$wheels" --no-deps neumeta-serve
    fi
    ;;
*)
    echo "usage: wheels.sh build|install cpu|cuda WHEEL_DIR [SRC_DIR]" >&2
    exit 2
    ;;
esac
