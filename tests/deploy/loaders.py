"""Readers shared by the deployment tests: the files under test, and the names the running code
really defines (Settings fields, Prometheus metrics)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_objects() -> list[tuple[Path, dict[str, Any]]]:
    """Every Kubernetes object under deploy/k8s (kustomization files are not objects)."""
    found = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name != "kustomization.yaml":
            found.extend((path, doc) for doc in load_yaml_docs(path))
    return found


def objects_of(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_objects() if doc["kind"] == kind]


def by_name(kind: str, name: str) -> dict[str, Any]:
    matches = [doc for doc in objects_of(kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} named {name}, found {len(matches)}"
    return matches[0]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def settings_env_names() -> set[str]:
    from service.settings import Settings

    return {f"NEUMETA_{name.upper()}" for name in Settings.model_fields}


def exposed_metric_names() -> set[str]:
    """Sample names a scrape of a fresh Metrics() registry can show (counters gain _total, ...)."""
    from service.metrics import Metrics

    names = set()
    for family in Metrics().registry.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        else:
            names.add(family.name)
    return names


class Stage:
    """One ``FROM ... AS name`` block of the Dockerfile: its base image and its instructions."""

    def __init__(self, base: str, name: str):
        self.base, self.name = base, name
        self.instructions: list[tuple[str, str]] = []  # (KEYWORD, rest of the line, continuations joined)

    def all(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]


def dockerfile_stages() -> dict[str, Stage]:
    text = (ROOT / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", logical, flags=re.MULTILINE))  # global ARG defaults for FROM
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical.splitlines():
        if not line.strip():
            continue
        keyword, _, rest = line.strip().partition(" ")
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+) AS (\S+)", rest.strip())
            assert match, f"every stage is named: {line}"
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], match.group(1))
            current = stages[match.group(2)] = Stage(base, match.group(2))
        elif current is not None:
            current.instructions.append((keyword, " ".join(rest.split())))
    return stages


def redis_conf(text: str) -> dict[str, str]:
    pairs = (line.split(None, 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {key: value.strip() for key, value in pairs}


def to_bytes(size: str) -> int:
    """'1Gi' (Kubernetes) or '768mb' (Redis: mb = 1024*1024) -> bytes."""
    number, unit = re.fullmatch(r"(\d+)\s*([A-Za-z]*)", size).groups()
    scale = {"": 1, "ki": 2**10, "mi": 2**20, "gi": 2**30, "kb": 2**10, "mb": 2**20, "gb": 2**30}
    return int(number) * scale[unit.lower()]



