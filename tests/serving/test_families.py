"""service/serving/families.py on small hand-made tables: the tie rules the shipped tables may never exercise,
and the frontier plot. (tests/api/test_family.py checks the choices on the real service.)"""

from __future__ import annotations

import pytest

from service.errors import CheckpointError, NoModelFits, UnknownArch
from service.serving.catalog import Catalog
from service.serving.families import candidates, choose, describe_families, frontier
from service.training.frontier_plot import main as plot_main
from tests.factories import tiny_checkpoint


def entry(family: str, rows: dict[int, tuple[int, int, float | None]], dtypes=("float32",)) -> dict:
    """A /archs entry whose widths have (bytes, params, accuracy); accuracy None: not measured."""
    return {"family": family, "scope": "all",
            "bytes": {d: {str(w): b for w, (b, _, _) in rows.items()} for d in dtypes},
            "params": {str(w): p for w, (_, p, _) in rows.items()},
            "evaluation": {"split": "test", "per_width": {str(w): {"accuracy": a} for w, (_, _, a) in rows.items()
                                                          if a is not None}}}


ENTRIES = {
    "small": entry("net", {1: (100, 10, 90.0), 2: (200, 20, 91.0), 3: (300, 30, 91.0), 4: (350, 35, None)}),
    "big": entry("net", {1: (250, 5, 91.0), 2: (400, 40, 93.0)}),
    "other": entry("else", {1: (50, 5, 99.0)}),
}


def pick(**kwargs):
    c = choose(candidates(ENTRIES, "net", "float32"), "net", "float32", **kwargs)
    return c.arch, c.width


def test_a_budget_gets_the_most_accurate_and_a_tie_goes_to_fewer_bytes():
    assert pick(max_bytes=399) == ("small", 2)  # 91.0 three times: 200 < 250 < 300 bytes
    assert pick(max_bytes=400) == ("big", 2)
    assert pick(max_params=30) == ("small", 2)
    assert pick(max_params=9) == ("big", 1)  # fewest parameters is not fewest bytes
    assert pick() == ("big", 2)  # no budget: the most accurate


def test_a_floor_gets_the_smallest_file_meeting_it_within_any_budget():
    assert pick(min_accuracy=91) == ("small", 2)
    assert pick(min_accuracy=91, max_params=15) == ("big", 1)
    assert pick(min_accuracy=0) == ("small", 1)


def test_unmeasured_widths_and_other_families_are_never_chosen():
    assert ("small", 4) not in {(c.arch, c.width) for c in candidates(ENTRIES, "net", "float32")}
    assert pick(max_bytes=360) == ("small", 2)
    with pytest.raises(UnknownArch, match="known: else, net"):
        candidates(ENTRIES, "vgg", "float32")
    assert candidates(ENTRIES, "net", "int8") == []  # no arch of the family serves it
    with pytest.raises(NoModelFits, match="has a measured accuracy and can be served as int8"):
        choose([], "net", "int8")


def test_nothing_fits_names_the_closest_model():
    with pytest.raises(NoModelFits, match="smallest model, small width 1 "):
        pick(max_bytes=99)
    with pytest.raises(NoModelFits, match="most accurate model, big width 2 "):
        pick(min_accuracy=95)
    with pytest.raises(NoModelFits, match="meeting the accuracy floor, big width 2 "):
        pick(min_accuracy=92, max_bytes=300)


def test_the_frontier_keeps_each_model_more_accurate_than_every_smaller_one():
    points = [(c.arch, c.width) for c in frontier(candidates(ENTRIES, "net", "float32"))]
    assert points == [("small", 1), ("small", 2), ("big", 2)]
    section = describe_families(ENTRIES)
    assert section["net"]["archs"] == ["big", "small"] and set(section) == {"net", "else"}
    assert [p["bytes"] for p in section["net"]["frontier"]["float32"]] == [100, 200, 400]


def test_the_plot_is_written(tmp_path, capsys):
    assert plot_main(["-o", str(tmp_path)]) == 0  # the shipped checkpoints
    assert (tmp_path / "frontier-resnet20.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert '"float32": ' in capsys.readouterr().out


def test_no_checkpoint_may_take_the_families_key(tmp_path):
    with pytest.raises(CheckpointError, match="reserved"):
        Catalog.from_paths([tiny_checkpoint(tmp_path / "f.safetensors", arch="families")])
