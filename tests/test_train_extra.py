"""The serving install (``pip install neumeta-serve``, the image, ``make serve``) has no [train] extra.

Each test runs a real ``neumeta`` process whose ``sitecustomize`` (first on PYTHONPATH, so it also
applies to any worker uvicorn spawns) makes importing a package of the extra fail, as it does where
the package is not installed. torch itself tries tqdm and carries on without it, so "not in
sys.modules" could not tell our imports from torch's; a failing import does.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from tests.fixtures.redis import free_port
from tests.waiting import wait_until_answering

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()


TRAIN_EXTRA = [_name(r) for r in PROJECT["optional-dependencies"]["train"]]
TRAIN_MODULES = tuple(name.replace("-", "_") for name in TRAIN_EXTRA)  # fast-tsp installs fast_tsp


def without_train_extra(tmp_path: Path) -> dict[str, str]:
    """An environment for a ``neumeta`` process in which the [train] extra's packages cannot be imported."""
    site = tmp_path / "no-train-extra"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        f"for name in {TRAIN_MODULES!r}:\n"
        "    sys.modules[name] = None  # `import name` now raises ModuleNotFoundError\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUMETA_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    return env


def test_the_train_packages_are_an_extra_not_dependencies():
    assert sorted(TRAIN_EXTRA) == ["fast-tsp", "matplotlib", "tqdm"]
    assert not {_name(r) for r in PROJECT["dependencies"]} & set(TRAIN_EXTRA)


@pytest.mark.slow
def test_serve_generates_a_model_without_the_train_extra(tiny_ckpt_path, tmp_path):
    port, log_path = free_port(), tmp_path / "serve.log"
    with log_path.open("w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--checkpoint", str(tiny_ckpt_path)],
            cwd=tmp_path, env=without_train_extra(tmp_path), stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            wait_until_answering(proc, f"http://127.0.0.1:{port}/readyz", log_path)
            for dtype in ("float32", "int8"):  # int8 also runs the calibration path
                r = httpx.get(f"http://127.0.0.1:{port}/model", params={"arch": "resnet20", "width": 8, "dtype": dtype},
                              timeout=120)
                assert r.status_code == 200, r.text
                assert r.content[:2] == b"\x08\x08"  # an ONNX ModelProto: field 1 (ir_version) = 8
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    assert "ModuleNotFoundError" not in log_path.read_text()


def test_training_without_the_extra_says_which_extra_to_install(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "service.cli", "train", "base", "--out", str(tmp_path / "run"), "--epochs", "1"],
        cwd=tmp_path, env=without_train_extra(tmp_path), capture_output=True, text=True, timeout=120, check=False,
    )
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("error: internal: ") and len(r.stderr.splitlines()) == 1, r.stderr
    assert "is not installed" in r.stderr and "pip install 'neumeta-serve[train]'" in r.stderr
