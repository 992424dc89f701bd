"""Train a ResNet20 (full width = the base model, or narrower = an individual baseline), then fold BN.

Recipe: SGD (momentum 0.9, Nesterov), weight decay, cosine learning rate over the planned steps,
crop + flip augmentation, ``--precision auto`` by default: bf16 where native (``service.training.precision``).
Validation accuracy after every epoch picks the best model; the test split is read once, at the
end, for the report.

Run directory (``--out``):
    last.pt              resume state: model + optimizer + step (training scratch, never served)
    best.pt              model weights of the best-by-val epoch
    folded.safetensors   best model with BatchNorm folded: what permutation and the INR consume
    folded.json          dataset info, val/test accuracy, epochs, wall time, command
    train.log            (when launched in the background) the run's log

Resume is exact: shuffling and augmentation are pure functions of (seed, epoch, batch), so a run
stopped at any step and resumed draws the same batches an uninterrupted run would. Resuming with a
larger ``--epochs`` extends the run; the cosine schedule then stretches over the new total.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from service.archs import ResNet20, fold_batchnorm, folded_model
from service.atomic import atomic_path
from service.errors import InvalidParameter
from service.training.data import Splits, batches, epoch_order, load_dataset
from service.training.evaluate import fraction_correct, model_hits
from service.training.folded import FOLDED_NAME
from service.training.precision import (
    DEVICES,
    TRAIN_PRECISIONS,
    autocast,
    hardware,
    prepare_input,
    resolve_device,
    resolve_precision,
)

# Hyperparameters a resumed run must keep (changing them mid-run would silently change the recipe).
FROZEN_ON_RESUME = ("dataset", "batch", "lr", "wd", "momentum", "seed", "inner_widths", "precision")


@dataclass
class BaseTrainConfig:
    """A ``neumeta train base`` / ``train individual`` run: one ResNet20, SGD (a hypernetwork run's
    settings are ``hypernet_inputs.TrainConfig``)."""

    out: str
    dataset: str = "fashion-mnist"
    data: str | None = None
    epochs: int = 30
    batch: int = 128
    lr: float = 0.1
    wd: float = 5e-4
    momentum: float = 0.9
    seed: int = 0
    inner_widths: list[int] | None = None  # None = full width
    precision: str = "auto"  # "bf16": autocast + channels-last; "fp32": plain; "auto": bf16 where native
    device: str = "auto"  # "auto": CUDA when available; not frozen (a run may resume elsewhere)
    log_every: int = 100  # steps between log lines
    save_every: int = 200  # steps between resume checkpoints (also saved at every epoch end)
    max_steps: int | None = None  # stop (resumably) after this global step: smoke runs and tests
    extra: dict[str, Any] = field(default_factory=dict)  # recorded in the sidecar (e.g. scope, width)


def learning_rate(cfg: BaseTrainConfig, step: int, total_steps: int) -> float:
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


def _build(cfg: BaseTrainConfig, splits: Splits,
           device: torch.device | str = "cpu") -> tuple[ResNet20, torch.optim.SGD]:
    torch.manual_seed(cfg.seed)  # the initial weights are drawn on the CPU: the same on every device
    info = splits.info
    model = ResNet20(info.in_channels, info.num_classes, cfg.inner_widths, batchnorm=True).to(device)
    if cfg.precision == "bf16":
        # Module.to takes memory_format (documented); torch's overloads of it leave the keyword out.
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                          weight_decay=cfg.wd)
    return model, opt


@dataclass
class Progress:
    """Bookkeeping saved in ``last.pt`` beside the model and optimizer (flat keys, plain types)."""

    step: int = 0
    best_val: float = -1.0
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per finished epoch
    wall_s: float = 0.0

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Progress:
        return cls(**{f.name: state[f.name] for f in fields(cls) if f.name in state})


def _resume(cfg: BaseTrainConfig, model: ResNet20, opt: torch.optim.SGD, state: dict[str, Any], path: Path) -> Progress:
    """Load ``last.pt``'s ``state`` into model and optimizer; refuse a changed recipe."""
    saved = state["config"]
    changed = [k for k in FROZEN_ON_RESUME if saved.get(k) != asdict(cfg).get(k)]
    if changed:
        raise InvalidParameter(f"{path} was trained with different {', '.join(changed)} "
                               f"({', '.join(f'{k}={saved.get(k)}' for k in changed)}); use a new --out")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    return Progress.from_state(state)


