"""Training data: Fashion-MNIST (gzipped IDX) and CIFAR-10 (python-pickle directory), held in memory.

Whole datasets live as uint8 tensors ``(N, C, H, W)``; batches are augmented on tensors and
normalised to float32 only when drawn. The last 5,000 training images are the validation split
(model selection); the test split is only for the final report.
"""

from __future__ import annotations

import gzip
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.errors import InvalidParameter

VAL_SIZE = 5_000
FMNIST_DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FMNIST_LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot")
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
DATASETS = ("fashion-mnist", "cifar10")


class DatasetNotFound(InvalidParameter, FileNotFoundError):
    """The dataset's files are missing or malformed; the message says how to get them."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    in_channels: int
    input_size: tuple[int, int]  # (H, W)
    num_classes: int
    labels: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, on the [0, 1] scale
    std: tuple[float, ...]
    crop_padding: int  # augmentation: random crop after zero-padding by this many pixels

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.name, "in_channels": self.in_channels, "input_size": list(self.input_size),
                "num_classes": self.num_classes, "labels": list(self.labels),
                "mean": list(self.mean), "std": list(self.std)}


ImagesLabels = tuple[torch.Tensor, torch.Tensor]  # uint8 (N, C, H, W), int64 (N,)


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Splits:
    train: Split
    val: Split
    test: Split
    info: DatasetInfo


FMNIST_INFO = DatasetInfo("fashion-mnist", 1, (28, 28), 10, FMNIST_LABELS, (0.2860,), (0.3530,), 2)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def load_dataset(name: str, root: Path | str | None = None) -> Splits:
    """Train (all but the last 5,000 training images), val (those 5,000) and test splits."""
    if name == "fashion-mnist":
        info, (train_x, train_y), test = FMNIST_INFO, *_load_fmnist(Path(root or FMNIST_DEFAULT_ROOT))
    elif name == "cifar10":
        if root is None:
            raise DatasetNotFound("cifar10 needs --data DIR: the extracted cifar-10-batches-py directory")
        info, (train_x, train_y), test = _load_cifar10(Path(root))
    else:
        raise InvalidParameter(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if len(train_y) <= VAL_SIZE:
        raise DatasetNotFound(f"{name}: need more than {VAL_SIZE} training images, found {len(train_y)}")
    cut = len(train_y) - VAL_SIZE
    return Splits(Split(train_x[:cut], train_y[:cut]), Split(train_x[cut:], train_y[cut:]), Split(*test), info)


# --- Fashion-MNIST: gzipped IDX ---------------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) of unsigned bytes as a numpy array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DatasetNotFound(f"cannot read IDX file {path}: {exc}") from exc
    # Header: two zero bytes, a type code (0x08 = unsigned byte), the rank, then big-endian int32 dims.
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetNotFound(f"{path} is not an unsigned-byte IDX file")
    rank = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, ">i4", count=rank, offset=4))
    body = np.frombuffer(raw, np.uint8, offset=4 + 4 * rank)
    if body.size != int(np.prod(dims)):
        raise DatasetNotFound(f"{path}: header says {dims} but holds {body.size} bytes (truncated?)")
    return body.reshape(dims)


def _load_fmnist(root: Path) -> tuple[ImagesLabels, ImagesLabels]:
    missing = [f for pair in FMNIST_FILES.values() for f in pair if not (root / f).is_file()]
    if missing:
        raise DatasetNotFound(
            f"Fashion-MNIST not found in {root} (missing {', '.join(missing)}): "
            f"run `apt-get install dataset-fashion-mnist`, or pass --data DIR with the four IDX .gz files")
    out = []
    for images_file, labels_file in FMNIST_FILES.values():
        images, labels = read_idx(root / images_file), read_idx(root / labels_file)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetNotFound(f"{root}: {images_file} {images.shape} does not match {labels_file} {labels.shape}")
        out.append((torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))))
    return out[0], out[1]


# --- CIFAR-10: the dataset's own python-pickle batches ------------------------------------------

def _unpickle(path: Path) -> dict[str, Any]:
    # pickle only because it is the user-provided dataset's own published format; checkpoints never are.
    try:
        with open(path, "rb") as f:
            raw = pickle.load(f, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise DatasetNotFound(f"cannot read CIFAR-10 batch {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise DatasetNotFound(f"{path} is not a CIFAR-10 batch (expected a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


def _cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    batch = _unpickle(path)
    data = np.asarray(batch.get("data"), dtype=np.uint8)
    labels = np.asarray(batch.get("labels"), dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DatasetNotFound(f"{path}: expected data (N, 3072) and N labels, got {data.shape}, {labels.shape}")
    # Rows are channel-major (1024 R, 1024 G, 1024 B), each 32x32 row-major.
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)


def _load_cifar10(root: Path) -> tuple[DatasetInfo, ImagesLabels, ImagesLabels]:
    missing = [f for f in CIFAR_FILES if not (root / f).is_file()]
    if missing:
        raise DatasetNotFound(f"CIFAR-10 not found in {root} (missing {', '.join(missing)}): pass --data DIR "
                              f"pointing at the extracted cifar-10-batches-py directory")
    parts = [_cifar_batch(root / f"data_batch_{i}") for i in range(1, 6)]
    train = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    names = _unpickle(root / "batches.meta").get("label_names", [])
    labels = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    if len(labels) != 10:
        raise DatasetNotFound(f"{root / 'batches.meta'}: expected 10 label_names, got {len(labels)}")
    info = DatasetInfo("cifar10", 3, (32, 32), 10, labels, CIFAR_MEAN, CIFAR_STD, 4)
    return info, train, _cifar_batch(root / "test_batch")


# --- batches ------------------------------------------------------------------------------------

def normalize(images: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 (x/255 - mean) / std per channel."""
    mean = torch.tensor(info.mean, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(info.std, device=images.device).view(1, -1, 1, 1)
    return (images.float() / 255.0 - mean) / std


def augment(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding) + horizontal flip, one draw per image, vectorised over the batch.
    Runs where ``images`` and ``generator`` are (both on one device)."""
    b, c, h, w = images.shape
    dev = images.device
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=dev)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=dev)
    flip = torch.rand(b, generator=generator, device=dev) < 0.5
    rows = dy[:, None] + torch.arange(h, device=dev)  # (B, H)
    cols = torch.arange(w, device=dev).expand(b, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + dx[:, None]  # (B, W)
    return padded[torch.arange(b, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def epoch_order(n: int, seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The shuffled sample order of one epoch, drawn on ``device``; a pure function of (seed, epoch,
    device type) so runs can resume."""
    gen = torch.Generator(device).manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=gen, device=device)


