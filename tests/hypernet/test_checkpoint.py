"""Checkpoint format: round trip, and every kind of bad file is a CheckpointError naming the problem."""

import hashlib
import json
import pickle

import pytest
import torch
from safetensors.torch import save as st_save

from service.errors import CheckpointError
from service.hypernet.checkpoint import (
    MANIFEST_KEY,
    checkpoint_bytes,
    load_checkpoint,
    parse_checkpoint,
    save_checkpoint,
)
from service.hypernet.model import HyperNet
from tests.factories import tiny_checkpoint, tiny_manifest


@pytest.fixture
def good(tiny_ckpt_path):
    return load_checkpoint(tiny_ckpt_path)


def _tensors(ckpt) -> dict[str, torch.Tensor]:
    tensors = {f"inr.{k}": v.clone() for k, v in ckpt.hypernet.state_dict().items()}
    tensors.update({f"fixed.{k}": v.clone() for k, v in ckpt.fixed.items()})
    return tensors


def test_a_checkpoint_over_the_size_limit_is_refused_before_anything_is_written(tmp_path, good):
    size = len(checkpoint_bytes(good.manifest, good.hypernet.state_dict(), good.fixed))
    folder = tmp_path / "ship"
    folder.mkdir()
    out = folder / "big.safetensors"
    with pytest.raises(ValueError, match=f"{size} bytes, over the {size - 1} limit"):
        save_checkpoint(out, good.manifest, good.hypernet, good.fixed, max_bytes=size - 1)
    assert list(folder.iterdir()) == []  # neither the file nor its temp
    save_checkpoint(out, good.manifest, good.hypernet, good.fixed, max_bytes=size)
    assert out.stat().st_size == size


def test_round_trip(tiny_ckpt_path, good):
    data = tiny_ckpt_path.read_bytes()
    assert good.sha256 == hashlib.sha256(data).hexdigest()
    assert good.path == tiny_ckpt_path
    assert good.manifest == tiny_manifest()
    again = parse_checkpoint(checkpoint_bytes(good.manifest, good.hypernet.state_dict(), good.fixed))
    assert again.sha256 == good.sha256  # re-serialising gives the same file
    for name, value in good.hypernet.state_dict().items():
        assert torch.equal(value, again.hypernet.state_dict()[name])
    assert not any(p.requires_grad for p in good.hypernet.parameters())


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*missing.safetensors"):
        load_checkpoint(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("keep", [0, 5, 100, -10])
def test_truncated_file(tiny_ckpt_path, keep):
    data = tiny_ckpt_path.read_bytes()
    with pytest.raises(CheckpointError, match="truncated|corrupt"):
        parse_checkpoint(data[:keep])


def test_garbage_bytes():
    with pytest.raises(CheckpointError, match="truncated or not a safetensors file"):
        parse_checkpoint(b"this is not a checkpoint at all, just text" * 10)


def test_missing_manifest(good):
    data = st_save(_tensors(good))  # valid safetensors, no metadata
    with pytest.raises(CheckpointError, match=f"no readable '{MANIFEST_KEY}'"):
        parse_checkpoint(data)


@pytest.mark.parametrize("field,value,where", [
    ("num_classes", 1, "num_classes"),
    ("scope", "some", "scope"),
    ("arch", "Not An Id!", "arch"),
    ("default_width", 99, "default_width"),
])
def test_invalid_manifest_field(good, field, value, where):
    raw = json.loads(good.manifest.model_dump_json())
    raw[field] = value
    data = st_save(_tensors(good), metadata={MANIFEST_KEY: json.dumps(raw)})
    with pytest.raises(CheckpointError, match=f"invalid manifest.*{where}"):
        parse_checkpoint(data)


def test_a_head_count_that_does_not_match_the_scope_is_refused(good):
    raw = json.loads(good.manifest.model_dump_json())
    raw["inr"]["head_per_block"] = True  # an all-scope INR with a head per block needs 36 heads, not 4
    data = st_save(_tensors(good), metadata={MANIFEST_KEY: json.dumps(raw)})
    with pytest.raises(CheckpointError, match="invalid manifest.*has 36"):
        parse_checkpoint(data)


def test_manifest_not_json(good):
    data = st_save(_tensors(good), metadata={MANIFEST_KEY: "{not json"})
    with pytest.raises(CheckpointError, match="invalid manifest"):
        parse_checkpoint(data)


def test_wrong_tensor_shape(good):
    tensors = _tensors(good)
    tensors["fixed.fc.weight"] = torch.zeros(10, 63)
    data = st_save(tensors, metadata={MANIFEST_KEY: good.manifest.model_dump_json()})
    with pytest.raises(CheckpointError, match=r"fixed.fc.weight has shape \(10, 63\), expected \(10, 64\)"):
        parse_checkpoint(data)


def test_missing_tensor(good):
    tensors = _tensors(good)
    del tensors["inr.w_out"]
    data = st_save(tensors, metadata={MANIFEST_KEY: good.manifest.model_dump_json()})
    with pytest.raises(CheckpointError, match="missing.*inr.w_out"):
        parse_checkpoint(data)


def test_nan_tensor(good):
    hypernet_state = good.hypernet.state_dict()
    hypernet_state["b_in"] = hypernet_state["b_in"].clone()
    hypernet_state["b_in"][0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="inr.b_in holds NaN"):
        parse_checkpoint(checkpoint_bytes(good.manifest, hypernet_state, good.fixed))


class _Payload:
    """Unpickling this would create ``marker``: proof that a loader ran pickle."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_is_never_loaded(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"state": _Payload(marker)}))
    torch_file = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "payload": _Payload(marker)}, torch_file)
    for candidate in (path, torch_file):
        with pytest.raises(CheckpointError):
            load_checkpoint(candidate)
    assert not marker.exists()


def test_factory_overrides_make_valid_variants(tmp_path):
    path = tiny_checkpoint(tmp_path / "last.safetensors", arch="resnet20-last", scope="last")
    ckpt = load_checkpoint(path)
    assert ckpt.manifest.arch == "resnet20-last" and ckpt.manifest.scope.value == "last"
    assert isinstance(ckpt.hypernet, HyperNet)
