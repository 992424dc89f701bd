"""Base/individual training on a tiny synthetic dataset: runs, resumes exactly, folds, refuses recipe changes."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from service.archs import folded_model, inner_widths
from service.errors import InvalidParameter
from service.training.base import BaseTrainConfig, learning_rate, train
from service.training.data import DatasetInfo, Split, Splits

INFO = DatasetInfo("tiny", 1, (8, 8), 3, ("a", "b", "c"), (0.5,), (0.25,), 1)


@pytest.fixture(scope="module")
def splits() -> Splits:
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> Split:
        labels = torch.randint(0, 3, (n,), generator=g)
        # Class-dependent brightness so there is something to learn.
        images = (labels.view(-1, 1, 1, 1) * 80 + torch.randint(0, 60, (n, 1, 8, 8), generator=g)).to(torch.uint8)
        return Split(images, labels)

    return Splits(split(40), split(16), split(16), INFO)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config(out, **overrides) -> BaseTrainConfig:
    # 40 images / batch 16 = 3 steps per epoch (the last one short); 2 epochs = 6 steps.
    fields = {"out": str(out), "epochs": 2, "batch": 16, "lr": 0.05, "save_every": 1, "log_every": 1,
              "device": "cpu"}  # exact-resume checks need the CPU's determinism; CUDA: test_device.py
    fields.update(overrides)
    return BaseTrainConfig(**fields)


def test_resume_continues_from_the_saved_step_and_matches_an_uninterrupted_run(tmp_path, splits):
    whole = train(config(tmp_path / "whole"), splits, command="test")
    assert whole["finished"] and whole["steps"] == 6 and len(whole["history"]) == 2

    partial = train(config(tmp_path / "split", max_steps=2), splits, command="test")
    assert partial == {"finished": False, "step": 2, "total_steps": 6}
    saved = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    assert saved["step"] == 2 and not (tmp_path / "split" / "folded.safetensors").exists()
    resumed = train(config(tmp_path / "split"), splits, command="test")
    assert resumed["finished"] and resumed["steps"] == 6

    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name].float(), b[name].float(), atol=1e-6), name
    assert [h["val_acc"] for h in whole["history"]] == [h["val_acc"] for h in resumed["history"]]


@pytest.mark.filterwarnings("ignore:--precision bf16:RuntimeWarning")
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_finished_run_writes_a_folded_model_and_sidecar(tmp_path, splits, precision):
    train(config(tmp_path, precision=precision), splits, command="neumeta train base --epochs 2")
    folded = load_file(tmp_path / "folded.safetensors")
    sidecar = json.loads((tmp_path / "folded.json").read_text())
    assert "layer3.2.conv1.bias" in folded and not any("bn" in k for k in folded)
    assert sidecar["command"] == "neumeta train base --epochs 2" and sidecar["epochs"] == 2
    assert sidecar["labels"] == ["a", "b", "c"] and sidecar["in_channels"] == 1
    # The sidecar's test accuracy is the folded network's, recomputed here from the file.
    net = folded_model(folded, 1, 3)
    x = (splits.test.images.float() / 255 - 0.5) / 0.25
    acc = float((net(x).argmax(1) == splits.test.labels).float().mean())
    assert sidecar["test_acc"] == pytest.approx(acc)
    assert 1 <= sidecar["best_epoch"] <= 2
    assert sidecar["recipe"]["precision"] == precision
    assert all(t.dtype == torch.float32 and t.is_contiguous() for t in folded.values())


def test_individual_width_trains_narrow_blocks(tmp_path, splits):
    widths = inner_widths("all", 16)
    result = train(config(tmp_path, epochs=1, inner_widths=widths, extra={"scope": "all", "width": 16}), splits)
    folded = load_file(tmp_path / "folded.safetensors")
    assert folded["layer1.0.conv1.weight"].shape[0] == 4 and folded["layer3.2.conv1.weight"].shape[0] == 16
    assert folded["layer3.2.conv2.weight"].shape[:2] == (64, 16)
    assert result["width"] == 16 and result["inner_widths"] == widths


@pytest.mark.filterwarnings("ignore:--precision bf16:RuntimeWarning")  # emulated on AVX2-only CPUs
def test_resume_refuses_a_changed_recipe(tmp_path, splits):
    train(config(tmp_path, max_steps=1, precision="bf16"), splits)
    with pytest.raises(InvalidParameter, match="lr"):
        train(config(tmp_path, lr=0.2, precision="bf16"), splits)
    with pytest.raises(InvalidParameter, match="precision"):
        train(config(tmp_path, precision="fp32"), splits)


def test_cosine_schedule_starts_at_lr_and_ends_at_zero():
    cfg = config("unused", lr=0.1)
    assert learning_rate(cfg, 0, 100) == pytest.approx(0.1)
    assert learning_rate(cfg, 50, 100) == pytest.approx(0.05)
    assert learning_rate(cfg, 100, 100) == pytest.approx(0.0, abs=1e-12)


def test_cli_train_base_without_data_says_how_to_get_it(tmp_path, capsys):
    import service.cli

    code = service.cli.main(["train", "base", "--data", str(tmp_path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: invalid_parameter:")
    assert "apt-get install dataset-fashion-mnist" in err and "Traceback" not in err
