"""Preprocessing from model metadata: layouts, channels, and refusals."""

from __future__ import annotations

import json

import neumeta_client as nc
import numpy as np
import pytest
from neumeta_client._inference import ModelCard, prepare

RGB = ModelCard(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5), scale=1 / 255, input_shape=(3, 4, 5), labels=("a", "b"))


def test_card_is_read_from_the_services_metadata_props():
    props = {"neumeta.preprocess": json.dumps({"mean": [0.286], "std": [0.353], "scale": 0.00392156862745098,
                                               "layout": "NCHW", "input_shape": [1, 28, 28]}),
             "neumeta.labels": json.dumps(["T-shirt/top", "Trouser"])}
    card = ModelCard.from_metadata(props)
    assert card.input_shape == (1, 28, 28) and card.labels == ("T-shirt/top", "Trouser")
    with pytest.raises(nc.UnexpectedResponse):
        ModelCard.from_metadata({"neumeta.preprocess": json.dumps({"mean": [0.1, 0.2], "std": [1.0],
                                                                   "input_shape": [1, 2, 2]})})


def test_nchw_and_nhwc_batches_give_the_same_normalised_tensor():
    rng = np.random.default_rng(1)
    nchw = rng.integers(0, 256, size=(2, 3, 4, 5), dtype=np.uint8)
    x = prepare(nchw, RGB)
    assert x.dtype == np.float32 and x.shape == (2, 3, 4, 5) and x.flags["C_CONTIGUOUS"]
    # channel 1 of pixel (1, 0, 2, 3), by the documented formula
    assert x[1, 1, 2, 3] == pytest.approx((nchw[1, 1, 2, 3] / 255 - 0.4) / 0.25, rel=1e-5)
    np.testing.assert_array_equal(prepare(nchw.transpose(0, 2, 3, 1), RGB), x)
    np.testing.assert_array_equal(prepare(nchw[0], RGB), x[:1])  # a single CHW image becomes a batch of 1


def test_explicit_layout_resolves_square_ambiguity():
    card = ModelCard(mean=(0.0,) * 3, std=(1.0,) * 3, scale=1.0, input_shape=(3, 3, 3), labels=())
    img = np.arange(27, dtype=np.float32).reshape(1, 3, 3, 3)
    np.testing.assert_array_equal(prepare(img, card), img)  # NCHW assumed first
    np.testing.assert_array_equal(prepare(img, card, layout="NHWC"), img.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (4, 5), (1, 2, 3, 4, 5), (2, 1, 4, 5)])
def test_images_of_the_wrong_shape_are_refused(shape):
    with pytest.raises(nc.InvalidParameter, match="3x4x5"):
        prepare(np.zeros(shape, np.uint8), RGB)


def _folds_dequantization(session) -> bool:
    try:
        return session.get_session_options().get_session_config_entry("session.disable_quant_qdq") == "1"
    except RuntimeError:  # the entry is not set
        return False


@pytest.mark.parametrize("dtype,folds", [("int8-weights", True), ("int8", False), ("float32", False)])
def test_sessions_fold_the_dequantization_of_weight_only_models_only(tmp_path, tiny_ckpt_path, dtype, folds):
    import onnxruntime as ort
    from neumeta_client._inference import open_session

    from service.hypernet import load_checkpoint
    from service.serving.pipeline import render_model

    path = tmp_path / f"m-{dtype}.onnx"
    path.write_bytes(render_model(load_checkpoint(tiny_ckpt_path), 16, dtype).data)
    session, card = open_session(path)
    assert _folds_dequantization(session) is folds and card.input_shape == (1, 28, 28)
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28), dtype=np.float32)
    default = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # Folding computes the same dequantized weights once instead of per call: the same logits.
    np.testing.assert_allclose(session.run(None, {"input": x})[0], default.run(None, {"input": x})[0],
                               rtol=1e-5, atol=1e-5)


def test_the_client_knows_every_dtype_the_service_serves():
    from neumeta_client.constants import DTYPES

    from service.export import DTYPES as SERVICE_DTYPES

    assert DTYPES == SERVICE_DTYPES
