"""What a hypernetwork run starts from: its validated configuration and the data splits (real, or
random ones for tests and the DDP check); the permuted base is read by ``folded.load_folded``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from service.archs import FULL_WIDTH, Scope
from service.errors import InvalidParameter
from service.hypernet import HyperNetConfig
from service.hypernet.model import head_count
from service.training.data import DATASETS, Split, Splits, load_dataset
from service.training.precision import TRAIN_PRECISIONS

SCOPES = tuple(s.value for s in Scope)
# The widths a shipped checkpoint of each scope serves (below 16, a `last` block is narrower than
# anything the paper morphs to); validation defaults to their ends, ship.py writes them to the manifest.
SHIPPED_WIDTHS = {Scope.ALL.value: (8, FULL_WIDTH), Scope.LAST.value: (16, FULL_WIDTH)}
WIDTH_SAMPLINGS = ("uniform", "sandwich")
FIXED_INITS = ("base", "fresh")
INR_PATHS = ("batched", "reference")


@dataclass
class TrainConfig:
    base: str
    out: str
    scope: str = "all"
    dataset: str = "fashion-mnist"
    data: str | None = None  # dataset root; "synthetic:N" = N random images (tests)
    steps: int = 2000
    batch: int = 128  # per rank
    widths_train: tuple[int, int] = (16, 64)
    width_sampling: str = "uniform"  # "sandwich": steps cycle min, max, uniform (US-Nets' sandwich rule)
    hidden: int = 128
    layers: int = 3
    freqs: int = 8
    band_limit: float = 0.0  # anti-aliasing of channel-ratio frequencies at narrow widths (HyperNetConfig)
    noise: float = 1.0
    head_per_block: bool = False
    lr: float = 1e-3
    lr_warmup: int = 20  # steps of linear warm-up before the cosine
    weight_decay: float = 1e-2
    lambda_norm: float = 1e-4
    lambda_kd: float = 0.0  # weight of the distillation term (0 = off, the paper)
    kd_temperature: float = 2.0
    precision: str = "auto"  # "bf16": ResNet forward under bfloat16 autocast + channels-last; auto: where native
    device: str = "auto"  # "auto": CUDA when available
    init_from: str | None = None  # a service checkpoint to continue: its INR weights and fixed layers
    train_fixed: bool = False  # also fine-tune the non-morphed layers (shipped as the checkpoint's fixed)
    fixed_lr_scale: float = 0.1  # their learning rate relative to the INR's
    fixed_init: str = "base"  # "fresh": Fixup-style stem, shortcuts and classifier (inr_start.fresh_fixed)
    clip: float = 1.0  # gradient-norm clip
    ema_decay: float = 0.995
    val_widths: list[int] = field(default_factory=list)  # empty: a default set for the scope
    val_every: int = 200
    val_limit: int = 2000  # VAL images per width during training
    ckpt_every: int = 50  # steps between checkpoint chances; one is written only if ckpt_min_seconds passed
    ckpt_min_seconds: float = 60.0  # at most one scratch checkpoint a minute (and always at the end)
    max_minutes: float | None = None  # stop early, at a checkpoint; the schedule is set in steps only
    inr_path: str = "batched"  # "reference": kernels.reference per head (the same math, slower; benchmarks)
    threads: int = 1
    seed: int = 0
    progress: bool = True
    recipe: str | None = None  # the recipe this run was resolved from (service/training/recipes/), if any

    def __post_init__(self) -> None:
        # One home for the rules, so a run built from the CLI, from Python or from a saved
        # config.json (ship.py) is refused the same way, before any data or weights are read.
        self.widths_train = tuple(self.widths_train)  # type: ignore[assignment]  # JSON gives a list
        for name, allowed in (("scope", SCOPES), ("dataset", DATASETS), ("width_sampling", WIDTH_SAMPLINGS),
                              ("precision", TRAIN_PRECISIONS),
                              ("inr_path", INR_PATHS), ("fixed_init", FIXED_INITS)):
            if getattr(self, name) not in allowed:
                raise InvalidParameter(f"{name} = {getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        lo, hi = self.widths_train
        if not 1 <= lo <= hi <= FULL_WIDTH:
            raise InvalidParameter(f"widths_train = [{lo}, {hi}]: need 1 <= MIN <= MAX <= {FULL_WIDTH}")
        # (key, holds, what it must be): each message names the key, as the recipe file and --flag spell it.
        rules = (("batch", self.batch >= 1, ">= 1"), ("steps", self.steps >= 0, ">= 0"),
                 ("lr", self.lr >= 0, ">= 0"), ("lr_warmup", self.lr_warmup >= 0, ">= 0"),
                 ("weight_decay", self.weight_decay >= 0, ">= 0"),
                 ("lambda_norm", self.lambda_norm >= 0, ">= 0"), ("lambda_kd", self.lambda_kd >= 0, ">= 0"),
                 ("kd_temperature", self.kd_temperature > 0, "> 0"), ("clip", self.clip > 0, "> 0"),
                 ("fixed_lr_scale", self.fixed_lr_scale > 0, "> 0"),
                 ("ema_decay", 0 <= self.ema_decay < 1, "in [0, 1)"), ("val_every", self.val_every >= 1, ">= 1"),
                 ("val_limit", self.val_limit >= 1, ">= 1"), ("ckpt_every", self.ckpt_every >= 1, ">= 1"),
                 ("ckpt_min_seconds", self.ckpt_min_seconds >= 0, ">= 0"), ("threads", self.threads >= 1, ">= 1"),
                 ("fixed_init", self.fixed_init == "base" or self.train_fixed,
                  "'base' unless train_fixed is true (fresh fixed layers must learn, and ship)"))
        for key, holds, must in rules:
            if not holds:
                raise InvalidParameter(f"{key} = {getattr(self, key)!r}: must be {must}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise InvalidParameter(f"max_minutes = {self.max_minutes!r}: must be > 0")
        if any(not 1 <= w <= FULL_WIDTH for w in self.val_widths):
            raise InvalidParameter(f"val_widths = {self.val_widths!r}: every width must be in 1..{FULL_WIDTH}")
        self.inr_config()  # the INR's own rules (e.g. --band-limit needs --head-per-block)

    def inr_config(self) -> HyperNetConfig:
        try:
            return HyperNetConfig(hidden=self.hidden, layers=self.layers, num_freqs=self.freqs, noise=self.noise,
                                  band_limit=self.band_limit,
                                  heads=head_count(self.scope, self.head_per_block),
                                  head_per_block=self.head_per_block)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise InvalidParameter(f"INR shape: {exc}") from exc

    def default_val_widths(self) -> list[int]:
        lo = SHIPPED_WIDTHS[self.scope][0]
        return self.val_widths or sorted({lo, 16, 32, 48, FULL_WIDTH})


def synthetic_splits(n: int, seed: int = 0) -> Splits:
    """Random Fashion-MNIST-shaped data: for tests and DDP checks only."""
    from service.training.data import FMNIST_INFO

    g = torch.Generator().manual_seed(seed)
    def split(k: int) -> Split:
        return Split(torch.randint(0, 256, (k, 1, 28, 28), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (k,), generator=g))
    return Splits(split(n), split(max(8, n // 4)), split(max(8, n // 4)), FMNIST_INFO)


def load_splits(cfg: TrainConfig) -> Splits:
    if cfg.data and cfg.data.startswith("synthetic:"):
        return synthetic_splits(int(cfg.data.split(":", 1)[1]), cfg.seed)
    return load_dataset(cfg.dataset, cfg.data)
