"""int8 calibration: the shipped images, the ranges they give, and a checkpoint without a calibration set."""

import httpx
import numpy as np
import pytest
import torch

from service.archs import folded_model
from service.errors import InvalidParameter
from service.export import DTYPES, activation_names
from service.export.calibration import (
    CALIBRATION_SIZE,
    CalibrationUnavailable,
    activation_ranges,
    calibration_images,
    calibration_path,
    make_calibration_set,
    normalized,
    servable_dtypes,
)
from service.hypernet import generate, load_checkpoint
from service.serving.pipeline import render_model
from tests.factories import tiny_checkpoint


@pytest.fixture(scope="module")
def uncalibrated(tmp_path_factory):
    """A checkpoint for a dataset that ships no calibration set."""
    path = tmp_path_factory.mktemp("uncalibrated") / "tiny.safetensors"
    return load_checkpoint(tiny_checkpoint(path, dataset="fashion-mnist-rotated"))


def test_the_shipped_set_is_small_balanced_training_images():
    images = calibration_images("fashion-mnist")
    assert images.shape == (CALIBRATION_SIZE, 1, 28, 28) and images.dtype == np.uint8
    assert calibration_path("fashion-mnist").stat().st_size < 300_000
    assert not images.flags.writeable  # shared by every request
    assert len({images[i].tobytes() for i in range(len(images))}) == CALIBRATION_SIZE  # no duplicates


@pytest.mark.slow
def test_the_shipped_set_is_remade_byte_for_byte_from_the_training_split():
    from service.training.data import load_dataset

    train = load_dataset("fashion-mnist").train
    assert np.array_equal(make_calibration_set(train.images, train.labels), calibration_images("fashion-mnist"))


def test_make_calibration_set_takes_each_class_in_turn():
    labels = torch.tensor([3, 0, 0, 1, 2, 1, 0, 3, 2, 1, 0, 2])
    images = torch.arange(12, dtype=torch.uint8).view(12, 1, 1, 1)
    picked = make_calibration_set(images, labels, size=6)
    # Round robin over classes 0..3: 0's first two (1, 2), 1's first two (3, 5), 2's first (4), 3's first (0).
    assert picked.flatten().tolist() == [0, 1, 2, 3, 4, 5]


def test_ranges_cover_every_quantized_activation_and_match_a_forward_pass(tiny_ckpt):
    state = generate(tiny_ckpt, 24)
    images = calibration_images("fashion-mnist")[:32]
    ranges = activation_ranges(state, tiny_ckpt.manifest, images)
    assert list(ranges) != [] and set(ranges) == set(activation_names(state))
    x = normalized(images, tiny_ckpt.manifest)
    assert ranges["input"] == pytest.approx((float(x.min()), float(x.max())))
    model = folded_model(state, 1, 10)
    with torch.no_grad():
        stem = torch.relu(model.conv1(x))
        block = model.layer1[0](stem)
        pooled = model.layer3(model.layer2(model.layer1(stem))).mean(dim=(2, 3))
    assert ranges["stem.relu"] == pytest.approx((float(stem.min()), float(stem.max())), abs=1e-6)
    assert ranges["layer1.0.out"] == pytest.approx((float(block.min()), float(block.max())), abs=1e-6)
    assert ranges["flatten"] == pytest.approx((float(pooled.min()), float(pooled.max())), abs=1e-6)
    assert all(lo >= 0 for name, (lo, _) in ranges.items() if name.endswith(("relu", "relu1", ".out")) and
               "conv2" not in name and "shortcut" not in name)


def test_ranges_refuse_images_of_another_shape(tiny_ckpt):
    with pytest.raises(ValueError, match="calibration images have shape"):
        activation_ranges(generate(tiny_ckpt, 8), tiny_ckpt.manifest, np.zeros((4, 3, 32, 32), np.uint8))


def test_no_calibration_set_is_a_clear_error_and_other_dtypes_still_work(uncalibrated):
    assert servable_dtypes(uncalibrated.manifest) == tuple(d for d in DTYPES if d != "int8")
    with pytest.raises(CalibrationUnavailable, match="'fashion-mnist-rotated'.*use dtype int8-weights") as info:
        render_model(uncalibrated, 8, "int8")
    assert isinstance(info.value, InvalidParameter) and info.value.code == "invalid_parameter"
    assert render_model(uncalibrated, 8, "int8-weights").data


@pytest.mark.slow
def test_the_service_answers_a_coded_422_and_lists_no_int8_bytes(make_live_service, tmp_path):
    path = tiny_checkpoint(tmp_path / "rotated.safetensors", dataset="fashion-mnist-rotated")
    service = make_live_service(path)
    r = httpx.get(f"{service.url}/model", params={"arch": "resnet20", "width": 8, "dtype": "int8"}, timeout=30)
    assert r.status_code == 422 and r.headers["x-error-code"] == "invalid_parameter"
    body = r.json()
    assert body["code"] == "invalid_parameter" and "int8-weights" in body["message"] and body["request_id"]
    assert "Traceback" not in r.text
    catalog = httpx.get(f"{service.url}/archs", timeout=30).json()["resnet20"]
    assert set(catalog["bytes"]) == {"float32", "float16", "int8-weights"}
    ok = httpx.get(f"{service.url}/model", params={"arch": "resnet20", "width": 8, "dtype": "int8-weights"}, timeout=30)
    assert ok.status_code == 200 and len(ok.content) == catalog["bytes"]["int8-weights"]["8"]
