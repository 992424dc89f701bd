"""The image's Python layer, built the way the Dockerfile builds it: copy the build context the
wheels-cpu stage copies, run deploy/docker/wheels.sh build + install into a fresh virtualenv,
then import the app from outside the source tree.

torch comes from pip's own configuration here (a find-links dir holding the 2.13.0+cpu wheel):
the dev machines cannot reach download.pytorch.org, which is the Dockerfile's TORCH_INDEX_URL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.loaders import ROOT, dockerfile_stages

# A hang guard, not a speed target: on a loaded 2-core CI machine building and installing the
# wheels took over 10 minutes (a quiet one: about 2).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def copy_build_context(dest: Path) -> None:
    """Replay the wheels-cpu stage's COPY lines (WORKDIR /src) into dest."""
    for copy in dockerfile_stages()["wheels-cpu"].all("COPY"):
        *sources, target = copy.split()
        into = dest / target.removeprefix("./").rstrip("/")
        for source in sources:
            src = ROOT / source
            if src.is_dir():
                shutil.copytree(src, into, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                folder = into if target.endswith("/") or len(sources) > 1 else into.parent
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, folder / src.name if folder == into else into)


def run(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    out = subprocess.run(argv, env=env, cwd=cwd, check=False, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, f"{' '.join(argv)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def test_locked_wheels_install_offline_and_the_app_imports(tmp_path):
    src, wheels, venv = tmp_path / "src", tmp_path / "wheels", tmp_path / "venv"
    copy_build_context(src)
    assert (src / "deploy" / "docker" / "wheels.sh").is_file() and (src / "pyproject.toml").is_file()
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}:{env['PATH']}", TORCH_INDEX_URL="", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PYTHONDONTWRITEBYTECODE="1")
    script = src / "deploy" / "docker" / "wheels.sh"
    run(["sh", str(script), "build", "cpu", str(wheels), str(src)], env, tmp_path)
    run(["sh", str(script), "install", "cpu", str(wheels)], env, tmp_path)  # --no-index + pip check

    python = str(venv / "bin" / "python")
    probe = ("import torch, service, service.api.app as a; from service.settings import SHIPPED_CHECKPOINTS; "
             "print(torch.__version__); print(service.__file__); print(callable(a.create_app)); "
             "print(sorted(p.name for p in SHIPPED_CHECKPOINTS.glob('*.safetensors')))")
    torch_version, module_file, factory_ok, shipped = run([python, "-c", probe], env, tmp_path).splitlines()
    assert torch_version == "2.13.0+cpu"
    assert Path(module_file).is_relative_to(venv)  # the installed wheel, not the source tree
    assert factory_ok == "True"
    # checkpoints are baked in at the package path
    assert shipped == str(sorted(p.name for p in (ROOT / "service" / "checkpoints").glob("*.safetensors")))
    run([str(venv / "bin" / "neumeta"), "--help"], env, tmp_path)  # the image's console script
    # The [train] extra (training, eval, plots) stays out of the image.
    extra = run([python, "-c", "import importlib.util as u; "
                 "print([m for m in ('matplotlib', 'fast_tsp', 'tqdm') if u.find_spec(m)])"], env, tmp_path)
    assert extra.strip() == "[]"
