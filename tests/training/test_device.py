"""Training and evaluation off the CPU: device selection, per-device coordinate tables, and (with a
GPU) base and INR training on CUDA checked against the CPU oracle and shipped from a CPU."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from service.errors import InvalidParameter
from service.hypernet import coord_table, generate, load_checkpoint
from service.training import precision
from service.training.base import BaseTrainConfig as BaseConfig
from service.training.base import train
from service.training.hypernet import Trainer
from service.training.precision import hardware, resolve_device, resolve_precision
from service.training.ship import ship
from tests.training.test_base import splits  # noqa: F401  (module-scoped fixture)
from tests.training.test_hypernet import tiny_config

CUDA = torch.cuda.is_available()
gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")


def test_auto_picks_cuda_only_when_torch_sees_it():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if CUDA else "cpu")
    assert hardware(torch.device("cpu")).startswith("CPU (")


@pytest.mark.skipif(CUDA, reason="checks the error without a GPU")
def test_asking_for_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(InvalidParameter, match="no CUDA device"):
        resolve_device("cuda")


@pytest.mark.skipif(CUDA, reason="checks the error without a GPU")
@pytest.mark.parametrize("argv", [["train", "base"], ["train", "individual", "--width", "16"],
                                  ["train", "hypernet", "--base", "{base}"], ["eval", "--checkpoint", "{base}"]])
def test_cli_refuses_cuda_without_a_gpu_before_reading_anything(tmp_path, capsys, argv):
    import service.cli

    base = tmp_path / "base.safetensors"
    base.write_bytes(b"")  # must exist for hypernet's own check; never read
    argv = [a.format(base=base) for a in argv]
    code = service.cli.main([*argv, "--device", "cuda", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "no CUDA device" in err and "Traceback" not in err


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_the_hardware_runs_it_natively(monkeypatch, native):
    monkeypatch.setattr(precision, "bf16_is_native", lambda device: native)
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    assert resolve_precision("auto", cpu, resumed="bf16") == "bf16"  # a resumed run keeps its own
    assert resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(InvalidParameter, match="unknown precision"):
        resolve_precision("fp16", cpu)


def test_explicit_bf16_where_it_is_emulated_is_kept_with_a_warning(monkeypatch):
    monkeypatch.setattr(precision, "bf16_is_native", lambda device: False)
    with pytest.warns(RuntimeWarning, match="emulates bfloat16"):
        assert resolve_precision("bf16", torch.device("cpu")) == "bf16"


def test_the_cpu_check_agrees_with_onednn():
    # The real probe (not a stub): on this machine it must match what oneDNN reports for itself.
    assert precision.bf16_is_native(torch.device("cpu")) == torch.ops.mkldnn._is_mkldnn_bf16_supported()


@pytest.mark.filterwarnings("ignore:--precision bf16:RuntimeWarning")
def test_runs_record_the_precision_auto_resolved_to_and_resume_with_it(tmp_path, splits):  # noqa: F811
    native = "bf16" if precision.bf16_is_native(torch.device("cpu")) else "fp32"
    cfg = BaseConfig(out=str(tmp_path / "base"), epochs=1, batch=16, save_every=1, device="cpu")
    train(replace(cfg, precision="bf16", max_steps=1), splits, command="test")
    sidecar = train(cfg, splits, command="test")  # "auto" on resume: the run's own bf16, on any CPU
    assert sidecar["finished"] and sidecar["recipe"]["precision"] == "bf16"
    fresh = train(replace(cfg, out=str(tmp_path / "fresh")), splits, command="test")
    assert fresh["recipe"]["precision"] == native
    assert Trainer(tiny_config(tmp_path, steps=0)).cfg.precision == native


def test_coordinate_tables_are_cached_per_device():
    cpu = coord_table("last", 24, 1, 10)
    moved = coord_table("last", 24, 1, 10, device="meta")
    assert moved is coord_table("last", 24, 1, 10, device="meta")  # one copy per device, not per step
    assert moved.coords.device.type == "meta" and moved.coords.shape == cpu.coords.shape
    assert moved.slots == cpu.slots and moved.head_offsets == cpu.head_offsets


@pytest.mark.gpu
@gpu
def test_base_trains_on_cuda_and_resumes_on_the_cpu(tmp_path, splits):  # noqa: F811
    cfg = {"out": str(tmp_path), "epochs": 2, "batch": 16, "lr": 0.05, "save_every": 1}
    assert train(BaseConfig(**cfg, device="cuda", max_steps=3), splits) == \
        {"finished": False, "step": 3, "total_steps": 6}
    done = train(BaseConfig(**cfg, device="cpu"), splits)  # the same run, moved to the CPU
    assert done["finished"] and done["steps"] == 6
    assert all(t.device.type == "cpu" for t in load_file(tmp_path / "folded.safetensors").values())
    assert "CPU" in json.loads((tmp_path / "folded.json").read_text())["hardware"]


@pytest.mark.gpu
@gpu
def test_inr_loss_on_cuda_matches_the_cpu_and_the_run_ships_from_the_cpu(tmp_path, monkeypatch):
    # fp32, TF32 off: the CUDA step computes the CPU's objective (same INR, noise, batch).
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    cpu = Trainer(tiny_config(tmp_path, out=str(tmp_path / "cpu"), lambda_kd=1.0))
    cuda = Trainer(tiny_config(tmp_path, out=str(tmp_path / "run"), lambda_kd=1.0, device="cuda",
                               train_fixed=True))
    for step in (0, 1):  # two task steps, with CE and KD
        (loss_cpu, parts_cpu), (loss_cuda, parts_cuda) = cpu.loss(step), cuda.loss(step)
        assert parts_cpu["width"] == parts_cuda["width"]
        assert float(loss_cuda.detach()) == pytest.approx(float(loss_cpu.detach()), rel=1e-4, abs=1e-5)
    result = cuda.run()
    assert result["step"] == 2 and cuda.hn.w_in.device.type == "cuda"
    state = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=True)
    assert any("CUDA" in h for h in state["hardware"])
    out = tmp_path / "ckpt.safetensors"
    ship(tmp_path / "run", tmp_path / "base.safetensors", out, samples=1, threads=1, allow_inert=True)
    ckpt = load_checkpoint(out)
    assert "CUDA" in ckpt.manifest.training["hardware"]
    assert generate(ckpt, 40, backend="torch")["layer3.2.conv1.weight"].shape[0] == 40
