"""Training recipes as data: one TOML file per catalog id in ``service/training/recipes/``.

A recipe holds the keys of ``TrainConfig`` that make a run what it is (INR shape, objective,
schedule, widths); the command line names the base and the run directory and may override any
key. Precedence: ``TrainConfig``'s defaults < the recipe < flags given on the command line. The
resolved configuration is written to the run's ``config.json``, and ``neumeta train ship`` copies
it into the checkpoint manifest (``training.recipe``), so a shipped file says how to rebuild it.

A recipe is checked before anything is read or trained: an unknown key, a value of the wrong
type or an impossible value is refused with the file and the key in the message.
"""

from __future__ import annotations

import json
import tomllib
import typing
import warnings
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, ValidationError, create_model

from service.errors import InvalidParameter
from service.training.hypernet_inputs import TrainConfig

RECIPE_DIR = Path(__file__).with_name("recipes")
# Where a run reads and writes, not how it trains: given on the command line, never in a recipe.
RUN_PATHS = ("base", "out", "recipe")
# What a resumed run may change without --force: the machine and the bookkeeping, not the math.
RUNTIME_KEYS = (*RUN_PATHS, "data", "device", "precision", "threads", "progress", "max_minutes",
                "ckpt_every", "ckpt_min_seconds", "val_every", "val_limit", "inr_path")

_hints = typing.get_type_hints(TrainConfig)
# Strict types: a TOML string where a number belongs is refused, not coerced (ints still pass as floats).
_RecipeKeys = create_model(  # type: ignore[call-overload]
    "RecipeKeys", __config__=ConfigDict(extra="forbid", strict=True),
    **{f.name: (_hints[f.name] | None, None) for f in fields(TrainConfig) if f.name not in RUN_PATHS},
)


def available() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.toml"))


def recipe_file(name: str) -> Path:
    """A shipped recipe by catalog id (``resnet20``), or a path to a ``.toml`` file."""
    path = Path(name) if name.endswith(".toml") else RECIPE_DIR / f"{name}.toml"
    if not path.is_file():
        raise InvalidParameter(f"unknown recipe {name!r}: expected one of {', '.join(available())} "
                               f"(files in {RECIPE_DIR}) or a path to a .toml file")
    return path


def load_recipe(name: str) -> tuple[Path, dict[str, Any]]:
    """(file, its keys), type-checked against ``TrainConfig``."""
    path = recipe_file(name)
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidParameter(f"recipe {path}: not valid TOML: {exc}") from None
    if "widths_train" in raw and isinstance(raw["widths_train"], list):
        raw["widths_train"] = tuple(raw["widths_train"])  # TOML has arrays; the field is a pair
    try:
        _RecipeKeys.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            hint = " (paths are given on the command line)" if key in ("base", "out") else ""
            raise InvalidParameter(f"recipe {path}: unknown key {key!r}{hint}") from None
        raise InvalidParameter(f"recipe {path}: {key} = {err.get('input')!r}: {err['msg']}") from None
    return path, raw


def resolve(recipe: str | None, overrides: dict[str, Any]) -> TrainConfig:
    """``TrainConfig`` from a recipe (or none: the dataclass defaults) and command-line overrides."""
    values: dict[str, Any] = {}
    path = None
    if recipe:
        path, values = load_recipe(recipe)
        values["recipe"] = path.stem if path.parent == RECIPE_DIR else str(path)
    values.update(overrides)
    try:
        return TrainConfig(**values)
    except InvalidParameter as exc:
        given = [k for k in values if k in overrides]
        where = f"recipe {path} (flags given: {', '.join(given) or 'none'})" if path else "flags"
        raise InvalidParameter(f"{where}: {exc}") from None


def changed_keys(saved: dict[str, Any], cfg: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Keys, outside ``RUNTIME_KEYS``, whose value in a run's saved ``config.json`` differs from
    ``cfg``'s: {key: (saved, now)}. A resume with any of them would not continue the same run."""
    now = asdict(cfg)
    diffs = {}
    for key, value in now.items():
        if key in RUNTIME_KEYS or key not in saved:
            continue
        old = saved[key]
        if isinstance(value, tuple):
            old = tuple(old) if isinstance(old, list) else old
        if old != value:
            diffs[key] = (old, value)
    return diffs


def check_resumable(out: Path, cfg: TrainConfig, force: bool) -> None:
    """Refuse to resume ``out`` with a configuration whose math differs from the one it started with
    (``RUNTIME_KEYS`` may change: the machine, not the run), unless ``force``."""
    saved = out / "config.json"
    if not (out / "last.pt").is_file() or not saved.is_file():
        return
    diffs = changed_keys(json.loads(saved.read_text()), cfg)
    if diffs and not force:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in diffs.items())
        raise InvalidParameter(f"{out} was started with another recipe ({listed}); resuming would not continue "
                               f"the same run: use a new --out, or pass --force")
    if diffs:
        warnings.warn(f"resuming {out} with changed keys (--force): {', '.join(diffs)}", stacklevel=2)
