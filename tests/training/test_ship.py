"""`neumeta train ship`: a run's best EMA weights into a service checkpoint, refused when its
generated blocks are switched off or its INR is too large, with K measured on VAL."""

from __future__ import annotations

import pytest

from service.hypernet import load_checkpoint
from service.training.hypernet import Trainer
from service.training.ship import ship
from tests.training.test_hypernet import tiny_config


def test_ship_refuses_a_checkpoint_whose_generated_blocks_are_switched_off(tmp_path, capsys):
    # conv2 heads at zero and a step at lr 0: every generated block is the identity at every width,
    # the shape a co-trained run collapsed into on the H100 (docs/MODEL_CARD.md, "Tried and not kept").
    Trainer(tiny_config(tmp_path, steps=1, scope="last", lr=0.0)).run()
    out = tmp_path / "inert.safetensors"
    with pytest.raises(ValueError, match="switched off at widths 16, 64"):
        ship(tmp_path / "run", tmp_path / "base.safetensors", out, samples=1, threads=1)
    assert not out.exists()
    from service.cli import main

    argv = ["train", "ship", str(tmp_path / "run"), "-o", str(out), "--samples", "1", "--threads", "1"]
    assert main(argv) == 2 and "switched off" in capsys.readouterr().err and not out.exists()
    assert main([*argv, "--allow-inert"]) == 0
    ablation = load_checkpoint(out).manifest.training["block_ablation"]
    assert ablation["changed_predictions"] == {"16": 0.0, "64": 0.0}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet20-fmnist-last", "resnet20-fmnist-all"])
def test_the_shipped_checkpoints_generated_blocks_matter(name):
    from pathlib import Path

    from service.training.data import FMNIST_DEFAULT_ROOT, load_dataset
    from service.training.ship import MIN_CHANGED, block_ablation

    if not (FMNIST_DEFAULT_ROOT / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("needs the dataset-fashion-mnist package")
    ckpt = load_checkpoint(Path("service/checkpoints") / f"{name}.safetensors")
    lo, hi = ckpt.manifest.widths_allowed.min, ckpt.manifest.widths_allowed.max
    report = block_ablation(ckpt, load_dataset("fashion-mnist"), [lo, hi], limit=1000)
    changed = report["changed_predictions"]
    assert min(changed.values()) > 3 * MIN_CHANGED, changed  # measured 0.079-0.91; a collapsed block: 0.0
    # Cutting the whole residual branch costs real accuracy (measured 1.1-1.2 pt for `last`, 80 pt for
    # `all`; the collapsed H100 run lost 0.13 pt on the test set).
    worth = {w: report["val_accuracy"][w] - report["val_accuracy_branch_cut"][w] for w in changed}
    assert min(worth.values()) >= 0.5, worth


def test_ship_without_samples_measures_each_k_on_val_and_records_the_choice(tmp_path):
    Trainer(tiny_config(tmp_path, steps=1, scope="last")).run()
    out = tmp_path / "chosen.safetensors"
    ship(tmp_path / "run", tmp_path / "base.safetensors", out, threads=1, allow_inert=True)
    m = load_checkpoint(out).manifest
    report = m.training["default_samples_selection"]
    scores = {int(k): v for k, v in report["val_mean_acc_by_K"].items()}
    assert sorted(scores) == [1, 5] and report["widths"] == [16, 32, 64]
    # The rule it states: the smallest K within 0.1 pt of the best mean VAL accuracy.
    assert m.default_samples == min(k for k, s in scores.items() if s >= max(scores.values()) - 0.1)


def test_ship_refuses_an_oversized_inr_before_measuring_anything(tmp_path, monkeypatch):
    import service.training.ship as ship_module

    Trainer(tiny_config(tmp_path, steps=1, scope="last")).run()

    def measured(*_args, **_kwargs):
        raise AssertionError("VAL measurements ran before the size check")

    monkeypatch.setattr(ship_module, "MAX_BYTES", 10_000)
    monkeypatch.setattr(ship_module, "choose_default_samples", measured)
    monkeypatch.setattr(ship_module, "block_ablation", measured)
    out = tmp_path / "big.safetensors"
    with pytest.raises(ValueError, match="over the 10000 limit"):
        ship(tmp_path / "run", tmp_path / "base.safetensors", out, threads=1)
    assert not out.exists() and not list(tmp_path.glob("big.safetensors*"))
