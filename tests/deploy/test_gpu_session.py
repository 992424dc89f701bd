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
def test_the_session_trains_ships_and_compares_into_out(tmp_path):
    status, log = run_session(tmp_path, 480, DEVICE="cpu", THREADS="1", TRAIN_MINUTES="0.05", VAL_EVERY="2",
                              VAL_LIMIT="300", COMPARE_LIMIT="100", GPU_TESTS="0", BENCH="0")
    assert status == 0 and "train exit 0" in log, log
    out = tmp_path / "out"
    with tarfile.open(out / "logs.tgz") as logs:
        logs.extractall(tmp_path / "unpacked", filter="data")
    shipped_before = load_checkpoint(SHIPPED).short_sha
    for variant, hidden, embedded in (("h128", 128, False), ("h160", 160, False), ("emb", 128, True)):
        shipped = load_checkpoint(out / f"resnet20-{variant}.safetensors")
        config = shipped.hypernet.config
        assert shipped.manifest.arch == "resnet20" and (config.hidden, config.channel_embeddings) == (hidden, embedded)
        assert shipped.short_sha != shipped_before
        assert shipped.path.stat().st_size < 16e6  # the most the device tool brings back in one file
        result = json.loads((tmp_path / f"unpacked/logs/compare-{variant}.json").read_text())
        assert result["decided_on"] == "val"
        for split in ("val", "test"):
            assert result[split]["new"] == shipped.short_sha and result[split]["images"] == 100
            assert [r["width"] for r in result[split]["rows"]] == [8, 16, 32, 48, 64]
        assert (tmp_path / f"unpacked/logs/history-{variant}.jsonl").read_text().count('"step"') >= 1
    # The device tool brings back at most 8 files, no folder among them.
    assert sorted(p.name for p in out.iterdir()) == [
        "logs.tgz", "resnet20-emb.safetensors", "resnet20-h128.safetensors", "resnet20-h160.safetensors",
        "session.log"]


def test_an_unknown_variant_is_refused_before_anything_runs(tmp_path):
    status, log = run_session(tmp_path, 60, VARIANTS="h128 h1024")
    assert status == 2 and "unknown variant 'h1024'" in log
    assert not list((tmp_path / "runs").iterdir())


def test_the_session_says_how_to_get_missing_data(tmp_path):
    status, log = run_session(tmp_path, 60, DATA=str(tmp_path / "nowhere"))
    assert status == 2 and "run deploy/gpu/prepare.sh" in log
    assert not list((tmp_path / "runs").iterdir())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["logs.tgz", "session.log"]
