"""Paired comparison of two checkpoints of one arch on one split: should NEW replace OLD?

Every candidate is judged the same way, by a rule fixed before any row is seen: both checkpoints
generate a network at each width, both networks classify the same images, and the per-image
differences give each width's gain a 95% interval
(``evaluate.paired_difference``), far tighter than two independent accuracies would. NEW is
``better`` when its gain is above 0 at ``min_above`` or more widths and no interval lies wholly
below 0: a gain everywhere that the test set cannot resolve is not a loss, but a resolved loss
anywhere vetoes it. ``neumeta compare`` takes the verdict on VAL (5,000 held-out training images:
model selection) and pairs the test set the same way only to report it.

    neumeta compare runs/candidate.safetensors service/checkpoints/resnet20-fmnist-all.safetensors
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from service.errors import InvalidParameter
from service.hypernet import Checkpoint, generate
from service.training.data import Split
from service.training.evaluate import KEY_WIDTHS, correct_mask, paired_difference, percent_correct


def default_widths(ckpt: Checkpoint) -> list[int]:
    """The narrowest allowed width and the key widths (16/32/48/64) the checkpoint allows."""
    allowed = ckpt.manifest.widths_allowed
    return sorted({allowed.min, *(w for w in KEY_WIDTHS if w in allowed)})


def check_comparable(new: Checkpoint, old: Checkpoint, widths: Sequence[int]) -> None:
    """InvalidParameter unless both checkpoints make the same kind of network at every width."""
    for field in ("family", "scope", "dataset", "in_channels", "num_classes"):
        a, b = getattr(new.manifest, field), getattr(old.manifest, field)
        if a != b:
            raise InvalidParameter(f"the checkpoints differ in {field} ({a} vs {b}): nothing to pair")
    if not widths:
        raise InvalidParameter("no widths to compare")
    for ckpt in (new, old):
        allowed = ckpt.manifest.widths_allowed
        outside = [w for w in widths if w not in allowed]
        if outside:
            raise InvalidParameter(f"width(s) {outside} outside {ckpt.manifest.arch}'s allowed "
                                   f"{allowed.min}-{allowed.max}")


def compare_checkpoints(
    new: Checkpoint, old: Checkpoint, split: Split, info: Any, widths: Sequence[int] | None = None,
    limit: int | None = None, min_above: int | None = None, device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Per-width accuracies of both (each at its manifest's default K) and NEW minus OLD, paired.

    ``min_above`` defaults to all widths but one (4 of 5), the rule the shipped continuations met."""
    widths = list(widths) if widths else default_widths(new)
    check_comparable(new, old, widths)
    min_above = len(widths) - 1 if min_above is None else min_above
    if not 1 <= min_above <= len(widths):
        raise InvalidParameter(f"--min-above must be 1-{len(widths)} for {len(widths)} widths")
    rows = []
    for width in widths:
        hits_new, hits_old = (correct_mask(generate(c, width, backend="torch"), split, info, limit, device=device)
                              for c in (new, old))
        rows.append({"width": width, "new": percent_correct(hits_new), "old": percent_correct(hits_old),
                     **paired_difference(hits_new, hits_old)})
    above = sum(r["diff_pt"] > 0 for r in rows)
    resolved_losses = [r["width"] for r in rows if r["ci95_pt"][1] < 0]
    return {
        "new": new.short_sha, "old": old.short_sha, "arch": new.manifest.arch, "images": rows[0]["images"],
        "rows": rows, "above_zero": above, "intervals_above_zero": sum(r["ci95_pt"][0] > 0 for r in rows),
        "intervals_below_zero": resolved_losses, "min_above": min_above,
        "better": above >= min_above and not resolved_losses,
    }


def compare_table(result: dict[str, Any], split: str = "TEST") -> str:
    """The comparison as Markdown rows (NEW, OLD, NEW minus OLD with its interval), then the verdict."""
    rows = result["rows"]
    head = f"| {split} | " + " | ".join(f"w={r['width']}" for r in rows) + " |"
    lines = [
        head, "|---" * (len(rows) + 1) + "|",
        f"| old ({result['old']}) | " + " | ".join(f"{r['old']:.2f}" for r in rows) + " |",
        f"| new ({result['new']}) | " + " | ".join(f"{r['new']:.2f}" for r in rows) + " |",
        "| new minus old, pt (95% interval) | " + " | ".join(
            f"{r['diff_pt']:+.2f} [{r['ci95_pt'][0]:+.2f}, {r['ci95_pt'][1]:+.2f}]" for r in rows) + " |",
    ]
    below = result["intervals_below_zero"]
    verdict = "better" if result["better"] else "not better"
    lines.append(
        f"{verdict}: above 0 at {result['above_zero']} of {len(rows)} widths (needs {result['min_above']}), "
        f"{result['intervals_above_zero']} interval(s) wholly above 0, "
        + (f"wholly below 0 at {below}" if below else "none wholly below 0")
        + f"; {result['images']} images")
    return "\n".join(lines)
