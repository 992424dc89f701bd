"""deploy/gpu/session.sh, the one-call GPU session, run end to end on the CPU with tiny budgets: a
lent GPU's minutes are too few to spend finding a broken script there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from service.hypernet import load_checkpoint
from tests.deploy.loaders import ROOT

FMNIST = Path("/usr/share/datasets/fashion-mnist")
SHIPPED = ROOT / "service/checkpoints/resnet20-fmnist-all.safetensors"
needs_fmnist = pytest.mark.skipif(not (FMNIST / "t10k-labels-idx1-ubyte.gz").exists(),
                                  reason="needs the dataset-fashion-mnist package (.ci/run installs it)")


def run_session(tmp_path: Path, timeout: float, **knobs: str) -> tuple[int, str]:
    """The script's exit status and its session.log, with $OUT and the runs folder under tmp_path."""
    env = {**os.environ, "OUT": str(tmp_path / "out"), "RUNS": str(tmp_path / "runs"), "DATA": str(FMNIST),
           "PY": sys.executable, **knobs}
    done = subprocess.run(["bash", str(ROOT / "deploy/gpu/session.sh")], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    return done.returncode, (tmp_path / "out/session.log").read_text()


@pytest.mark.slow
@needs_fmnist
def test_the_session_checks_trains_ships_and_reports_into_out(tmp_path):
    status, log = run_session(tmp_path, 600, DEVICE="cpu", THREADS="1", BUDGET_S="300", RESERVE_S="120",
                              BATCH="16", BENCH_STEPS="2", MAX_STEPS="6", VAL_EVERY="3", VAL_LIMIT="200",
                              SNAPSHOT_S="2", EVAL_SUBSET="100", COMPARE_LIMIT="100", KERNEL_BENCH="0",
                              KERNEL_TESTS="0", SHIP_FLAGS="--allow-inert")
    assert status == 0, log
    assert "batched path matches" in log and "training 6 steps" in log and "train exit 0" in log, log
    # At most 8 files come back, none of them a folder.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "resnet20-fresh.safetensors", "results.tgz", "run.tgz", "session.log"]
    shipped = load_checkpoint(tmp_path / "out/resnet20-fresh.safetensors")
    recipe = shipped.manifest.training["recipe"]
    assert shipped.manifest.arch == "resnet20" and recipe["recipe"] == "resnet20" and recipe["init_from"] is None
    assert recipe["steps"] == 6 and recipe["batch"] == 16
    assert shipped.path.stat().st_size < 16e6  # the most the device tool brings back in one file
    with tarfile.open(tmp_path / "out/results.tgz") as results:
        results.extractall(tmp_path / "unpacked", filter="data")
    res = tmp_path / "unpacked/results"
    assert json.loads((res / "selfcheck.json").read_text())["ok"]
    bench = json.loads((res / "bench-train.json").read_text())
    assert [(r["width"], r["batch"]) for r in bench] == [(8, 16), (64, 16)] and all(r["ops_per_step"] for r in bench)
    compared = json.loads((res / "compare.json").read_text())
    assert compared["decided_on"] == "val" and compared["val"]["new"] == shipped.short_sha
    assert (res / "eval").is_dir() and any((res / "eval").iterdir())
    # The run's snapshot alone ships: what a kill at the time limit would have left.
    with tarfile.open(tmp_path / "out/run.tgz") as run:
        names = run.getnames()
        run.extractall(tmp_path / "snapshot", filter="data")
    assert not any(n.endswith("last.pt") for n in names)
    from service.cli import main

    assert main(["train", "ship", str(tmp_path / "snapshot/gpu-resnet20"), "-o", str(tmp_path / "again.safetensors"),
                 "--base", str(tmp_path / "runs/teacher-last-w64.safetensors"), "--samples", "1",
                 "--threads", "1", "--allow-inert"]) == 0


def test_an_unknown_recipe_is_refused_before_anything_runs(tmp_path):
    status, log = run_session(tmp_path, 60, RECIPE="resnet99")
    assert status == 2 and "unknown recipe 'resnet99'" in log
    assert not list((tmp_path / "runs").iterdir())


def test_the_session_says_how_to_get_missing_data(tmp_path):
    status, log = run_session(tmp_path, 60, DATA=str(tmp_path / "nowhere"))
    assert status == 2 and "run deploy/gpu/prepare.sh" in log
    assert not list((tmp_path / "runs").iterdir())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["session.log"]
