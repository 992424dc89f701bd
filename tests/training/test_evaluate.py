"""Baselines (slicing, L1 pruning) and the evaluation table, on tiny random models and synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from service.archs import ResNet20, fold_batchnorm, folded_model, tensor_specs
from service.hypernet import generate, load_checkpoint
from service.training.baselines import l1_keep_indices, l1_pruned_state, sliced_state
from service.training.evaluate import (
    accuracy,
    carry_baselines,
    dips_below_neighbours,
    evaluate,
    individual_width,
    paired_difference,
    table,
    write_outputs,
)
from service.training.hypernet_inputs import synthetic_splits
from service.training.ship import evaluation_summary
from tests.factories import tiny_checkpoint


@pytest.fixture(scope="module")
def base() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return fold_batchnorm(ResNet20(1, 10).eval())


@pytest.mark.parametrize("scope", ["all", "last"])
@pytest.mark.parametrize("width", [8, 16, 33, 64])
def test_baselines_have_the_shapes_of_the_requested_width(base, scope, width):
    if scope == "last" and width < 16:
        width = 16
    want = {s.name: s.shape for s in tensor_specs(scope, width, 1, 10)}
    for state in (sliced_state(base, scope, width, 1, 10), l1_pruned_state(base, scope, width, 1, 10)):
        assert list(state) == list(want)
        assert {k: tuple(v.shape) for k, v in state.items()} == want
        logits = folded_model(state, 1, 10)(torch.randn(2, 1, 28, 28))
        assert logits.shape == (2, 10)


def test_sliced_and_pruned_models_at_full_width_equal_the_full_model(base):
    x = torch.randn(4, 1, 28, 28)
    full = folded_model(base, 1, 10)(x)
    for scope in ("all", "last"):
        sliced = sliced_state(base, scope, 64, 1, 10)
        assert all(torch.equal(sliced[k], base[k]) for k in base)
        assert torch.allclose(folded_model(sliced, 1, 10)(x), full)
        pruned = folded_model(l1_pruned_state(base, scope, 64, 1, 10), 1, 10)(x)
        assert torch.allclose(pruned, full, atol=1e-6)


def test_slicing_keeps_the_first_channels_and_pruning_the_largest(base):
    state = {k: v.clone() for k, v in base.items()}
    w = state["layer3.2.conv1.weight"]
    w[:] = 0.01
    w[[5, 40, 63]] = 1.0  # three dominant filters
    pruned = l1_pruned_state(state, "last", 3, 1, 10)
    assert torch.equal(l1_keep_indices(w, 3), torch.tensor([5, 40, 63]))
    assert torch.equal(pruned["layer3.2.conv1.weight"], w[[5, 40, 63]])
    assert torch.equal(pruned["layer3.2.conv2.weight"], state["layer3.2.conv2.weight"][:, [5, 40, 63]])
    sliced = sliced_state(state, "last", 3, 1, 10)
    assert torch.equal(sliced["layer3.2.conv1.weight"], w[:3])


def test_individual_width_reads_the_layout(base):
    assert individual_width(base, "all") == 64
    narrow = sliced_state(base, "all", 16, 1, 10)
    assert individual_width(narrow, "all") == 16
    assert individual_width(narrow, "last") is None
    assert individual_width(sliced_state(base, "last", 24, 1, 10), "last") == 24


def test_accuracy_counts_correct_predictions(base):
    splits = synthetic_splits(32)
    model = folded_model(base, 1, 10)
    from service.training.data import normalize

    predicted = model(normalize(splits.test.images, splits.info)).argmax(1)
    expected = 100.0 * float((predicted == splits.test.labels).float().mean())
    assert accuracy(base, splits.test, splits.info) == pytest.approx(expected)
    relabelled = type(splits.test)(splits.test.images, predicted)
    assert accuracy(base, relabelled, splits.info) == 100.0


def test_paired_difference_counts_the_images_only_one_model_gets_right():
    a = torch.tensor([1, 1, 0, 0, 1, 1, 0, 1], dtype=torch.bool)
    b = torch.tensor([1, 0, 1, 0, 0, 1, 0, 1], dtype=torch.bool)
    paired = paired_difference(a, b)  # per-image differences: 0 +1 -1 0 +1 0 0 0
    d = torch.tensor([0, 1, -1, 0, 1, 0, 0, 0], dtype=torch.float64)
    half = 1.96 * 100 * float(d.std()) / 8 ** 0.5
    assert paired["diff_pt"] == pytest.approx(12.5)
    assert paired["ci95_pt"] == pytest.approx([12.5 - half, 12.5 + half], abs=1e-3)
    assert (paired["only_generated_right"], paired["only_other_right"], paired["images"]) == (2, 1, 8)
    same = paired_difference(a, a)  # identical predictions: no difference and no doubt about it
    assert same["diff_pt"] == 0 and same["ci95_pt"] == [0, 0]


def test_evaluate_writes_table_json_and_plots(tmp_path, base):
    ckpt = load_checkpoint(tiny_checkpoint(tmp_path / "c.safetensors", arch="resnet20-last", scope="last",
                                           widths_allowed={"min": 60, "max": 64}))
    splits = synthetic_splits(64)
    indiv = tmp_path / "individual-w62.safetensors"
    from safetensors.torch import save_file

    save_file(sliced_state(base, "last", 62, 1, 10), str(indiv))
    result = evaluate(ckpt, splits, base, individual=[indiv, tmp_path / "individual-w16", tmp_path], subset=8,
                      key_widths=(16, 60, 64), progress=False)
    methods = {(r["method"], r["width"]) for r in result["rows"]}
    for w in range(60, 65):
        assert {("neumeta", w), ("slicing", w), ("l1_prune", w)} <= methods
    assert ("individual", 62) in methods and ("base_full", 64) in methods
    # a run directory without its folded model yet (still training) counts as not trained
    assert result["individual_not_trained"] == [str(tmp_path / "individual-w16"), str(tmp_path)]
    assert result["key_widths"] == [60, 64]
    assert set(result["dips_over_1pt"]) == {"K=1"}
    # Paired comparisons: generated (default K) minus each reference network, over the same test images.
    k = result["default_samples"]
    rows = {(r["method"], r["width"], r.get("samples")): r for r in result["rows"]}
    base_row, indiv_row = rows[("base_full", 64, None)], rows[("individual", 62, None)]
    assert base_row["neumeta_minus_this"]["diff_pt"] == pytest.approx(
        rows[("neumeta", 64, k)]["acc_test"] - base_row["acc_test"], abs=1e-3)
    generated_62 = accuracy(generate(ckpt, 62, samples=k, backend="torch"), splits.test, splits.info)
    paired = indiv_row["neumeta_minus_this"]
    assert paired["diff_pt"] == pytest.approx(generated_62 - indiv_row["acc_test"], abs=1e-3)
    assert paired["ci95_pt"][0] <= paired["diff_pt"] <= paired["ci95_pt"][1] and paired["images"] == len(splits.test)
    text = table(result)
    assert "below both neighbours" in text and "not yet trained" in text and "slicing" in text
    assert "first 8 test images elsewhere" in text
    assert f"neumeta K={k} - individual w62: {paired['diff_pt']:+.2f} pt (95% CI" in text
    # ... and they travel into the shipped manifest's evaluation table.
    summary = evaluation_summary(json.loads(json.dumps(result)), "last", 1, 10)
    assert summary["paired_differences"]["individual w62"] == {k: paired[k] for k in ("diff_pt", "ci95_pt")}
    assert set(summary["paired_differences"]) == {"individual w62", "base_full w64"}
    paths = write_outputs(result, tmp_path / "out")
    assert all(p.stat().st_size > 0 for p in paths) and {p.suffix for p in paths} == {".json", ".png"}
    assert json.loads(paths[0].read_text())["arch"] == "resnet20-last"


def test_a_sweep_over_the_whole_test_set_is_test_rows_at_every_width(tmp_path):
    ckpt = load_checkpoint(tiny_checkpoint(tmp_path / "c.safetensors", arch="resnet20-last", scope="last",
                                           widths_allowed={"min": 60, "max": 62}, default_width=62))
    splits = synthetic_splits(64)
    n = len(splits.test)
    result = evaluate(ckpt, splits, None, subset=10 * n, key_widths=(64,), progress=False)
    assert result["subset"] == result["test_images"] == n  # clamped: there are no more images to score
    generated = [r for r in result["rows"] if r["method"] == "neumeta"]
    assert [r["width"] for r in generated] == [60, 61, 62]
    for r in generated:  # no key width in range, yet every row is a full-test measurement
        assert r["acc_test"] == r[f"acc_subset{n}"] == pytest.approx(
            accuracy(generate(ckpt, r["width"], samples=1, backend="torch"), splits.test, splits.info))
    assert f"all {n} test images elsewhere" in table(result)
    per_width = evaluation_summary(json.loads(json.dumps(result)), "last", 1, 10)["per_width"]
    assert {v["measured_on"] for v in per_width.values()} == {"test"}


def test_dips_are_widths_more_than_the_tolerance_below_both_neighbours():
    acc = {16: 90.0, 17: 88.5, 18: 90.0, 19: 89.5, 20: 89.9, 21: 80.0}
    # 17 dips 1.5 under both; 19 only 0.4 under its lower neighbour; the ends have one neighbour.
    assert dips_below_neighbours(acc) == [17]
    assert dips_below_neighbours(acc, tolerance=0.3) == [17, 19]
    assert dips_below_neighbours({16: 1.0, 17: 0.0}) == []


def test_baselines_carry_into_a_table_evaluated_without_the_base(tmp_path, base):
    ckpt = load_checkpoint(tiny_checkpoint(tmp_path / "c.safetensors", arch="resnet20-last", scope="last",
                                           widths_allowed={"min": 62, "max": 64}))
    splits = synthetic_splits(64)
    with_base = json.loads(json.dumps(evaluate(ckpt, splits, base, subset=8, key_widths=(64,), progress=False)))
    without = evaluate(ckpt, splits, None, subset=8, key_widths=(64,), progress=False)
    carried = carry_baselines(without, with_base, "eval-prev.json")
    baselines = [r for r in with_base["rows"] if r["method"] in ("slicing", "l1_prune", "base_full")]
    assert len(baselines) == 7  # slicing and pruning at 62-64, the base at 64
    assert carried["rows"][:len(without["rows"])] == without["rows"]
    for mine, theirs in zip(carried["rows"][len(without["rows"]):], baselines, strict=True):
        # the same numbers; the paired difference was against the other table's INR, so it goes
        assert mine == {k: v for k, v in theirs.items() if k != "neumeta_minus_this"}
    assert "eval-prev.json" in carried["baselines_from"] and with_base["checkpoint"] in carried["baselines_from"]
    assert "slicing" in table(carried)
    with pytest.raises(ValueError, match="subset=8, this table 4"):
        carry_baselines(evaluate(ckpt, splits, None, subset=4, key_widths=(64,), progress=False), with_base, "p")
    with pytest.raises(ValueError, match="has its own baselines"):
        carry_baselines(with_base, with_base, "p")
    with pytest.raises(ValueError, match="no slicing, pruning or base rows"):
        carry_baselines(without, json.loads(json.dumps(without)), "p")


def test_eval_cli_refuses_base_and_carried_baselines_together(tmp_path, capsys, base):
    from safetensors.torch import save_file

    import service.cli

    ckpt = tiny_checkpoint(tmp_path / "c.safetensors")
    save_file(base, str(tmp_path / "base.safetensors"))
    (tmp_path / "prev.json").write_text("{}")
    code = service.cli.main(["eval", "--checkpoint", str(ckpt), "--base", str(tmp_path / "base.safetensors"),
                             "--baselines-from", str(tmp_path / "prev.json"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "not both" in err and not (tmp_path / "out").exists()


def test_eval_cli_refuses_baselines_from_other_images_before_evaluating(tmp_path, capsys):
    import service.cli
    from service.training.data import FMNIST_DEFAULT_ROOT

    if not (FMNIST_DEFAULT_ROOT / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    ckpt = tiny_checkpoint(tmp_path / "c.safetensors")  # arch resnet20, like the shipped table
    shipped_table = Path(__file__).parents[2] / "docs/results/eval-resnet20.json"  # swept the first 5,000 images
    code = service.cli.main(["eval", "--checkpoint", str(ckpt), "--baselines-from", str(shipped_table),
                             "--subset", "100", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "subset=5000, this table 100" in err and not (tmp_path / "out").exists()
