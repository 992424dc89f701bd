"""The fused Triton kernel against the PyTorch reference (the oracle).

Without CUDA the kernel runs in Triton's interpreter: TRITON_INTERPRET must be set when
``triton.jit`` decorates it, so this module sets it around the import and restores it (other
test modules see the environment unchanged); tests that go through dispatch set it themselves.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import onnxruntime as ort
import pytest
import torch

from kernels import fused_launch
from kernels.dispatch import BackendUnavailable, resolve_backend
from kernels.fused_launch import LaunchShape
from kernels.reference import INRWeights, inr_mean_reference

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")


def _import_kernel_module():
    if CUDA:
        return importlib.import_module("kernels.fused_inr")
    saved = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        module = importlib.import_module("kernels.fused_inr")
        if module.interpreting():
            return module
        return importlib.reload(module)  # imported earlier without the interpreter: re-decorate
    finally:
        if saved is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = saved


fused_inr = _import_kernel_module()
fused_inr_mean = fused_inr.fused_inr_mean
gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def _interpreter_while_testing(monkeypatch):
    """Triton reads TRITON_INTERPRET at launch too (lazy imports, constexpr helpers)."""
    if not CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "1")


def random_weights(heads: int, dim: int, freqs: int, hidden: int, layers: int, out: int, seed: int = 0) -> INRWeights:
    g = torch.Generator().manual_seed(seed)
    e = dim * (1 + 2 * freqs)

    def rnd(*shape: int, scale: float) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * scale).to(DEVICE)

    return INRWeights(
        rnd(heads, e, hidden, scale=e**-0.5), rnd(heads, hidden, scale=0.1),
        rnd(heads, layers, hidden, hidden, scale=hidden**-0.5), rnd(heads, layers, hidden, scale=0.1),
        rnd(heads, layers, scale=0.5), rnd(heads, hidden, out, scale=hidden**-0.5), rnd(heads, out, scale=0.1),
    )


def random_table(rows: int, heads: int, dim: int = 5, seed: int = 1):
    """coords, jitter, out_scale, head_offsets with uneven (possibly empty) head groups."""
    g = torch.Generator().manual_seed(seed)
    coords = torch.rand(rows, dim, generator=g)
    jitter = torch.rand(rows, dim, generator=g) * 0.2
    scale = torch.rand(rows, generator=g) + 0.5
    cuts = sorted(torch.randint(0, rows + 1, (heads - 1,), generator=g).tolist())
    return coords.to(DEVICE), jitter.to(DEVICE), scale.to(DEVICE), [0, *cuts, rows]


@pytest.mark.parametrize(
    "rows, heads, hidden, layers, freqs, samples, clean_first",
    [
        (1, 1, 16, 1, 2, 1, True),
        (1, 4, 32, 2, 3, 7, False),  # three of the four heads have no rows
        (127, 3, 32, 2, 3, 7, True),
        (127, 1, 64, 0, 1, 1, False),  # no residual layers; F_PAD padding
        (1000, 4, 64, 3, 4, 7, True),
        (1000, 3, 16, 2, 8, 1, True),
        (200, 2, 48, 1, 2, 2, True),  # non-power-of-two hidden: zero-padded to 64
        (300, 2, 256, 1, 2, 2, False),  # two register halves (HP = 256)
        (127, 2, 16, 1, 11, 3, True),  # F = 11: angles up to ~2^10 pi, reduced in-kernel
    ],
)
def test_kernel_matches_reference(rows, heads, hidden, layers, freqs, samples, clean_first):
    weights = random_weights(heads, 5, freqs, hidden, layers, 9)
    coords, jitter, scale, offsets = random_table(rows, heads)
    got = fused_inr_mean(coords, jitter, scale, offsets, weights, freqs, samples, seed=77, clean_first=clean_first)
    want = inr_mean_reference(coords, jitter, scale, offsets, weights, freqs, samples, seed=77, clean_first=clean_first)
    assert got.shape == want.shape == (rows, 9) and got.dtype == torch.float32
    # At F = 11 the top frequency's fp32 angle (up to ~2^10 pi) carries ~4e-4 rad of rounding, and the
    # kernel's range reduction and the GPU's sinf round it differently: 2.5e-5 apart on an H100.
    assert (got - want).abs().max().item() <= (1e-5 if freqs <= 8 else 1e-4)


def test_noise_is_drawn_in_kernel_and_clean_first_skips_it():
    weights = random_weights(2, 5, 3, 32, 1, 9)
    coords, jitter, scale, offsets = random_table(64, 2)
    clean = fused_inr_mean(coords, torch.zeros_like(jitter), scale, offsets, weights, 3, 1, seed=5)
    noisy = fused_inr_mean(coords, jitter, scale, offsets, weights, 3, 1, seed=5, clean_first=False)
    first_clean = fused_inr_mean(coords, jitter, scale, offsets, weights, 3, 1, seed=5, clean_first=True)
    other_seed = fused_inr_mean(coords, jitter, scale, offsets, weights, 3, 1, seed=6, clean_first=False)
    assert (noisy - clean).abs().max() > 1e-3
    assert (noisy - other_seed).abs().max() > 1e-3
    assert torch.equal(first_clean, clean)


def test_outputs_other_than_o_are_not_written_and_o_can_be_small():
    weights = random_weights(2, 5, 2, 16, 1, 1)  # O = 1: a bias-only head shape
    coords, jitter, scale, offsets = random_table(33, 2)
    got = fused_inr_mean(coords, jitter, scale, offsets, weights, 2, 3, seed=1)
    want = inr_mean_reference(coords, jitter, scale, offsets, weights, 2, 3, seed=1)
    assert got.shape == (33, 1) and (got - want).abs().max() <= 1e-5


def test_hidden_above_fused_limit_takes_the_per_layer_path():
    hidden = fused_inr.MAX_FUSED_HIDDEN * 2
    weights = random_weights(1, 5, 1, hidden, 1, 9)
    coords, jitter, scale, offsets = random_table(16, 1)
    got = fused_inr_mean(coords, jitter, scale, offsets, weights, 1, 2, seed=3)
    want = inr_mean_reference(coords, jitter, scale, offsets, weights, 1, 2, seed=3)
    assert (got - want).abs().max() <= 1e-5


def test_packed_weights_follow_in_place_updates():
    weights = random_weights(1, 5, 2, 16, 1, 9)
    coords, jitter, scale, offsets = random_table(40, 1)
    before = fused_inr_mean(coords, jitter, scale, offsets, weights, 2, 1)
    weights.w_out.mul_(2.0)  # bumps the tensor's version: the packed copy must be rebuilt
    after = fused_inr_mean(coords, jitter, scale, offsets, weights, 2, 1)
    want = inr_mean_reference(coords, jitter, scale, offsets, weights, 2, 1)
    assert (after - want).abs().max() <= 1e-5
    assert (after - before).abs().max() > 1e-3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"samples": 0}, "samples"),
        ({"samples": 101}, "samples"),
        ({"precision": "fp8"}, "precision"),
        ({"head_offsets": [0, 5, 30]}, "head_offsets"),
        ({"head_offsets": [0, 30, 20, 40]}, "head_offsets"),
        ({"num_freqs": 3}, "w_in"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    weights = random_weights(3, 5, 2, 16, 1, 9)
    coords, jitter, scale, _ = random_table(40, 3)
    args = {"head_offsets": [0, 10, 20, 40], "num_freqs": 2, "samples": 1} | kwargs
    with pytest.raises(ValueError, match=message):
        fused_inr_mean(coords, jitter, scale, weights=weights, **args)


@pytest.mark.parametrize("inr_kind", [None, "per-block", "band-limited"])
def test_real_coordinate_table_of_a_tiny_checkpoint(tiny_ckpt_path, tmp_path, inr_kind):
    from service.hypernet import HyperNetConfig, load_checkpoint
    from service.hypernet.generate import table_for
    from tests.factories import tiny_checkpoint

    if inr_kind is not None:  # 36 heads, the bias heads only a few rows each: many short tiles in the schedule
        inr = HyperNetConfig(hidden=16, layers=1, num_freqs=2, heads=36, head_per_block=True,
                             band_limit=0.29 if inr_kind == "band-limited" else 0.0)
        tiny_ckpt_path = tiny_checkpoint(tmp_path / "per-block.safetensors", inr=inr)
    ckpt = load_checkpoint(tiny_ckpt_path)
    table = table_for(ckpt, 24)
    weights = ckpt.hypernet.weights(table).map(lambda t: t.to(DEVICE))
    args = [t.to(DEVICE) for t in (table.coords, table.jitter, table.out_scale)]
    offsets = ckpt.hypernet.head_offsets(table)
    assert len(offsets) == ckpt.manifest.inr.heads + 1
    got = fused_inr_mean(*args, offsets, weights, ckpt.manifest.inr.num_freqs, 7, seed=9)
    with torch.no_grad():
        want = ckpt.hypernet(table, samples=7, seed=9).to(DEVICE)
    assert (got - want).abs().max() <= 1e-5


def _predict(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x})[0]


def test_cli_generate_triton_and_torch_give_the_same_predictions(tiny_ckpt_path, tmp_path, monkeypatch):
    from service.cli import main

    common = ["generate", "--arch", "resnet20", "--width", "16", "--samples", "3", "--checkpoint", str(tiny_ckpt_path)]
    assert main([*common, "--backend", "triton", "-o", str(tmp_path / "triton.onnx")]) == 0
    assert main([*common, "--backend", "torch", "-o", str(tmp_path / "torch.onnx")]) == 0
    x = np.random.default_rng(0).standard_normal((16, 1, 28, 28)).astype(np.float32)
    triton_logits, torch_logits = _predict(tmp_path / "triton.onnx", x), _predict(tmp_path / "torch.onnx", x)
    assert np.array_equal(triton_logits.argmax(1), torch_logits.argmax(1))
    np.testing.assert_allclose(triton_logits, torch_logits, rtol=1e-3, atol=1e-3)


@pytest.mark.skipif(CUDA, reason="only meaningful without CUDA")
def test_triton_without_cuda_or_interpreter_is_a_clear_error(tiny_ckpt_path, tmp_path, monkeypatch, capsys):
    from service.cli import main

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendUnavailable, match="no CUDA device"):
        resolve_backend("triton")
    out = tmp_path / "m.onnx"
    argv = ["generate", "--arch", "resnet20", "--width", "16", "--checkpoint", str(tiny_ckpt_path), "-o", str(out)]
    assert main([*argv, "--backend", "triton"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-4), ("tf32", 5e-3), ("bf16", 3e-2)])
@pytest.mark.parametrize("hidden", [128, 256, 512])  # 512: the per-layer path
def test_gpu_precisions_stay_close_to_the_fp32_reference(precision, tolerance, hidden):
    weights = random_weights(4, 5, 8, hidden, 3, 9)
    coords, jitter, scale, offsets = random_table(5000, 4)
    got = fused_inr_mean(coords, jitter, scale, offsets, weights, 8, 10, seed=2, precision=precision)
    want = inr_mean_reference(coords.double(), jitter.double(), scale.double(), offsets,
                              weights.map(torch.Tensor.double), 8, 10, seed=2)
    rel = ((got.double() - want).norm() / want.norm()).item()
    assert rel <= tolerance, rel


class _TooBigBelow:
    """Stands in for the compiled kernel: launches with BLOCK_M > ``limit`` run out of resources, and
    so do all that hold the weights across samples when ``reload_only`` (fp32 at K > 1 on sm_90)."""

    def __init__(self, kernel, limit: int, reload_only: bool = False):
        self.kernel, self.limit, self.reload_only, self.tried = kernel, limit, reload_only, []

    def __getitem__(self, grid):
        def launch(*args, **meta):
            self.tried.append(meta["BLOCK_M"] if not meta["RELOAD"] else f"{meta['BLOCK_M']} re-read")
            samples = args[-4]  # (..., samples, D, O, sample_stride): K = 1 holds no weights across samples
            if meta["BLOCK_M"] > self.limit or (self.reload_only and samples > 1 and not meta["RELOAD"]):
                raise fused_inr.triton.runtime.OutOfResources(meta["BLOCK_M"], self.limit, "shared memory")
            return self.kernel[grid](*args, **meta)

        return launch


@pytest.mark.skipif(CUDA, reason="drives the launcher with the interpreted kernel")
@pytest.mark.parametrize("limit, fused", [(32, True), (8, False)])
def test_launch_that_does_not_fit_tries_smaller_then_per_layer(monkeypatch, caplog, limit, fused):
    fake = _TooBigBelow(fused_inr._fused_inr_kernel, limit)
    monkeypatch.setattr(fused_inr, "_fused_inr_kernel", fake)
    monkeypatch.setattr(fused_launch, "candidates",
                        lambda hp, rows, interpreting: [LaunchShape(64, 4, 2), LaunchShape(32, 4, 1)])
    weights = random_weights(2, 5, 2, 16, 1, 9)
    coords, jitter, scale, offsets = random_table(100, 2)
    got = fused_inr_mean(coords, jitter, scale, offsets, weights, 2, 2, seed=4)
    want = inr_mean_reference(coords, jitter, scale, offsets, weights, 2, 2, seed=4)
    assert (got - want).abs().max() <= 1e-5
    assert fake.tried == [64, 32]
    assert ("layer by layer" in caplog.text) is not fused
    path = fused_launch.path_taken(16, "fp32", DEVICE)
    assert path == ("fused, BLOCK_M 32, 4 warps" if fused else "per-layer (fused does not fit)")


@pytest.mark.skipif(CUDA, reason="drives the launcher with the interpreted kernel")
def test_weights_re_read_per_sample_give_the_same_numbers_when_holding_them_does_not_fit(monkeypatch):
    fake = _TooBigBelow(fused_inr._fused_inr_kernel, 1024, reload_only=True)
    monkeypatch.setattr(fused_inr, "_fused_inr_kernel", fake)
    monkeypatch.setattr(fused_launch, "candidates", lambda hp, rows, interpreting: [
        LaunchShape(64, 4, 1), LaunchShape(64, 4, 1, reload=True)])
    weights = random_weights(3, 5, 4, 24, 2, 9)  # hidden 24 -> HP 32: padded too
    coords, jitter, scale, offsets = random_table(200, 3)
    got = fused_inr_mean(coords, jitter, scale, offsets, weights, 4, 5, seed=7)
    want = inr_mean_reference(coords, jitter, scale, offsets, weights, 4, 5, seed=7)
    assert (got - want).abs().max() <= 1e-5
    assert fake.tried == [64, "64 re-read"]  # held first, then re-read
    assert fused_launch.path_taken(24, "fp32", DEVICE) == "fused, BLOCK_M 64, 4 warps, weights re-read per sample"


@pytest.mark.skipif(CUDA, reason="drives the launcher with the interpreted kernel")
def test_what_fits_at_one_sample_is_remembered_apart_from_several(monkeypatch):
    # K = 1 is its own specialisation: its held shape must survive a K > 1 call that needs re-reading,
    # and the reverse, instead of one decision (or a fallback to per-layer) covering both.
    fake = _TooBigBelow(fused_inr._fused_inr_kernel, 1024, reload_only=True)
    monkeypatch.setattr(fused_inr, "_fused_inr_kernel", fake)
    monkeypatch.setattr(fused_launch, "DECIDED", {})
    held, reread = LaunchShape(64, 4, 1), LaunchShape(64, 4, 1, reload=True)
    monkeypatch.setattr(fused_launch, "candidates", lambda hp, rows, interpreting: [held, reread])
    weights = random_weights(2, 5, 4, 40, 1, 9)
    coords, jitter, scale, offsets = random_table(120, 2)
    for k in (1, 3):
        got = fused_inr_mean(coords, jitter, scale, offsets, weights, 4, k, seed=1)
        assert (got - inr_mean_reference(coords, jitter, scale, offsets, weights, 4, k, seed=1)).abs().max() <= 1e-5
    assert fake.tried == [64, 64, "64 re-read"]
    # One remembered decision per specialisation (a GPU launcher reuses them; the interpreter retries).
    assert {spec.single_sample: launch for spec, launch in fused_launch.DECIDED.items()} == {True: held, False: reread}


def test_every_launch_shape_has_a_re_reading_fallback():
    for hp in (16, 64, 128, 256):  # the GPU's candidates
        held = [c for c in fused_launch.candidates(hp, 1 << 20, interpreting=False) if not c.reload]
        reread = [c for c in fused_launch.candidates(hp, 1 << 20, interpreting=False) if c.reload]
        assert held and [c._replace(reload=False) for c in reread] == held
