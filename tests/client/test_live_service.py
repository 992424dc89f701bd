"""The client against the real service under uvicorn (`live_service`: tiny random resnet20, widths 1..64)."""

from __future__ import annotations

import hashlib

import httpx
import neumeta_client as nc
import numpy as np
import pytest
from neumeta_client._protocol import ModelRequest
from neumeta_client.cache import PartialMeta

from tests.client.conftest import assert_blobs_verified


class RecordingTransport(httpx.HTTPTransport):
    """The real transport, remembering (request headers, response status) of each exchange."""

    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[tuple[httpx.Headers, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.exchanges.append((request.headers, response.status_code))
        return response


@pytest.fixture
def recorder() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture
def client(live_service, cache_dir, recorder):
    with nc.Client(live_service, cache_dir=cache_dir, transport=recorder, timeout=(5, 120)) as c:
        yield c


def test_pull_then_cached_pull_revalidates_with_304(client, recorder, cache_dir):
    path = client.pull("resnet20", 8)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
    assert client.pull("resnet20", 8) == path

    (first_headers, first_status), (second_headers, second_status) = recorder.exchanges
    assert first_status == 200 and "if-none-match" not in first_headers
    assert second_status == 304 and second_headers["if-none-match"] == f'"{path.name}"'
    assert assert_blobs_verified(cache_dir) == [path]


def test_pulled_file_is_the_onnx_model_asked_for(client):
    import onnxruntime as ort

    path = client.pull("resnet20", 12, dtype="float16")
    meta = ort.InferenceSession(str(path)).get_modelmeta().custom_metadata_map
    assert meta["neumeta.arch"] == "resnet20" and meta["neumeta.width"] == "12"
    ref = client.cache.read_ref(ModelRequest("resnet20", 12, "float16").cache_key(client.base_url))
    assert (ref.width, ref.dtype, ref.sha256) == (12, "float16", path.name)


def test_partial_download_resumes_with_a_206_from_the_service(client, recorder, live_service, tmp_path):
    full = client.pull("resnet20", 10).read_bytes()
    etag = f'"{hashlib.sha256(full).hexdigest()}"'
    with nc.Client(live_service, cache_dir=tmp_path / "fresh", transport=recorder) as fresh:
        key = ModelRequest("resnet20", 10).cache_key(fresh.base_url)  # as if a process died mid-body
        fresh.cache.partial_path(key).parent.mkdir(parents=True)
        fresh.cache.partial_path(key).write_bytes(full[: len(full) // 3])
        fresh.cache.write_partial_meta(key, PartialMeta(etag, etag.strip('"'), len(full)))
        path = fresh.pull("resnet20", 10)

    headers, status = recorder.exchanges[-1]
    assert status == 206 and headers["range"] == f"bytes={len(full) // 3}-"
    assert path.read_bytes() == full


def test_budget_pull_gets_the_largest_width_that_fits(client):
    params = client.archs()["resnet20"]["params"]
    budget = params["20"] + 1  # width 20 fits, 21 does not
    client.pull("resnet20", max_params=budget)
    ref = client.cache.read_ref(ModelRequest("resnet20", max_params=budget).cache_key(client.base_url))
    assert ref.width == 20 and ref.params == params["20"]


def test_pull_without_a_size_gets_the_arch_default_width(client):
    default = client.archs()["resnet20"]["widths"]["default"]
    path = client.pull("resnet20")
    ref = client.cache.read_ref(ModelRequest("resnet20").cache_key(client.base_url))
    assert ref.width == default and ref.sha256 == path.name
    assert client.pull("resnet20", default) == path  # the same bytes, under the explicit key too


def test_archs_lists_the_catalog(client):
    catalog = client.archs()
    entry = catalog["resnet20"]
    assert entry["widths"]["min"] == 1 and entry["widths"]["max"] == 64
    assert entry["preprocess"]["input_shape"] == [1, 28, 28]


def test_predict_applies_the_models_preprocessing(client):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)  # raw grayscale pixels, no channel axis
    prediction = client.predict(images, "resnet20", 16)
    assert prediction.logits.shape == (5, 10) and prediction.logits.dtype == np.float32
    assert len(prediction.labels) == 5 and set(prediction.labels) <= set(client.archs()["resnet20"]["labels"])

    pre = client.archs()["resnet20"]["preprocess"]  # the same numbers, reached through the catalog
    x = ((images[:, None].astype(np.float32) * pre["scale"] - pre["mean"][0]) / pre["std"][0]).astype(np.float32)
    expected = client.session("resnet20", 16).run(None, {"input": x})[0]
    np.testing.assert_allclose(prediction.logits, expected, rtol=1e-5, atol=1e-5)
    nhwc = client.predict(images[..., None], "resnet20", 16)  # (N, H, W, 1) is recognised too
    np.testing.assert_allclose(nhwc.logits, expected, rtol=1e-5, atol=1e-5)


def test_server_errors_arrive_typed(client):
    with pytest.raises(nc.UnknownArch):
        client.pull("vgg19", 8)
    with pytest.raises(nc.WidthOutOfRange) as info:
        client.pull("resnet20", 999)
    assert info.value.status == 422 and info.value.request_id
    with pytest.raises(nc.InvalidParameter):
        client.predict(np.zeros((2, 3, 32, 32), np.uint8), "resnet20", 8)  # wrong image size, caught locally


async def test_async_client_pulls_and_predicts(live_service, cache_dir):
    async with nc.AsyncClient(live_service, cache_dir=cache_dir, timeout=(5, 120)) as client:
        path = await client.pull("resnet20", 8)
        prediction = await client.predict(np.zeros((2, 1, 28, 28), np.uint8), "resnet20", 8)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
    assert prediction.logits.shape == (2, 10)


def test_api_key_protected_service(make_live_service, cache_dir):
    service = make_live_service(api_keys=["k1"])
    with nc.Client(service, cache_dir=cache_dir, api_key="wrong") as client, pytest.raises(nc.Unauthorized):
        client.pull("resnet20", 8)
    with nc.Client(service, cache_dir=cache_dir, api_key="k1") as client:
        assert client.pull("resnet20", 8).exists()
