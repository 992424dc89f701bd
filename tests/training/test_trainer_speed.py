"""What makes the trainer fast without changing its math: no host reads inside a step, the batched
INR path equal to the reference path step for step, step-indexed batches on the device, resumes
that land on the same weights, a checkpoint cadence bounded in time, and ``neumeta bench train``."""

from __future__ import annotations

import json

import pytest
import torch

from service.training.data import StepBatches
from service.training.hypernet import Trainer
from service.training.hypernet_inputs import synthetic_splits
from tests.training.test_hypernet import tiny_config

SHIPPED_SHAPE = {"head_per_block": True, "band_limit": 0.2887, "train_fixed": True, "lambda_kd": 1.0,
                 "widths_train": (8, 64), "width_sampling": "sandwich"}


def test_a_training_step_never_reads_a_device_value_on_the_host(tmp_path, monkeypatch):
    trainer = Trainer(tiny_config(tmp_path, noise=1.0, **SHIPPED_SHAPE))
    trainer.train_step()  # per-width plans, models and optimizer state are built outside the check

    def host_read(*_args, **_kwargs):
        raise AssertionError("a host read of a tensor inside a training step")

    for name in ("item", "__float__", "__bool__", "__int__", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, host_read)
    for _ in range(4):  # every width of the sandwich, and a repeat
        info = trainer.train_step()
    monkeypatch.undo()
    assert {"ce", "acc", "kd", "norm", "grad_norm"} <= info.keys()
    assert all(torch.isfinite(v) for k, v in info.items() if k != "width")


@pytest.mark.parametrize("extra", [{}, {"noise": 1.0, "head_per_block": False, "band_limit": 0.0}],
                         ids=["shipped shape", "noisy, per-role"])
def test_the_batched_path_trains_like_the_reference_path(tmp_path, extra):
    """Three steps of each INR path from the same start: the same losses and the same weights."""
    runs = {}
    for path in ("reference", "batched"):
        (tmp_path / path).mkdir()
        cfg = tiny_config(tmp_path / path, **{**SHIPPED_SHAPE, **extra, "inr_path": path})
        trainer = Trainer(cfg)
        infos = [trainer.train_step() for _ in range(3)]
        runs[path] = (infos, {k: v.detach().clone() for k, v in trainer.hn.state_dict().items()})
    (ref_infos, ref_state), (infos, state) = runs["reference"], runs["batched"]
    for a, b in zip(ref_infos, infos, strict=True):
        assert a["width"] == b["width"]
        for key in ("ce", "kd", "norm", "grad_norm"):
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
    for name, value in ref_state.items():
        torch.testing.assert_close(state[name], value, rtol=1e-4, atol=1e-5)


def test_validation_and_generation_see_the_weights_of_the_last_step(tmp_path):
    """The fused optimizer writes parameters in place without bumping their version counters; the
    band-limited w_in kept outside autograd (kernels.memo) is keyed by them, so the trainer bumps
    them itself. Without that, the no-grad (reference) path served the weights of an earlier step."""
    from service.hypernet import scatter
    from service.training.objective import generated_tensors

    trainer = Trainer(tiny_config(tmp_path, **SHIPPED_SHAPE))
    for _ in range(3):
        trainer.train_step()
        with torch.no_grad():
            served = generated_tensors(trainer.hn, "all", 64, 1, 10, seed=None)  # memoised w_in
            plan = trainer.batched.plan(64)
            trained = scatter(plan.table, trainer.batched.forward(plan, None))
        for name, t in served.items():
            torch.testing.assert_close(t, trained[name], rtol=1e-5, atol=1e-6)


def test_step_batches_are_a_function_of_the_step_and_live_on_the_device():
    splits = synthetic_splits(300)
    first = StepBatches(splits.train, splits.info, 32, seed=3)
    x5, y5 = first.at(5)
    again = StepBatches(splits.train, splits.info, 32, seed=3)  # a resumed run: a fresh object, step 5 first
    x, y = again.at(5)
    assert torch.equal(x, x5) and torch.equal(y, y5) and x.device == first.images.device
    assert not torch.equal(first.at(6)[0], x5)
    other_epoch = first.at(5 + first.per_epoch)[1]
    assert not torch.equal(other_epoch, y5)  # a new epoch draws a new order


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path):
    (tmp_path / "whole").mkdir(), (tmp_path / "cut").mkdir()
    whole = Trainer(tiny_config(tmp_path / "whole", steps=6, **SHIPPED_SHAPE, ckpt_min_seconds=0))
    whole.run()
    cut = tiny_config(tmp_path / "cut", steps=6, **SHIPPED_SHAPE, ckpt_every=2, ckpt_min_seconds=0)
    first = Trainer(cut)
    for _ in range(3):  # "killed" after step 3: its last checkpoint is step 2
        first.train_step()
        if first.step % 2 == 0:
            first._save()
    resumed = Trainer(cut)
    assert resumed.step == 2
    resumed.run()
    for name, value in whole.hn.state_dict().items():
        assert torch.equal(resumed.hn.state_dict()[name], value), name
    for name, value in whole.ema.state_dict().items():
        assert torch.equal(resumed.ema.state_dict()[name], value), name


def test_checkpoints_are_written_at_most_once_per_ckpt_min_seconds(tmp_path, monkeypatch):
    trainer = Trainer(tiny_config(tmp_path, steps=8, ckpt_every=1, ckpt_min_seconds=3600))
    saves = []
    monkeypatch.setattr(trainer, "_save", lambda: saves.append(trainer.step))
    trainer.run()
    assert saves == [8]  # not one per step: only the final one, within the hour
    (tmp_path / "fast").mkdir()
    fast = Trainer(tiny_config(tmp_path / "fast", steps=4, ckpt_every=2, ckpt_min_seconds=0))
    fast_saves = []
    monkeypatch.setattr(fast, "_save", lambda: fast_saves.append(fast.step))
    fast.run()
    assert fast_saves == [2, 4]


def test_the_schedule_is_set_in_steps_not_wall_time(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, steps=100, max_minutes=0.001))
    before = [trainer.lr_at(s) for s in (0, 50, 99)]
    trainer.wall = 3600.0  # an hour later: the rate at a step is what it was
    assert [trainer.lr_at(s) for s in (0, 50, 99)] == before


@pytest.mark.slow
def test_bench_train_reports_ms_and_ops_per_step_for_both_inr_paths(capsys):
    from service.cli import main

    assert main(["bench", "train", "--widths", "8", "--batches", "16", "--steps", "1", "--warmup", "1",
                 "--precision", "fp32", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["inr_path"] for r in rows] == ["reference", "batched"]
    for row in rows:
        assert {"width", "batch", "ms_per_step", "ops_per_step"} <= row.keys()
        assert row["width"] == 8 and row["batch"] == 16 and row["ms_per_step"] > 0
    reference, batched = rows
    assert batched["ops_per_step"] < reference["ops_per_step"] / 3  # the whole point of the batched path
    assert batched["speedup"] == pytest.approx(reference["ms_per_step"] / batched["ms_per_step"], rel=0.02)
