"""Diagnostic: fine-tune a generated network's weights directly, with no INR in the loop.

Asks where a hypernetwork's plateau lives. Every weight of a folded ResNet20 (for example
``neumeta generate --width 64 --format safetensors``) becomes a free parameter, trained with the
INR trainer's objective (cross-entropy + distillation from the same teacher at T=2), augmentation,
batch, AdamW, warm-up + cosine schedule, gradient clipping and EMA. If free weights climb no faster
than the INR, the INR's parameterisation is not what holds the plateau. Two variants:

- ``--batchnorm``: a BatchNorm after every conv, set up so that its eval-mode function is the
  identity on that conv (running mean mu, variance sigma^2 from a calibration pass; gamma = sigma,
  beta = mu + bias). Training starts from exactly the generated network, runs in train mode (batch
  statistics) and is folded back for every evaluation: does BN's conditioning help?
- ``--perturb P``: add N(0, (P * std)^2) to every conv weight first, breaking near-duplicate
  channels (identical channels get identical gradients, so free weights cannot tell them apart).

    python -m service.training.free_weights runs/gen-all-w64.safetensors runs/teacher-last-w64.safetensors \\
        --lr 3e-4 --steps 2500 --out runs/free-weights.jsonl

Prints (and appends to ``--out``) one JSON line per validation: running train accuracy, VAL of the
live and EMA weights; a last line with test accuracy of the EMA and of the start.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from service.archs import ResNet20, conv_bn_pairs, fold_batchnorm, folded_model
from service.training.data import Splits, StepBatches, load_dataset, normalize
from service.training.evaluate import accuracy
from service.training.hypernet import ema_decay_at, warmup_cosine
from service.training.objective import distillation


@torch.no_grad()
def with_batchnorm(folded: dict[str, torch.Tensor], calibration: torch.Tensor) -> ResNet20:
    """A BN ResNet20 whose eval-mode function equals the folded network's (calibration: (N, C, H, W),
    normalised). Each BN's statistics are those of its conv's bias-free output on ``calibration``."""
    in_ch, n_cls = folded["conv1.weight"].shape[1], folded["fc.weight"].shape[0]
    plain = folded_model(folded, in_ch, n_cls)
    pairs = conv_bn_pairs(plain)
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module: torch.nn.Conv2d, _inputs: object, out: torch.Tensor) -> None:
            outputs[name] = (out - module.bias[None, :, None, None]).transpose(0, 1).flatten(1)  # (C, N*H*W)
        return hook

    hooks = [plain.get_submodule(conv).register_forward_hook(keep(conv)) for conv, _ in pairs]
    plain(calibration)
    for hook in hooks:
        hook.remove()
    model = ResNet20(in_ch, n_cls, plain.inner_widths, batchnorm=True)
    for conv, bn_name in pairs:
        bn = model.get_submodule(bn_name)
        mu, var = outputs[conv].mean(1), outputs[conv].var(1)
        model.get_submodule(conv).weight.copy_(folded[f"{conv}.weight"])
        bn.running_mean.copy_(mu)
        bn.running_var.copy_(var)
        bn.weight.copy_(torch.sqrt(var + bn.eps))  # gamma / sqrt(var + eps) = 1: the identity
        bn.bias.copy_(mu + folded[f"{conv}.bias"])
    model.fc.load_state_dict({"weight": folded["fc.weight"], "bias": folded["fc.bias"]})
    return model.eval()


def perturbed(state: dict[str, torch.Tensor], scale: float, seed: int = 1234) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: v + scale * v.std() * torch.randn(v.shape, generator=g) if v.dim() == 4 else v
            for k, v in state.items()}


def folded_state(model: ResNet20) -> dict[str, torch.Tensor]:
    return fold_batchnorm(model) if isinstance(model.bn1, torch.nn.BatchNorm2d) else {
        k: v.detach().clone() for k, v in model.state_dict().items()}


def fine_tune(start: dict[str, torch.Tensor], teacher_state: dict[str, torch.Tensor], splits: Splits,
              args: argparse.Namespace, log=print) -> dict[str, float]:
    torch.manual_seed(args.seed)
    info, train = splits.info, splits.train
    if args.perturb:
        start = perturbed(start, args.perturb)
    in_ch, n_cls = start["conv1.weight"].shape[1], start["fc.weight"].shape[0]
    if args.batchnorm:
        model = with_batchnorm(start, normalize(train.images[:2048], info))
    else:
        model = folded_model(start, in_ch, n_cls)
    teacher = folded_model(teacher_state, in_ch, n_cls).requires_grad_(False)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    log({"step": 0, "val_start": accuracy(start, splits.val, info, limit=args.val_limit),
         "val_teacher": accuracy(teacher_state, splits.val, info, limit=args.val_limit)})
    model.train()
    batches = StepBatches(train, info, args.batch, args.seed)  # the INR trainer's batches, step for step
    began, running = time.time(), []
    for step in range(args.steps):
        lr = warmup_cosine(args.lr, step, step / args.steps)  # and its schedule
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = batches.at(step)
        logits = model(x)
        with torch.no_grad():
            target = teacher(x)
        loss = F.cross_entropy(logits, y) + distillation(logits, target, 2.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():  # parameters and BN statistics alike
            decay = ema_decay_at(args.ema_decay, step)
            live = model.state_dict()
            for name, value in ema.state_dict().items():
                if value.is_floating_point():
                    value.lerp_(live[name], 1 - decay)
        running.append(float((logits.argmax(1) == y).float().mean() * 100))
        if (step + 1) % args.val_every == 0 or step + 1 == args.steps:
            log({"step": step + 1, "wall_s": round(time.time() - began), "lr": lr,
                 "train_acc": round(sum(running) / len(running), 2),
                 "val_ema": accuracy(folded_state(ema), splits.val, info, limit=args.val_limit),
                 "val_live": accuracy(folded_state(model), splits.val, info, limit=args.val_limit)})
            running = []
    result = {"test_ema": accuracy(folded_state(ema), splits.test, info),
              "test_start": accuracy(start, splits.test, info)}
    log({"end": True, **result})
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m service.training.free_weights", description=__doc__.split("\n")[0])
    p.add_argument("start", help="folded network to fine-tune (.safetensors, e.g. from neumeta generate)")
    p.add_argument("teacher", help="folded teacher (.safetensors), the INR runs' --base")
    p.add_argument("--data", help="Fashion-MNIST directory (default: the Debian package's)")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--ema-decay", type=float, default=0.998)
    p.add_argument("--batchnorm", action="store_true", help="train with BatchNorm back in the loop")
    p.add_argument("--perturb", type=float, default=0.0, help="conv weight noise, in units of each tensor's std")
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--val-limit", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="append the JSON lines here too")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)

    def log(record: dict) -> None:
        line = json.dumps(record)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")

    log({"args": {k: str(v) for k, v in vars(args).items()}})
    fine_tune(load_file(args.start), load_file(args.teacher), load_dataset("fashion-mnist", args.data), args, log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
