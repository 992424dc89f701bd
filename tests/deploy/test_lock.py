"""deploy/requirements-*.lock: every runtime dependency pinned, within pyproject's ranges, with
the right torch build per image, and the CUDA wheel tag matching the CUDA base image."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement

from tests.deploy.loaders import ROOT, dockerfile_stages


def pins(target: str) -> dict[str, str]:
    lines = (ROOT / "deploy" / f"requirements-{target}.lock").read_text().splitlines()
    pairs = (line.split("==") for line in lines if line and not line.startswith("#"))
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pairs}


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]]


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_every_runtime_dependency_is_pinned_within_its_range(target):
    pinned = pins(target)
    for req in runtime_requirements():
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if target == "cuda" and name == "onnxruntime":
            name = "onnxruntime-gpu"  # same module, CUDA build
        assert name in pinned, f"{req.name} missing from the {target} lock: run deploy/docker/lock.py"
        assert req.specifier.contains(pinned[name], prereleases=True), (req, pinned[name])


def test_images_differ_only_in_their_gpu_builds():
    cpu, cuda = pins("cpu"), pins("cuda")
    assert cpu["torch"].endswith("+cpu") and cuda["torch"].split("+")[0] == cpu["torch"].split("+")[0]
    assert cuda["onnxruntime-gpu"] == cpu["onnxruntime"] and "onnxruntime" not in cuda
    same = set(cpu) - {"torch", "onnxruntime"}
    assert {k: cpu[k] for k in same} == {k: cuda[k] for k in same}


def test_generator_output_and_cuda_tag_agree_with_the_locks_and_dockerfile():
    import importlib.util

    spec = importlib.util.spec_from_file_location("lock", ROOT / "deploy" / "docker" / "lock.py")
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    rendered = lock.render()
    assert set(rendered) == {"deploy/requirements-cpu.lock", "deploy/requirements-cuda.lock"}
    cuda_tag = pins("cuda")["torch"].split("+")[1]
    assert cuda_tag == lock.CUDA_TAG
    cuda_stage = dockerfile_stages()["cuda"]
    major, minor = re.search(r"nvidia/cuda:(\d+)\.(\d+)", cuda_stage.base).groups()
    assert lock.CUDA_TAG == f"cu{major}{minor}"
    build = " ".join(dockerfile_stages()["wheels-cuda"].all("ARG"))
    assert f"/whl/{lock.CUDA_TAG}" in build
    # the rendering from this environment pins the same packages (versions may drift with the venv)
    for path, text in rendered.items():
        names = {line.split("==")[0] for line in text.splitlines() if line and not line.startswith("#")}
        target = "cpu" if "cpu" in path else "cuda"
        assert names == set(pins(target)), names ^ set(pins(target))