def train(cfg: BaseTrainConfig, splits: Splits | None = None, command: str | None = None) -> dict[str, Any]:
    """Train (or resume) into ``cfg.out``; returns the sidecar dict once finished, else the progress."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    last = out / "last.pt"
    # map to the CPU: load_state_dict copies onto the model's device and the optimizer casts its state
    saved = torch.load(last, map_location="cpu", weights_only=True) if last.exists() else None  # plain tensors
    resumed = saved["config"].get("precision") if saved else None  # "auto" keeps a resumed run's precision
    cfg = replace(cfg, precision=resolve_precision(cfg.precision, device, resumed=resumed))
    splits = splits or load_dataset(cfg.dataset, cfg.data)
    model, opt = _build(cfg, splits, device)
    steps_per_epoch = math.ceil(len(splits.train) / cfg.batch)
    total_steps = cfg.epochs * steps_per_epoch
    progress = Progress()
    if saved is not None:
        progress = _resume(cfg, model, opt, saved, last)
        print(f"resumed {out / 'last.pt'} at step {progress.step} (epoch {progress.step / steps_per_epoch:.2f})",
              flush=True)
    command = command or shlex.join(["neumeta", *sys.argv[1:]])

    def save_last() -> None:
        with atomic_path(out / "last.pt") as tmp:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "config": asdict(cfg),
                        **asdict(progress)}, tmp)

    stop_at = total_steps if cfg.max_steps is None else min(total_steps, cfg.max_steps)
    t0 = time.time() - progress.wall_s
    while progress.step < stop_at:
        epoch = progress.step // steps_per_epoch
        stats = _run_epoch(cfg, splits, model, opt, progress, stop_at, total_steps, save_last, t0)
        if progress.step % steps_per_epoch == 0:  # epoch finished: validate, keep the best
            val = fraction_correct(model_hits(model, splits.val, splits.info))
            progress.history.append({"epoch": epoch + 1, **stats, "val_acc": val, "wall_s": round(time.time() - t0, 1)})
            if val > progress.best_val:
                progress.best_val, progress.best_epoch = val, epoch + 1
                with atomic_path(out / "best.pt") as tmp:
                    torch.save({"model": model.state_dict()}, tmp)
            print(f"epoch {epoch + 1}/{cfg.epochs} val_acc {val:.4f} (best {progress.best_val:.4f} "
                  f"@ {progress.best_epoch}) wall {time.time() - t0:.0f}s", flush=True)
        save_last()
    if progress.step < total_steps:
        return {"finished": False, "step": progress.step, "total_steps": total_steps}
    return finalize(cfg, splits, progress, command)


def _run_epoch(cfg: BaseTrainConfig, splits: Splits, model: ResNet20, opt: torch.optim.SGD, progress: Progress,
               stop_at: int, total_steps: int, save_last: Callable[[], None], t0: float) -> dict[str, float]:
    """Train from ``progress.step`` to the end of its epoch (or ``stop_at``); returns train loss/acc."""
    from tqdm import tqdm  # the [train] extra: `neumeta --help` and `serve` import this module without it

    steps_per_epoch = math.ceil(len(splits.train) / cfg.batch)
    epoch, start = divmod(progress.step, steps_per_epoch)
    order = epoch_order(len(splits.train), cfg.seed, epoch)
    stream = batches(splits.train, splits.info, cfg.batch, order=order, augment_seed=cfg.seed * 1_000 + epoch,
                     start=start)
    bar = tqdm(stream, total=steps_per_epoch, initial=start, desc=f"epoch {epoch + 1}/{cfg.epochs}",
               disable=None, mininterval=2.0)  # disable=None: no bar when stderr is a log file
    model.train()
    device = next(model.parameters()).device
    loss_sum, correct, seen = 0.0, 0, 0
    for x, y in bar:  # x: (B, C, H, W) float32, y: (B,), augmented on the host
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, progress.step, total_steps)
        with autocast(cfg.precision, device):
            logits = model(prepare_input(x, cfg.precision))
            loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        progress.step += 1
        progress.wall_s = time.time() - t0
        loss_sum += loss.item() * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
        if bar.disable and progress.step % cfg.log_every == 0:
            print(f"step {progress.step}/{total_steps} epoch {epoch + 1} loss {loss_sum / seen:.4f} "
                  f"acc {correct / seen:.4f} lr {opt.param_groups[0]['lr']:.4f} "
                  f"elapsed {progress.wall_s:.0f}s", flush=True)
        if progress.step >= stop_at or progress.step % steps_per_epoch == 0:
            break
        if progress.step % cfg.save_every == 0:
            save_last()
    bar.close()
    return {"train_loss": loss_sum / max(1, seen), "train_acc": correct / max(1, seen)}


def finalize(cfg: BaseTrainConfig, splits: Splits, progress: Progress, command: str) -> dict[str, Any]:
    """Fold the best-by-val model's BatchNorm, write folded.safetensors + folded.json."""
    out = Path(cfg.out)
    model, _ = _build(cfg, splits)
    model.load_state_dict(torch.load(out / "best.pt", map_location="cpu", weights_only=True)["model"])
    model.eval()
    folded = fold_batchnorm(model)
    info = splits.info
    net = folded_model(folded, info.in_channels, info.num_classes)
    sidecar = {
        **info.to_json(),
        "arch": "resnet20", "inner_widths": list(model.inner_widths),
        "params": sum(t.numel() for t in folded.values()),
        "val_acc": fraction_correct(model_hits(net, splits.val, info)),
        "test_acc": fraction_correct(model_hits(net, splits.test, info)),
        "best_epoch": progress.best_epoch, "epochs": cfg.epochs, "steps": progress.step,
        "wall_s": round(progress.wall_s, 1), "history": progress.history,
        "recipe": {k: v for k, v in asdict(cfg).items() if k not in ("out", "data", "extra")},
        "command": command, "torch_threads": torch.get_num_threads(),
        "hardware": hardware(resolve_device(cfg.device)), **cfg.extra,
    }
    with atomic_path(out / FOLDED_NAME) as tmp:
        save_file(folded, str(tmp), metadata={"sidecar": json.dumps(sidecar)})
    (out / "folded.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    print(f"folded model: val {sidecar['val_acc']:.4f} test {sidecar['test_acc']:.4f} -> "
          f"{out / 'folded.safetensors'}", flush=True)
    return {"finished": True, **sidecar}


