"""Factories for tiny random checkpoints, so tests never depend on a trained one."""

from __future__ import annotations

from pathlib import Path

import torch

from service.archs import ResNet20, fold_batchnorm
from service.hypernet.checkpoint import Manifest, fixed_tensor_shapes, save_checkpoint
from service.hypernet.model import HyperNet, HyperNetConfig

FMNIST_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot"]


def tiny_manifest(arch: str = "resnet20", scope: str = "all", **overrides) -> Manifest:
    lo = 1 if scope == "all" else 8
    fields = {
        "arch": arch, "scope": scope, "dataset": "fashion-mnist", "in_channels": 1, "input_size": [28, 28],
        "num_classes": 10, "labels": FMNIST_LABELS,
        "preprocess": {"mean": [0.286], "std": [0.353], "input_shape": [1, 28, 28]},
        "widths_trained": {"min": 16, "max": 64}, "widths_allowed": {"min": lo, "max": 64},
        "default_width": 64, "inr": HyperNetConfig(hidden=16, layers=1, num_freqs=2), "default_samples": 1,
    }
    fields.update(overrides)
    return Manifest.model_validate(fields)


def tiny_checkpoint(path: str | Path, arch: str = "resnet20", scope: str = "all", seed: int = 0, **overrides) -> Path:
    """A valid checkpoint with a small random INR and random fixed layers."""
    torch.manual_seed(seed)
    manifest = tiny_manifest(arch, scope, **overrides)
    folded = fold_batchnorm(ResNet20(manifest.in_channels, manifest.num_classes).eval())
    fixed = {name: folded[name] for name in fixed_tensor_shapes(manifest)}
    save_checkpoint(path, manifest, HyperNet(manifest.inr), fixed)
    return Path(path)
