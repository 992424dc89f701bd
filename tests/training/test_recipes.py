"""Recipes as data: the shipped files resolve, flags override them, bad files are refused with the
file and key named, the resolved recipe reaches the checkpoint, and a changed recipe does not resume."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

import service.cli
from service.errors import InvalidParameter
from service.training import recipes
from service.training.hypernet import Trainer
from service.training.hypernet_inputs import TrainConfig
from tests.training.test_hypernet import tiny_base, tiny_config

PATHS = {"base": "base.safetensors", "out": "run"}


@pytest.mark.parametrize("name", ["resnet20", "resnet20-last"])
def test_every_catalog_id_has_a_recipe_that_resolves(name):
    cfg = recipes.resolve(name, PATHS)
    assert cfg.recipe == name and cfg.scope == ("all" if name == "resnet20" else "last")
    assert cfg.init_from is None  # a recipe trains from the base alone: it can be rebuilt
    assert name in recipes.available()


def test_flags_override_the_recipe_and_the_rest_is_the_recipes():
    path, keys = recipes.load_recipe("resnet20")
    cfg = recipes.resolve("resnet20", {**PATHS, "steps": 300, "batch": 128})
    assert (cfg.steps, cfg.batch) == (300, 128)
    assert cfg.lr == keys["lr"] and cfg.widths_train == tuple(keys["widths_train"])
    assert cfg.hidden == keys["hidden"] and cfg.head_per_block is keys["head_per_block"]
    assert recipes.resolve(None, PATHS) == TrainConfig(**PATHS)  # no recipe: the dataclass defaults


@pytest.mark.parametrize(("text", "message"), [
    ("batchh = 12\n", "unknown key 'batchh'"),
    ('base = "x.safetensors"\n', "unknown key 'base' (paths are given on the command line)"),
    ('batch = "128"\n', "batch = '128'"),
    ("head_per_block = 1\n", "head_per_block = 1"),
    ("lr = [1]\n", "lr = [1]"),
    ("batch = 0\n", "batch = 0: must be >= 1"),
    ("widths_train = [4, 80]\n", "widths_train = [4, 80]"),
    ('scope = "middle"\n', "scope = 'middle'"),
    ("steps = \n", "not valid TOML"),
])
def test_a_bad_recipe_is_refused_naming_the_file_and_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InvalidParameter) as info:
        recipes.resolve(str(path), PATHS)
    assert message in str(info.value) and str(path) in str(info.value)


def test_an_unknown_recipe_name_lists_the_shipped_ones():
    with pytest.raises(InvalidParameter, match="unknown recipe 'resnet99': expected one of resnet20, resnet20-last"):
        recipes.resolve("resnet99", PATHS)


def test_the_cli_trains_from_a_recipe_and_ship_records_it(tmp_path, capsys):
    """`neumeta train hypernet --recipe FILE` with overrides, then `neumeta train ship`: the manifest
    holds the resolved recipe (file keys and overrides alike)."""
    from service.hypernet import load_checkpoint

    tiny_base(tmp_path / "base.safetensors")
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('scope = "last"\nhidden = 16\nlayers = 1\nfreqs = 2\nsteps = 2\n'
                      "lr = 0.0\nval_widths = [16, 64]\nval_limit = 16\n")
    run = tmp_path / "run"
    argv = ["train", "hypernet", "--recipe", str(recipe), "--base", str(tmp_path / "base.safetensors"),
            "--out", str(run), "--data", "synthetic:64", "--batch", "8", "--device", "cpu", "--no-progress"]
    assert service.cli.main(argv) == 0, capsys.readouterr().err
    saved = json.loads((run / "config.json").read_text())
    assert saved["recipe"] == str(recipe) and saved["hidden"] == 16 and saved["batch"] == 8
    out = tmp_path / "ckpt.safetensors"
    assert service.cli.main(["train", "ship", str(run), "-o", str(out), "--samples", "1", "--threads", "1",
                             "--allow-inert"]) == 0, capsys.readouterr().err
    recorded = load_checkpoint(out).manifest.training["recipe"]
    assert recorded["recipe"] == str(recipe) and recorded["hidden"] == 16 and recorded["batch"] == 8

    # Resuming with a changed recipe is refused (nothing written), unless --force.
    capsys.readouterr()
    assert service.cli.main([*argv, "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "lr: 0.0 -> 0.5" in err and "--force" in err
    assert json.loads((run / "config.json").read_text())["lr"] == 0.0
    assert service.cli.main([*argv, "--steps", "3"]) == 2  # the schedule is part of the run too
    assert service.cli.main([*argv, "--threads", "2"]) == 0  # the machine may change
    assert service.cli.main([*argv, "--lr", "0.5", "--force"]) == 0
    assert json.loads((run / "config.json").read_text())["lr"] == 0.5


def test_train_ship_without_a_run_is_a_clear_error(tmp_path, capsys):
    assert service.cli.main(["train", "ship", str(tmp_path), "-o", str(tmp_path / "x.safetensors")]) == 2
    assert "not a hypernet run directory" in capsys.readouterr().err


def test_changed_keys_ignore_the_machine_and_see_the_math(tmp_path):
    cfg = tiny_config(tmp_path)
    saved = asdict(cfg)
    assert recipes.changed_keys(saved, cfg) == {}
    moved = TrainConfig(**{**saved, "device": "cuda", "threads": 8, "out": "elsewhere", "max_minutes": 5.0})
    assert recipes.changed_keys(saved, moved) == {}
    other = TrainConfig(**{**saved, "hidden": 32, "widths_train": (8, 64)})
    assert recipes.changed_keys(saved, other).keys() == {"hidden", "widths_train"}


def test_a_fresh_fixed_start_needs_the_fixed_layers_trained(tmp_path):
    with pytest.raises(InvalidParameter, match="fixed_init"):
        tiny_config(tmp_path, fixed_init="fresh", train_fixed=False)
    trainer = Trainer(tiny_config(tmp_path, fixed_init="fresh", train_fixed=True))
    assert not trainer.fixed["fc.weight"].detach().any()  # Fixup: a zero classifier
    stem = trainer.fixed["conv1.weight"]
    assert 0.3 < float(stem.detach().std()) * (9 ** 0.5) / (2 ** 0.5) < 3  # He scale over a 3x3 fan-in