def add_arguments(parser: argparse.ArgumentParser, default_out: str | None) -> None:
    parser.add_argument("--data", default=None, help="dataset directory (default: the installed package's)")
    parser.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "cifar10"])
    parser.add_argument("--out", default=default_out, help="run directory")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--wd", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="auto", choices=TRAIN_PRECISIONS,
                        help="bf16: bfloat16 autocast + channels-last while training (weights stay fp32); "
                             "auto: bf16 where the hardware runs it natively, else fp32")
    parser.add_argument("--device", default="auto", choices=DEVICES, help="auto: CUDA when available")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--max-steps", type=int, default=None, help="stop (resumably) after this many steps")


def config_from_args(args: argparse.Namespace, inner_widths: list[int] | None = None, **extra: Any) -> BaseTrainConfig:
    for name in ("epochs", "batch"):
        if getattr(args, name) < 1:
            raise InvalidParameter(f"--{name} must be >= 1, got {getattr(args, name)}")
    resolve_device(args.device)  # fail before any data is read
    if args.threads:
        torch.set_num_threads(args.threads)
    return BaseTrainConfig(out=str(args.out), dataset=args.dataset, data=args.data, epochs=args.epochs,
                       batch=args.batch, lr=args.lr, wd=args.wd, seed=args.seed, inner_widths=inner_widths,
                       precision=args.precision, device=args.device,
                       max_steps=args.max_steps, extra=extra)


if __name__ == "__main__":  # background runner until `neumeta train base` is wired into the CLI
    cli = argparse.ArgumentParser(description="train the full-width base ResNet20")
    add_arguments(cli, "runs/base")
    command = shlex.join(["python", "-m", "service.training.base", *sys.argv[1:]])
    train(config_from_args(cli.parse_args()), command=command)
