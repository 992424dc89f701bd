"""Plot a family's (bytes, accuracy) frontier, the picture behind ``GET /model?family=...``.

    python -m service.training.frontier_plot                              # shipped checkpoints -> docs/results/
    python -m service.training.frontier_plot --server http://host:8000    # what a running service publishes

One panel per dtype: every measured (arch, width) as a point, coloured by arch, and the Pareto
frontier of ``GET /archs`` (``families``) as a step line: the model a ``max_bytes`` budget gets is the
frontier point at the budget's left. Reads the same tables the service chooses from (service/serving/families.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from service.constants import DTYPES
from service.serving.families import candidates, frontier

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "results"


def load_entries(server: str | None, checkpoints: list[Path]) -> dict[str, Any]:
    """The per-arch entries of ``GET /archs``: from a service, or built from checkpoints here."""
    if server:
        import httpx

        catalog = httpx.get(f"{server.rstrip('/')}/archs", timeout=120).json()
        return {arch: entry for arch, entry in catalog.items() if arch != "families"}
    from service.serving.catalog import Catalog
    from service.settings import SHIPPED_CHECKPOINTS

    paths = checkpoints or sorted(SHIPPED_CHECKPOINTS.glob("*.safetensors"))
    return Catalog.from_paths(paths).entries()


def plot_family(entries: dict[str, Any], family: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    served = {d for e in entries.values() if e["family"] == family for d in e["bytes"]}
    dtypes = [d for d in DTYPES if d in served]
    fig, axes = plt.subplots(1, len(dtypes), figsize=(4.2 * len(dtypes), 4.2), sharey=True, squeeze=False)
    for ax, dtype in zip(axes[0], dtypes, strict=True):
        found = candidates(entries, family, dtype)
        for arch in sorted({c.arch for c in found}):
            mine = [c for c in found if c.arch == arch]
            ax.scatter([c.bytes / 1e3 for c in mine], [c.accuracy for c in mine], s=10, alpha=0.6,
                       label=f"{arch} ({entries[arch]['scope']} scope)")
        best = frontier(found)
        ax.step([c.bytes / 1e3 for c in best], [c.accuracy for c in best], where="post", color="black", lw=1.2,
                label="frontier (what max_bytes picks)")
        span = max(c.bytes for c in found) - min(c.bytes for c in found)
        labelled = -span
        for c in best:  # points closer than 4% of the axis would print on top of each other: label the first
            if c.bytes - labelled > 0.04 * span or c is best[-1]:
                ax.annotate(f"{c.arch} w{c.width}" if c is best[-1] else f"w{c.width}", (c.bytes / 1e3, c.accuracy),
                            fontsize=6, xytext=(2, 3), textcoords="offset points",
                            ha="right" if c is best[-1] else "left")
                labelled = c.bytes
        ax.set_title(dtype)
        ax.set_xlabel("ONNX file size (kB)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("measured test accuracy % (float32 network)")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"family {family}: accuracy against download size, every measured width")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.training.frontier_plot",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--server", help="read GET /archs from this service instead of local checkpoints")
    parser.add_argument("--checkpoint", type=Path, action="append", default=[], help="(default: the shipped ones)")
    parser.add_argument("--family", default="resnet20")
    parser.add_argument("-o", "--out-dir", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    entries = load_entries(args.server, args.checkpoint)
    path = plot_family(entries, args.family, args.out_dir / f"frontier-{args.family}.png")
    points = {d: len(frontier(candidates(entries, args.family, d))) for d in ("float32", "int8-weights")}
    print(json.dumps({"wrote": str(path), "frontier_points": points}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