class StepBatches:
    """Training batches indexed by step, not drawn from an iterator: step s always yields the same
    augmented images (a pure function of seed and s), so a run resumes exactly, and under DDP each
    rank takes its own shard of the global batch. The split lives on ``device`` (Fashion-MNIST's
    55,000 images are 43 MB as uint8) and batches are gathered, augmented and normalised there from
    per-step generators: nothing crosses the host boundary and nothing waits on the device. Holds
    one epoch's order at a time."""

    def __init__(self, split: Split, info: DatasetInfo, batch_size: int, seed: int, world: int = 1, rank: int = 0,
                 device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.images, self.labels = split.images.to(self.device), split.labels.to(self.device)
        self.info, self.batch_size, self.seed = info, batch_size, seed
        self.world, self.rank = world, rank
        self.per_epoch = max(1, len(split) // (batch_size * world))
        self._order: tuple[int, torch.Tensor] | None = None  # (epoch, its order)

    def at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x float32 (B, C, H, W), y int64 (B,)) of this rank at ``step``, on the device."""
        epoch, i = divmod(step, self.per_epoch)
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, epoch_order(len(self.labels), self.seed, epoch, self.device))
        lo = (i * self.world + self.rank) * self.batch_size
        idx = self._order[1][lo:lo + self.batch_size]
        gen = torch.Generator(self.device).manual_seed(self.seed * 7_919 + step * 131 + self.rank)
        x = normalize(augment(self.images[idx], self.info.crop_padding, gen), self.info)
        return x, self.labels[idx]


def batches(split: Split, info: DatasetInfo, batch_size: int, *, order: torch.Tensor | None = None,
            augment_seed: int | None = None, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x float32 (B, C, H, W), y int64 (B,)) batches in ``order`` (default: as stored), from batch ``start``.

    With ``augment_seed`` set, batch i is augmented with a generator seeded by (augment_seed, i), so
    skipping ``start`` batches on resume draws exactly what an uninterrupted run would have.
    """
    order = torch.arange(len(split)) if order is None else order
    for i in range(start, (len(order) + batch_size - 1) // batch_size):
        idx = order[i * batch_size:(i + 1) * batch_size]
        images = split.images[idx]
        if augment_seed is not None:
            images = augment(images, info.crop_padding, torch.Generator().manual_seed(augment_seed * 100_003 + i))
        yield normalize(images, info), split.labels[idx]
