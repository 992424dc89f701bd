"""Coordinates, the INR module, the checkpoint format and generation (K-sample mean)."""

from service.hypernet.checkpoint import (
    Checkpoint,
    Manifest,
    load_checkpoint,
    parse_checkpoint,
    save_checkpoint,
)
from service.hypernet.coords import CoordTable, coord_table, scatter
from service.hypernet.generate import check_request, generate
from service.hypernet.model import HyperNet, HyperNetConfig

__all__ = [
    "Checkpoint", "CoordTable", "HyperNet", "HyperNetConfig", "Manifest",
    "check_request", "coord_table", "generate", "load_checkpoint", "parse_checkpoint",
    "save_checkpoint", "scatter",
]
