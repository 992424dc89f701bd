"""``neumeta redundancy``: distinct inner channels per block, and neighbour similarity."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from service.archs import ResNet20, block_names, fold_batchnorm, inner_widths
from service.hypernet import generate, load_checkpoint
from service.training.redundancy import adjacent_cosine, block_redundancy, channel_signatures, effective_rank
from tests.factories import tiny_checkpoint


def _folded(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return fold_batchnorm(ResNet20(1, 10).eval())


def _duplicate_inner_channels(state: dict[str, torch.Tensor], block: str, copies: int) -> None:
    """Make each run of ``copies`` neighbouring inner channels of ``block`` identical."""
    for name, axis in ((f"{block}.conv1.weight", 0), (f"{block}.conv2.weight", 1)):
        t = state[name]
        keep = t.narrow(axis, 0, t.shape[axis] // copies)
        state[name] = keep.repeat_interleave(copies, dim=axis)


def test_effective_rank_counts_the_directions_that_hold_the_energy():
    torch.manual_seed(0)
    low = torch.randn(40, 3, dtype=torch.float64) @ torch.randn(3, 50, dtype=torch.float64)
    assert effective_rank(low, 0.999999) == 3
    assert effective_rank(torch.eye(6, dtype=torch.float64)) == 6
    assert effective_rank(torch.zeros(4, 5, dtype=torch.float64)) == 0


def test_adjacent_cosine_is_one_for_repeated_rows_and_undefined_for_one_row():
    rows = torch.tensor([[1.0, 2.0], [2.0, 4.0], [-1.0, -2.0]])
    assert adjacent_cosine(rows) == pytest.approx((1.0 - 1.0) / 2)
    assert adjacent_cosine(rows[:2]) == pytest.approx(1.0)
    assert adjacent_cosine(rows[:1]) is None


def test_duplicated_channels_count_once_and_neighbours_match():
    state = _folded()
    block = "layer3.1"  # 64 inner channels at full width
    _duplicate_inner_channels(state, block, copies=4)
    rows = {r["block"]: r for r in block_redundancy(state)}
    assert rows[block]["inner"] == 64 and rows[block]["distinct"] <= 16
    # 3 of every 4 neighbour pairs are copies (cosine 1); random others are near 0.
    assert rows[block]["adjacent_cosine"] == pytest.approx(0.75, abs=0.05)
    untouched = rows["layer3.0"]
    assert untouched["distinct"] > 40 and abs(untouched["adjacent_cosine"]) < 0.2


def test_signatures_join_what_a_channel_reads_and_writes():
    state = _folded()
    sig = channel_signatures(state, "layer2.0")  # conv1 (32, 16, 3, 3), conv2 (32, 32, 3, 3)
    assert sig.shape == (32, (16 + 32) * 9)
    reads, writes = sig[:, : 16 * 9], sig[:, 16 * 9 :]
    assert reads.norm().item() == pytest.approx(1.0) and writes.norm().item() == pytest.approx(1.0)
    expected = state["layer2.0.conv2.weight"][:, 5].double().flatten()
    assert torch.allclose(writes[5] * state["layer2.0.conv2.weight"].double().norm(), expected)


def test_cli_reports_every_block_of_a_generated_network_beside_a_reference(tmp_path, capsys):
    import service.cli

    ckpt_path = tiny_checkpoint(tmp_path / "c.safetensors")
    reference = tmp_path / "ref.safetensors"
    save_file(_folded(), str(reference))
    out = tmp_path / "r" / "redundancy.json"
    code = service.cli.main(["redundancy", "--checkpoint", str(ckpt_path), "--width", "16",
                             "--reference", str(reference), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and printed.count("| layer") == len(block_names())
    result = json.loads(out.read_text())
    gen, ref = result["columns"]["resnet20 w16"], result["columns"]["ref"]
    assert [r["inner"] for r in gen] == inner_widths("all", 16)
    assert gen == block_redundancy(generate(load_checkpoint(ckpt_path), 16))
    assert [r["inner"] for r in ref] == inner_widths("all", 64)


@pytest.mark.parametrize(("argv", "needle"), [
    (["--width", "99"], "width_out_of_range"),
    (["--energy", "1.5"], "--energy"),
    (["--reference", "missing.safetensors"], "--reference"),
])
def test_cli_refuses_bad_input_with_the_documented_code(tmp_path, capsys, argv, needle):
    import service.cli

    ckpt = tiny_checkpoint(tmp_path / "c.safetensors")
    code = service.cli.main(["redundancy", "--checkpoint", str(ckpt), *argv])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err
