"""``neumeta compare``: two checkpoints paired over the same test images, and the shipping verdict."""

from __future__ import annotations

import json

import pytest

from service.errors import InvalidParameter
from service.hypernet import generate, load_checkpoint
from service.training.compare import compare_checkpoints, compare_table, default_widths
from service.training.evaluate import correct_mask, paired_difference
from service.training.hypernet_inputs import synthetic_splits
from tests.factories import tiny_checkpoint


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpts")
    return (load_checkpoint(tiny_checkpoint(d / "new.safetensors", seed=1)),
            load_checkpoint(tiny_checkpoint(d / "old.safetensors", seed=2)))


def test_each_row_is_the_paired_difference_of_the_two_generated_networks(pair):
    new, old = pair
    splits = synthetic_splits(32)
    result = compare_checkpoints(new, old, splits.test, splits.info, widths=[8, 40])
    assert [r["width"] for r in result["rows"]] == [8, 40]
    for row in result["rows"]:
        hits = [correct_mask(generate(c, row["width"], backend="torch"), splits.test, splits.info)
                for c in (new, old)]
        assert {k: row[k] for k in ("diff_pt", "ci95_pt", "images")} == {
            k: paired_difference(*hits)[k] for k in ("diff_pt", "ci95_pt", "images")}
        assert row["new"] - row["old"] == pytest.approx(row["diff_pt"], abs=1e-3)
    assert (result["new"], result["old"]) == (new.short_sha, old.short_sha)
    assert json.loads(json.dumps(result)) == result  # what --out writes


def test_a_checkpoint_is_not_better_than_itself(pair):
    new, _ = pair
    splits = synthetic_splits(64)  # 16 test images, of which the first 10 are scored
    result = compare_checkpoints(new, new, splits.test, splits.info, limit=10)
    assert result["images"] == 10 and result["above_zero"] == 0 and not result["better"]
    assert all(r["diff_pt"] == 0 and r["ci95_pt"] == [0, 0] for r in result["rows"])
    assert compare_table(result).splitlines()[-1].startswith("not better: above 0 at 0 of 5 widths (needs 4)")


def test_the_verdict_needs_enough_gains_and_no_resolved_loss(pair, monkeypatch):
    from service.training import compare

    new, old = pair
    splits = synthetic_splits(16)
    diffs = iter([])

    def fake_paired(a, b):  # the rule, not the statistics, is under test here
        diff, lo, hi = next(diffs)
        return {"diff_pt": diff, "ci95_pt": [lo, hi], "images": a.numel()}

    monkeypatch.setattr(compare, "paired_difference", fake_paired)
    cases = [  # (per-width (diff, ci), better?)
        ([(0.2, -0.1, 0.5)] * 4 + [(-0.1, -0.4, 0.2)], True),   # 4 of 5 up, nothing resolved down
        ([(0.2, -0.1, 0.5)] * 3 + [(-0.1, -0.4, 0.2)] * 2, False),  # only 3 up
        ([(0.5, 0.2, 0.8)] * 4 + [(-0.5, -0.8, -0.2)], False),  # a resolved loss vetoes
    ]
    for per_width, better in cases:
        diffs = iter(per_width)
        result = compare_checkpoints(new, old, splits.test, splits.info, limit=4)
        assert result["better"] is better
    assert result["intervals_below_zero"] == [64] and "wholly below 0 at [64]" in compare_table(result)


def test_default_widths_are_the_narrowest_and_the_allowed_key_widths(tmp_path):
    ckpt = load_checkpoint(tiny_checkpoint(tmp_path / "l.safetensors", arch="resnet20-last", scope="last",
                                           widths_allowed={"min": 20, "max": 50}, default_width=32))
    assert default_widths(ckpt) == [20, 32, 48]


def test_checkpoints_that_make_different_networks_or_widths_out_of_range_are_refused(tmp_path, pair):
    new, _ = pair
    last = load_checkpoint(tiny_checkpoint(tmp_path / "l.safetensors", arch="resnet20-last", scope="last"))
    splits = synthetic_splits(8)
    with pytest.raises(InvalidParameter, match="differ in scope"):
        compare_checkpoints(new, last, splits.test, splits.info)
    with pytest.raises(InvalidParameter, match=r"width\(s\) \[65\] outside"):
        compare_checkpoints(new, new, splits.test, splits.info, widths=[8, 65])
    with pytest.raises(InvalidParameter, match="--min-above must be 1-2"):
        compare_checkpoints(new, new, splits.test, splits.info, widths=[8, 16], min_above=3)


def test_cli_compares_on_real_data_and_writes_json(tmp_path, capsys):
    import service.cli
    from service.training.data import FMNIST_DEFAULT_ROOT

    if not (FMNIST_DEFAULT_ROOT / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    new = tiny_checkpoint(tmp_path / "new.safetensors", seed=1)
    out = tmp_path / "cmp" / "compare.json"
    code = service.cli.main(["compare", str(new), str(new), "--widths", "8", "64", "--limit", "50",
                             "--threads", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "| new minus old, pt (95% interval) |" in printed
    assert "| VAL (decides) |" in printed and "| TEST (reports only) |" in printed
    result = json.loads(out.read_text())
    assert result["decided_on"] == "val" and result["better"] is result["val"]["better"] is False
    for split in ("val", "test"):
        assert result[split]["images"] == 50 and [r["width"] for r in result[split]["rows"]] == [8, 64]


def test_cli_refuses_a_bad_limit_with_the_documented_code(tmp_path, capsys):
    import service.cli

    ckpt = tiny_checkpoint(tmp_path / "c.safetensors")
    code = service.cli.main(["compare", str(ckpt), str(ckpt), "--limit", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "invalid_parameter" in err and "--limit" in err and "Traceback" not in err
