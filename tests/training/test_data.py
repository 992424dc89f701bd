"""Data loaders on tiny generated files in the real on-disk formats (gzipped IDX, CIFAR pickles)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from service.errors import InvalidParameter
from service.training.data import (
    FMNIST_FILES,
    FMNIST_LABELS,
    VAL_SIZE,
    DatasetNotFound,
    augment,
    batches,
    epoch_order,
    load_dataset,
    normalize,
    read_idx,
)

N_TRAIN, N_TEST = VAL_SIZE + 12, 7


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def fmnist_dir(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        images_file, labels_file = FMNIST_FILES[split]
        arrays[split] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(root / images_file, arrays[split])
        write_idx(root / labels_file, arrays[f"{split}_labels"])
    return root, arrays


def test_fmnist_splits_hold_out_the_last_5000_training_images(fmnist_dir):
    root, arrays = fmnist_dir
    splits = load_dataset("fashion-mnist", root)
    assert len(splits.train) == N_TRAIN - VAL_SIZE and len(splits.val) == VAL_SIZE and len(splits.test) == N_TEST
    assert splits.train.images.shape == (N_TRAIN - VAL_SIZE, 1, 28, 28) and splits.train.images.dtype == torch.uint8
    assert splits.val.labels.dtype == torch.int64
    assert np.array_equal(splits.train.images[:, 0].numpy(), arrays["train"][:-VAL_SIZE])
    assert np.array_equal(splits.val.images[:, 0].numpy(), arrays["train"][-VAL_SIZE:])
    assert np.array_equal(splits.val.labels.numpy(), arrays["train_labels"][-VAL_SIZE:])
    assert np.array_equal(splits.test.images[:, 0].numpy(), arrays["test"])
    info = splits.info
    assert (info.in_channels, info.input_size, info.num_classes) == (1, (28, 28), 10)
    assert info.labels == FMNIST_LABELS and info.labels[0] == "T-shirt/top" and info.labels[9] == "Ankle boot"
    assert info.mean == (0.2860,) and info.std == (0.3530,)


def test_missing_fmnist_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFound) as err:
        load_dataset("fashion-mnist", tmp_path)
    assert "apt-get install dataset-fashion-mnist" in err.value.message and "--data" in err.value.message
    assert err.value.code == "invalid_parameter"


def test_truncated_idx_is_a_clear_error(tmp_path):
    path = tmp_path / "x.gz"
    write_idx(path, np.zeros((4, 3, 3), np.uint8))
    with gzip.open(path, "rb") as f:
        raw = f.read()
    with gzip.open(path, "wb") as f:
        f.write(raw[:-5])
    with pytest.raises(DatasetNotFound, match="truncated"):
        read_idx(path)


def test_unknown_dataset_is_invalid_parameter():
    with pytest.raises(InvalidParameter, match="unknown dataset"):
        load_dataset("mnist-digits", None)


def _write_cifar(root: Path, per_batch: int, n_test: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    out = {}
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        out[name] = data
        with open(root / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, f)
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"class{i}".encode() for i in range(10)], b"num_vis": 3072}, f)
    return out


def test_cifar10_loader_reads_the_pickle_directory(tmp_path):
    raw = _write_cifar(tmp_path, per_batch=1001, n_test=3)
    splits = load_dataset("cifar10", tmp_path)
    assert len(splits.train) + len(splits.val) == 5005 and len(splits.val) == VAL_SIZE
    assert splits.test.images.shape == (3, 3, 32, 32)
    # Rows are channel-major: bytes 1024..2047 are the green plane, row-major 32x32.
    first = raw["data_batch_1"][0]
    assert np.array_equal(splits.train.images[0, 1].numpy(), first[1024:2048].reshape(32, 32))
    assert np.array_equal(splits.val.images[-1].numpy().reshape(-1), raw["data_batch_5"][-1])
    assert splits.info.labels[3] == "class3" and splits.info.in_channels == 3
    assert splits.info.mean == (0.4914, 0.4822, 0.4465) and splits.info.crop_padding == 4


def test_cifar10_missing_files_are_named(tmp_path):
    _write_cifar(tmp_path, per_batch=1001, n_test=3)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFound, match="data_batch_3"):
        load_dataset("cifar10", tmp_path)


def test_augment_is_a_flipped_or_plain_crop_of_the_padded_image():
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (6, 2, 5, 7), dtype=torch.uint8, generator=g)
    out = augment(images, 2, torch.Generator().manual_seed(4))
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(len(images)):
        crops = [padded[i, :, y:y + 5, x:x + 7] for y in range(5) for x in range(5)]
        crops += [c.flip(-1) for c in crops]
        assert any(torch.equal(out[i], c) for c in crops)
    again = augment(images, 2, torch.Generator().manual_seed(4))
    assert torch.equal(out, again)


def test_normalize_uses_the_dataset_statistics(fmnist_dir):
    info = load_dataset("fashion-mnist", fmnist_dir[0]).info
    x = normalize(torch.full((1, 1, 2, 2), 255, dtype=torch.uint8), info)
    assert x.dtype == torch.float32
    assert torch.allclose(x, torch.full_like(x, (1.0 - 0.2860) / 0.3530))


def test_batches_resume_mid_epoch_draws_the_same_batches(fmnist_dir):
    splits = load_dataset("fashion-mnist", fmnist_dir[0])
    order = epoch_order(len(splits.val), seed=5, epoch=2)
    assert sorted(order.tolist()) == list(range(len(splits.val)))
    assert torch.equal(order, epoch_order(len(splits.val), seed=5, epoch=2))
    assert not torch.equal(order, epoch_order(len(splits.val), seed=5, epoch=3))
    full = list(batches(splits.val, splits.info, 1024, order=order, augment_seed=9))
    resumed = list(batches(splits.val, splits.info, 1024, order=order, augment_seed=9, start=3))
    assert len(full) == 5 and len(full[-1][1]) == VAL_SIZE - 4 * 1024
    for (xa, ya), (xb, yb) in zip(full[3:], resumed, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(full[0][1], splits.val.labels[order[:1024]])
