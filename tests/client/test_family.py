"""`pull(family=...)` and `neumeta-pull --family` against the real service on both shipped checkpoints.

The expected choice is recomputed from `Client.archs()` (the service's `GET /archs`) by the rule the
API states, never written down: the most accurate model within the budget (ties to fewer bytes),
or with an accuracy floor the smallest file that meets it.
"""

from __future__ import annotations

import asyncio

import httpx
import neumeta_client as nc
import pytest
from neumeta_client._protocol import ModelRequest
from neumeta_client.cli import EXIT_CODES, main


@pytest.fixture
def client(shipped_service, cache_dir):
    with nc.Client(shipped_service, cache_dir=cache_dir, timeout=(5, 120)) as c:
        yield c


def measured(catalog: dict, dtype: str) -> list[tuple[str, int, int, float]]:
    """(arch, width, bytes, accuracy) of every measured model of the resnet20 family, from /archs."""
    return [(arch, int(w), entry["bytes"][dtype][w], row["accuracy"])
            for arch, entry in catalog.items() if arch != "families" and entry["family"] == "resnet20"
            for w, row in entry["evaluation"]["per_width"].items()]


def test_pull_with_a_byte_budget_gets_the_most_accurate_model_that_fits(client):
    catalog = client.archs()
    rows = measured(catalog, "float16")
    budget = sorted(r[2] for r in rows)[len(rows) // 3]
    fits = [r for r in rows if r[2] <= budget]
    top = max((r[3], -r[2]) for r in fits)
    allowed = {(r[0], r[1]) for r in fits if (r[3], -r[2]) == top}

    path = client.pull(family="resnet20", max_bytes=budget, dtype="float16")
    ref = client.ref(family="resnet20", max_bytes=budget, dtype="float16")
    assert (ref.arch, ref.width) in allowed and ref.sha256 == path.name and ref.size <= budget
    assert ref.accuracy.startswith(f"{top[0]:g}; split=")  # X-Model-Accuracy, kept with the ref
    import onnxruntime as ort

    meta = ort.InferenceSession(str(path)).get_modelmeta().custom_metadata_map
    assert (meta["neumeta.arch"], int(meta["neumeta.width"])) == (ref.arch, ref.width)  # the file says it too


def test_async_pull_with_an_accuracy_floor_gets_the_smallest_file_meeting_it(shipped_service, cache_dir):
    async def go() -> tuple[dict, float, nc.cache.Ref]:
        async with nc.AsyncClient(shipped_service, cache_dir=cache_dir, timeout=(5, 120)) as client:
            catalog = await client.archs()
            floor = sorted(r[3] for r in measured(catalog, "float32"))[-3]
            await client.pull(family="resnet20", min_accuracy=floor)
            key = ModelRequest(family="resnet20", min_accuracy=floor).cache_key(client.base_url)
            return catalog, floor, client.cache.read_ref(key)

    catalog, floor, ref = asyncio.run(go())
    meeting = [r for r in measured(catalog, "float32") if r[3] >= floor]
    smallest = min(r[2] for r in meeting)
    assert (ref.arch, ref.width) in {(r[0], r[1]) for r in meeting if r[2] == smallest}


def test_predict_takes_a_family_request(client):
    import numpy as np

    images = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    prediction = client.predict(images, family="resnet20", max_params=100_000)
    ref = client.ref(family="resnet20", max_params=100_000)
    catalog = client.archs()
    assert prediction.logits.shape == (3, 10) and ref.params == catalog[ref.arch]["params"][str(ref.width)] <= 100_000


def test_no_model_fits_is_its_own_error(client):
    smallest = min(r[2] for r in measured(client.archs(), "float32"))
    with pytest.raises(nc.NoModelFits, match="closest") as info:
        client.pull(family="resnet20", max_bytes=smallest - 1)
    assert isinstance(info.value, ValueError) and info.value.status == 422


def test_neumeta_pull_family_prints_the_path_and_what_was_chosen(shipped_service, cache_dir, capsys):
    catalog = httpx.get(f"{shipped_service}/archs", timeout=60).json()
    rows = measured(catalog, "int8")
    floor = sorted(r[3] for r in rows)[len(rows) // 2]
    budget = max(r[2] for r in rows)
    assert main(["--server", shipped_service, "--family", "resnet20", "--max-bytes", str(budget), "--min-accuracy",
                 str(floor), "--dtype", "int8", "--cache-dir", str(cache_dir)]) == 0
    stdout, stderr = capsys.readouterr()
    meeting = [r for r in rows if r[3] >= floor]
    smallest = min(r[2] for r in meeting)
    chosen = {r for r in meeting if r[2] == smallest}
    assert any(f"{arch} width={width} dtype=int8" in stderr and f"accuracy={accuracy:g}%" in stderr
               for arch, width, _, accuracy in chosen)
    key = ModelRequest(family="resnet20", max_bytes=budget, min_accuracy=floor, dtype="int8").cache_key(
        httpx.URL(shipped_service))
    ref = nc.cache.ModelCache(cache_dir).read_ref(key)
    assert (ref.arch, ref.width, ref.size) in {(r[0], r[1], r[2]) for r in chosen}
    assert stdout.strip() == str(cache_dir / "blobs" / ref.sha256)


def test_neumeta_pull_exit_codes_for_family_requests(shipped_service, cache_dir, capsys):
    code = dict((cls, code) for cls, code, _ in EXIT_CODES)[nc.NoModelFits]
    assert main(["--server", shipped_service, "--family", "resnet20", "--max-bytes", "1000",
                 "--cache-dir", str(cache_dir)]) == code
    assert "no_model_fits" in capsys.readouterr().err
    for flags in (["--family", "resnet20", "--width", "8"], ["--arch", "resnet20", "--min-accuracy", "90"],
                  ["--family", "resnet20", "--arch", "resnet20"]):
        with pytest.raises(SystemExit) as info:
            main(["--server", shipped_service, *flags, "--cache-dir", str(cache_dir)])
        assert info.value.code == 2, flags
