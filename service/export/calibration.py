"""Calibration for ``dtype=int8``: the shipped images, and the activation ranges they give a network.

A calibration set is a small uint8 array ``(N, C, H, W)`` of *training* images (never validation or
test), stored as ``service/export/calibration/<dataset>.npy`` and shipped as package data, so a
server needs no dataset on disk. Fashion-MNIST's holds 256 images, the first 26 of each class in
training order (25 for the last four): the ranges settle by then (docs/BENCHMARKS.md measures 64 to 1,024) and
the file stays at 200 KB. Remake it, byte for byte, with::

    python -m service.export.calibration --dataset fashion-mnist [--data DIR]

A checkpoint whose dataset has no calibration set cannot be served as ``int8`` (``CalibrationUnavailable``,
an ``invalid_parameter``); ``int8-weights`` needs no calibration.

The ranges come from the generation pass itself: the folded network runs in PyTorch over the
calibration images and records (min, max) of every activation ``activation_names`` lists. That is
about 3.5x faster than onnxruntime's ``quantize_static`` on the exported float32 model, which
rebuilds and re-runs the graph (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from service.archs import block_names, folded_model
from service.constants import DTYPES
from service.errors import InvalidParameter
from service.export.graph import Range
from service.export.onnx_builder import INPUT_NAME, activation_names
from service.hypernet.checkpoint import Manifest

CALIBRATION_DIR = Path(__file__).with_name("calibration")
CALIBRATION_SIZE = 256
# What register_forward_hook calls: (module, its positional inputs, its output).
ForwardHook = Callable[[torch.nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]


class CalibrationUnavailable(InvalidParameter):
    """``dtype=int8`` for a checkpoint whose dataset ships no calibration set."""


def calibration_path(dataset: str) -> Path:
    return CALIBRATION_DIR / f"{dataset}.npy"


@lru_cache(maxsize=8)
def calibration_images(dataset: str) -> np.ndarray:
    """The shipped uint8 (N, C, H, W) calibration images of ``dataset`` (read-only)."""
    path = calibration_path(dataset)
    if not path.is_file():
        raise CalibrationUnavailable(f"dtype int8 needs calibration images of dataset {dataset!r} and none ship "
                                     f"with this service; use dtype int8-weights (no calibration) or float32")
    images: np.ndarray = np.load(path, allow_pickle=False)
    images.setflags(write=False)
    return images


def servable_dtypes(manifest: Manifest) -> tuple[str, ...]:
    """The dtypes a checkpoint can be exported as: all but int8 when its dataset has no calibration set."""
    return tuple(d for d in DTYPES if d != "int8" or calibration_path(manifest.dataset).is_file())


def normalized(images: np.ndarray, manifest: Manifest) -> torch.Tensor:
    """uint8 (N, C, H, W) -> the float32 input the model expects, by the manifest's preprocessing."""
    pre = manifest.preprocess
    mean = torch.tensor(pre.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float32).view(1, -1, 1, 1)
    return (torch.from_numpy(np.array(images, dtype=np.float32)) * pre.scale - mean) / std  # a copy: ours is read-only


@torch.inference_mode()
def activation_ranges(state: dict[str, torch.Tensor], manifest: Manifest,
                      images: np.ndarray | None = None) -> dict[str, Range]:
    """(min, max) over ``images`` (default: the dataset's calibration set) of every activation the
    int8 graph quantizes, named as ``onnx_builder`` names them."""
    if images is None:
        images = calibration_images(manifest.dataset)
    expected = (manifest.in_channels, *manifest.input_size)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(f"calibration images have shape {images.shape}, the model takes (N, {expected})")
    model = folded_model(state, manifest.in_channels, manifest.num_classes)
    ranges: dict[str, Range] = {}

    def record(name: str, relu: bool = False, pool: bool = False) -> ForwardHook:
        def hook(_module: torch.nn.Module, _inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            if pool:  # layer3's output (B, 64, h, w) -> the pooled, flattened (B, 64) that feeds the fc
                out = out.mean(dim=(2, 3))
            lo, hi = out.aminmax()
            lo = lo.clamp(min=0) if relu else lo  # the ReLU after this conv, applied to the range
            ranges[name] = (float(lo), float(hi.clamp(min=0) if relu else hi))
        return hook

    handles = [model.conv1.register_forward_hook(record("stem.relu", relu=True)),
               model.layer3.register_forward_hook(record("flatten", pool=True))]
    for name in block_names():
        block = model.block(name)
        handles += [block.conv1.register_forward_hook(record(f"{name}.relu1", relu=True)),
                    block.conv2.register_forward_hook(record(f"{name}.conv2.out")),
                    block.register_forward_hook(record(f"{name}.out"))]
        if isinstance(block.shortcut, torch.nn.Conv2d):
            handles.append(block.shortcut.register_forward_hook(record(f"{name}.shortcut.out")))
    x = normalized(images, manifest)
    ranges[INPUT_NAME] = (float(x.min()), float(x.max()))
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    missing = set(activation_names(state)) - set(ranges)
    assert not missing, f"calibration hooks miss {sorted(missing)}"  # the two namings drifted apart
    return ranges


def make_calibration_set(train_images: torch.Tensor, train_labels: torch.Tensor, size: int = CALIBRATION_SIZE,
                         ) -> np.ndarray:
    """The first ``size`` training images taken round-robin by class (class 0's first, class 1's first,
    ...), returned in training order: a deterministic, class-balanced subset."""
    classes = int(train_labels.max()) + 1
    picks: list[int] = []
    for rank in range(size):
        members = torch.nonzero(train_labels == rank % classes).flatten()
        picks.append(int(members[rank // classes]))
    return np.ascontiguousarray(train_images[sorted(picks)].numpy(), dtype=np.uint8)


def main(argv: list[str] | None = None) -> None:
    from service.training.data import load_dataset  # dev-time only: servers read the shipped file

    parser = argparse.ArgumentParser(description="write the shipped calibration set of a dataset")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data", type=Path, default=None, help="dataset directory (default: the installed one)")
    parser.add_argument("--size", type=int, default=CALIBRATION_SIZE)
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args(argv)
    train = load_dataset(args.dataset, args.data).train  # the training split: validation images excluded
    images = make_calibration_set(train.images, train.labels, args.size)
    out = args.output or calibration_path(args.dataset)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, images, allow_pickle=False)
    print(f"wrote {out}: {images.shape} uint8, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
