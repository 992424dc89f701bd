"""INR training: objective, gradients, resume, shipping. Tiny INR, synthetic data."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from service.archs import ResNet20, fold_batchnorm
from service.hypernet import generate, load_checkpoint
from service.training.distributed import weights_digest
from service.training.hypernet import TrainConfig, Trainer
from service.training.objective import distillation, generated_tensors
from service.training.ship import ship


def tiny_base(path, seed: int = 0):
    torch.manual_seed(seed)
    model = ResNet20(1, 10).eval()
    for m in model.modules():  # non-trivial BN statistics so folding matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    state = fold_batchnorm(model)
    save_file(state, str(path))
    return state


# The tiny random networks below predict one class whatever their blocks do, so ship's ablation check
# cannot tell a working block from a switched-off one on them: their ships pass allow_inert=True,
# and the check itself is tested on the inert case and on the shipped checkpoints with real data.


def tiny_config(tmp_path, **overrides) -> TrainConfig:
    base = tmp_path / "base.safetensors"
    if not base.exists():
        tiny_base(base)
    fields = {
        "base": str(base), "out": str(tmp_path / "run"), "data": "synthetic:64", "steps": 2,
        "batch": 8, "hidden": 16, "layers": 1, "freqs": 2, "val_widths": [16, 64], "val_limit": 16,
        "val_every": 1000, "ckpt_every": 1, "progress": False, "device": "cpu",
    }
    fields.update(overrides)
    return TrainConfig(**fields)


@pytest.mark.parametrize("per_block", [False, True], ids=["head-per-role", "head-per-block"])
def test_default_init_starts_blocks_as_identities_with_he_scaled_conv1(tmp_path, per_block):
    trainer = Trainer(tiny_config(tmp_path, head_per_block=per_block))
    assert trainer.hn.config.heads == (36 if per_block else 4)
    gen = generated_tensors(trainer.hn, "all", 64, 1, 10, seed=None)
    for name, t in gen.items():
        if name.endswith(("conv2.weight", "conv2.bias", "conv1.bias")):
            assert not t.any(), name
    stds = [float(t.detach().std()) / (2.0 / t[0].numel()) ** 0.5 for k, t in gen.items() if k.endswith("conv1.weight")]
    assert 0.5 < sum(stds) / len(stds) < 2.0  # He scale on average over the blocks
    loss, _ = trainer.loss(0)
    loss.backward()  # not a saddle: conv2's head gets gradient at step 0
    assert all(trainer.hn.w_out.grad[h].abs().sum() > 0 for h in trainer.hn.role_heads("conv2.weight"))


def test_a_task_step_gives_finite_nonzero_grads_for_every_inr_parameter(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, steps=3))
    trainer.train_step()  # moves the zero-initialised output layer, so gradients reach every layer
    trainer.opt.zero_grad()
    loss, info = trainer.loss(1)
    assert "ce" in info and torch.isfinite(loss)
    loss.backward()
    for name, p in trainer.hn.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} gets no gradient"


def test_distillation_is_zero_only_when_the_student_matches_the_teacher():
    teacher = torch.randn(6, 10)
    assert float(distillation(teacher.clone(), teacher, 2.0)) == pytest.approx(0.0, abs=1e-6)
    student = torch.randn(6, 10, requires_grad=True)
    kd = distillation(student, teacher, 2.0)
    assert kd > 0
    kd.backward()
    with torch.no_grad():  # a small step against the gradient moves the student towards the teacher
        assert distillation(student - 0.1 * student.grad, teacher, 2.0) < kd


@pytest.mark.filterwarnings("ignore:--precision bf16:RuntimeWarning")  # emulated on AVX2-only CPUs
def test_distilled_bf16_step_trains_every_inr_parameter(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, steps=3, lambda_kd=1.0, precision="bf16"))
    trainer.train_step()
    trainer.opt.zero_grad()
    loss, info = trainer.loss(1)
    assert info["kd"] > 0 and torch.isfinite(loss)
    loss.backward()
    for name, p in trainer.hn.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_without_a_bar_each_validation_prints_one_progress_line(tmp_path, capsys):
    Trainer(tiny_config(tmp_path, steps=2, val_every=1)).run()  # progress=False: a log file
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    assert all(" val w16:" in line and " w64:" in line and "train_ce:" in line for line in lines)


def test_resume_restores_step_weights_and_ema(tmp_path):
    cfg = tiny_config(tmp_path, steps=4)
    first = Trainer(cfg)
    for _ in range(2):
        first.train_step()
    first._save()
    resumed = Trainer(cfg)
    assert resumed.step == 2
    assert weights_digest(resumed.hn) == weights_digest(first.hn)
    assert weights_digest(resumed.ema) == weights_digest(first.ema)
    assert weights_digest(resumed.ema) != weights_digest(resumed.hn)  # EMA is its own copy
    result = resumed.run()
    assert result["step"] == 4 and (tmp_path / "run" / "best_ema.safetensors").is_file()


def test_ship_writes_a_checkpoint_the_service_loads_and_generates_from(tmp_path):
    cfg = tiny_config(tmp_path, steps=3, scope="last", widths_train=(16, 64))
    Trainer(cfg).run()
    out = tmp_path / "ship" / "resnet20-fmnist-last.safetensors"
    ship(tmp_path / "run", tmp_path / "base.safetensors", out, samples=1, threads=1, allow_inert=True)
    ckpt = load_checkpoint(out)
    m = ckpt.manifest
    assert (m.arch, m.scope.value, m.widths_allowed.min, m.widths_allowed.max) == ("resnet20-last", "last", 16, 64)
    assert m.training["hardware"] and m.training["steps_done"] == 3 and m.training["command"] is None
    assert m.inr.hidden == 16
    state = generate(ckpt, 20)
    assert state["layer3.2.conv1.weight"].shape == (20, 64, 3, 3)
    # fixed layers come from the base unchanged
    assert torch.equal(state["fc.weight"], load_file(str(tmp_path / "base.safetensors"))["fc.weight"])
    assert out.stat().st_size < 20 * 1024 * 1024


def test_a_continued_checkpoint_keeps_its_inr_and_fixed_layers_and_a_new_base_teaches(tmp_path):
    Trainer(tiny_config(tmp_path, steps=2, scope="last")).run()
    old = tmp_path / "old.safetensors"
    ship(tmp_path / "run", tmp_path / "base.safetensors", old, samples=1, threads=1, allow_inert=True)
    prior = load_checkpoint(old)
    teacher = tiny_base(tmp_path / "teacher.safetensors", seed=1)  # a different (better) base
    cfg = tiny_config(tmp_path, base=str(tmp_path / "teacher.safetensors"), out=str(tmp_path / "cont"), steps=1,
                      scope="last", init_from=str(old), lambda_kd=1.0)
    trainer = Trainer(cfg)
    for name, tensor in prior.hypernet.state_dict().items():
        assert torch.equal(trainer.hn.state_dict()[name], tensor), name
    assert torch.equal(trainer.fixed["fc.weight"], prior.fixed["fc.weight"])
    assert torch.equal(trainer.teacher.fc.weight, teacher["fc.weight"])
    trainer.run()
    new = tmp_path / "new.safetensors"
    ship(tmp_path / "cont", tmp_path / "teacher.safetensors", new, samples=1, threads=1, allow_inert=True)
    shipped = load_checkpoint(new)
    assert torch.equal(shipped.fixed["fc.weight"], prior.fixed["fc.weight"])
    assert shipped.manifest.training["continued_from"]["sha256"] == prior.sha256
    assert "lambda_kd" in shipped.manifest.training["objective"]


def shipped_tiny(tmp_path, scope: str = "last"):
    """A one-step run of ``scope`` shipped as a checkpoint to continue from: its path."""
    Trainer(tiny_config(tmp_path, steps=1, scope=scope)).run()
    old = tmp_path / "old.safetensors"
    ship(tmp_path / "run", tmp_path / "base.safetensors", old, samples=1, threads=1, allow_inert=True)
    return old


def test_a_larger_hidden_grows_the_continued_inr_without_changing_what_it_generates(tmp_path):
    old = shipped_tiny(tmp_path)
    prior = load_checkpoint(old)
    trainer = Trainer(tiny_config(tmp_path, out=str(tmp_path / "grow"), hidden=24, steps=1,
                                  scope="last", init_from=str(old)))
    assert trainer.hn.config.hidden == 24
    before = generated_tensors(prior.hypernet, "last", 20, 1, 10, seed=None)
    after = generated_tensors(trainer.hn, "last", 20, 1, 10, seed=None)
    assert all(torch.allclose(after[k], before[k], atol=1e-6) for k in before)
    trainer.run()
    grown = tmp_path / "grown.safetensors"
    ship(tmp_path / "grow", tmp_path / "base.safetensors", grown, samples=1, threads=1, allow_inert=True)
    assert load_checkpoint(grown).manifest.inr.hidden == 24
    with pytest.raises(ValueError, match="this run trains"):  # shrinking would lose what it learned
        Trainer(tiny_config(tmp_path, out=str(tmp_path / "shrink"), hidden=8, scope="last", init_from=str(old)))


def test_a_continued_inr_may_train_with_another_coordinate_noise_but_not_another_shape(tmp_path):
    old = shipped_tiny(tmp_path)
    trainer = Trainer(tiny_config(tmp_path, out=str(tmp_path / "quiet"), noise=0.25, scope="last", init_from=str(old)))
    assert trainer.hn.config.noise == 0.25
    assert torch.equal(trainer.hn.w_out, load_checkpoint(old).hypernet.w_out)  # same weights, less jitter
    trainer.run()
    quiet = tmp_path / "quiet.safetensors"
    ship(tmp_path / "quiet", tmp_path / "base.safetensors", quiet, samples=1, threads=1, allow_inert=True)
    assert load_checkpoint(quiet).manifest.inr.noise == 0.25  # serving samples K > 1 with the trained jitter
    with pytest.raises(ValueError, match="this run trains"):
        Trainer(tiny_config(tmp_path, out=str(tmp_path / "deeper"), layers=2, scope="last", init_from=str(old)))


def test_head_per_block_splits_a_continued_inr_without_changing_what_it_generates(tmp_path):
    old = shipped_tiny(tmp_path, scope="all")
    prior = load_checkpoint(old)
    trainer = Trainer(tiny_config(tmp_path, out=str(tmp_path / "split"), head_per_block=True, steps=2,
                                  init_from=str(old)))
    assert trainer.hn.config.heads == 36
    before = generated_tensors(prior.hypernet, "all", 24, 1, 10, seed=None)
    after = generated_tensors(trainer.hn, "all", 24, 1, 10, seed=None)
    assert all(torch.allclose(after[k], before[k], atol=1e-6) for k in before)
    trainer.run()
    new = tmp_path / "split.safetensors"
    ship(tmp_path / "split", tmp_path / "base.safetensors", new, samples=1, threads=1, allow_inert=True)
    shipped = load_checkpoint(new)
    assert (shipped.manifest.inr.heads, shipped.manifest.inr.head_per_block) == (36, True)
    # Trained apart: two blocks' conv1 heads, identical copies at the split, now differ.
    first, second = shipped.hypernet.role_heads("conv1.weight")[:2]
    assert not torch.equal(shipped.hypernet.w_out[first], shipped.hypernet.w_out[second])
    assert generate(shipped, 24)["layer3.2.conv1.weight"].shape == (24, 64, 3, 3)
    with pytest.raises(ValueError, match="this run trains"):  # a per-block INR does not merge back
        Trainer(tiny_config(tmp_path, out=str(tmp_path / "merge"), init_from=str(new)))


def test_band_limiting_switched_on_in_a_continuation_keeps_full_width_and_ships(tmp_path):
    old = shipped_tiny(tmp_path, scope="all")
    prior = load_checkpoint(old)
    trainer = Trainer(tiny_config(tmp_path, out=str(tmp_path / "bl"), head_per_block=True, band_limit=0.29,
                                  steps=2, init_from=str(old)))
    assert trainer.hn.config.band_limit == 0.29
    for width, same in ((64, True), (16, False)):
        before = generated_tensors(prior.hypernet, "all", width, 1, 10, seed=None)
        after = generated_tensors(trainer.hn, "all", width, 1, 10, seed=None)
        assert all(torch.allclose(after[k], before[k], atol=1e-6) for k in before) is same
    trainer.run()
    new = tmp_path / "bl.safetensors"
    ship(tmp_path / "bl", tmp_path / "base.safetensors", new, samples=1, threads=1, allow_inert=True)
    assert load_checkpoint(new).manifest.inr.band_limit == 0.29


def test_continuing_a_checkpoint_of_another_scope_is_refused(tmp_path):
    old = shipped_tiny(tmp_path)
    with pytest.raises(ValueError, match="last-scope"):
        Trainer(tiny_config(tmp_path, out=str(tmp_path / "cont"), scope="all", init_from=str(old)))


def test_train_fixed_co_trains_the_other_layers_and_ships_them_while_the_teacher_stays(tmp_path):
    cfg = tiny_config(tmp_path, steps=3, scope="last", lambda_kd=1.0, train_fixed=True, lr=1e-2)
    trainer = Trainer(cfg)
    before = trainer.fixed["layer1.0.conv1.weight"].detach().clone()
    trainer.run()
    after = trainer.fixed["layer1.0.conv1.weight"].detach()
    assert not torch.equal(before, after)  # the fixed layers moved
    assert torch.equal(trainer.teacher.layer1[0].conv1.weight, before)  # the teacher did not
    resumed = Trainer(cfg)  # resume restores the co-trained layers and their EMA
    assert torch.equal(resumed.fixed["layer1.0.conv1.weight"], after)
    assert torch.equal(resumed.ema_fixed["layer1.0.conv1.weight"], trainer.ema_fixed["layer1.0.conv1.weight"])
    out = tmp_path / "shipped.safetensors"
    ship(tmp_path / "run", tmp_path / "base.safetensors", out, samples=1, threads=1, allow_inert=True)
    shipped = load_checkpoint(out)
    best = load_file(str(tmp_path / "run" / "best_fixed.safetensors"))
    assert torch.equal(shipped.fixed["layer1.0.conv1.weight"], best["layer1.0.conv1.weight"])
    assert not torch.equal(shipped.fixed["layer1.0.conv1.weight"], before)
    assert "train-fixed" in shipped.manifest.training["fixed_layers"]


def test_sandwich_sampling_cycles_the_extremes_and_a_uniform_draw(tmp_path):
    uniform = Trainer(tiny_config(tmp_path, widths_train=(16, 64)))
    sandwich = Trainer(tiny_config(tmp_path, widths_train=(16, 64), width_sampling="sandwich"))
    drawn = [sandwich.width_at(s) for s in range(300)]
    assert drawn[0::3] == [16] * 100 and drawn[1::3] == [64] * 100
    assert drawn[2::3] == [uniform.width_at(s) for s in range(2, 300, 3)]  # the same seeded draws
    assert len(set(drawn[2::3])) > 20
