"""Two CPU processes under torchrun (gloo) train a few steps and end with identical INR weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from service.training.distributed import weights_digest
from tests.training.test_hypernet import tiny_base

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_ranks_hold_identical_hypernetwork_weights(tmp_path):
    base = tmp_path / "base.safetensors"
    tiny_base(base)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "service.training.hypernet", "--base", str(base), "--out", str(out), "--data", "synthetic:64",
           "--steps", "4", "--batch", "4", "--hidden", "8", "--layers", "1", "--freqs", "2",
           "--val-widths", "16", "--val-limit", "8", "--val-every", "1000", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    digests = [(out / f"rank{r}.sha256").read_text().strip() for r in (0, 1)]
    assert digests[0] == digests[1]
    # The weights did move, and rank 0's checkpoint holds exactly them.
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["step"] == 4
    from service.hypernet import HyperNet, HyperNetConfig

    torch.manual_seed(0)
    initial = HyperNet(HyperNetConfig(hidden=8, layers=1, num_freqs=2))
    assert weights_digest(initial) != digests[0]
    initial.load_state_dict(state["hn"])
    assert weights_digest(initial) == digests[0]
    assert "torchrun --nproc_per_node 2" in (out / "command.txt").read_text()
