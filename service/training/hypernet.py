"""Train the NeuMeta implicit hypernetwork (INR) against a permuted, folded full-width ResNet20.

One step, at a width w drawn uniformly from the training range (the same w on every rank; with
``--width-sampling sandwich`` the steps cycle the range's min, its max and a uniform draw):

    table  = coord_table(scope, w)                        cached, (N, 5)
    gen    = scatter(table, inr(table, 1 noisy sample))   the morphed blocks' tensors
    state  = fixed tensors of the base + gen              a folded ResNet20 of width w
    loss   = CE(functional_call(resnet_w, state, x), y)
           + lambda_norm * sum_t ||gen_t||_F
           + lambda_kd   * T^2 KL(softmax(base(x)/T) || softmax(logits/T))   (--lambda-kd, ours)

The distillation term (off by default; not in the paper) is US-Net's "inplace distillation" with
the fixed full-width base as teacher: the morphed network learns the base's whole output
distribution at every width instead of only the label. ``--precision bf16`` runs the ResNet20
forward/backward under bfloat16 autocast in channels-last layout (the INR itself stays float32;
on CUDA its matmuls run as TF32). ``--device auto`` trains on the GPU when torch sees one.

The paper's reconstruction term (an MSE to the permuted full model's channel slices) is not part of
the objective: every shipped recipe trained with it off. The EMA of the INR is validated on the VAL
split at several widths (K=1, clean) and its best copy is what ``ship.py`` ships.

Speed: the INR runs through ``batched_inr`` (buckets of similar-sized heads, per-width constants
cached; ``inr_path = "reference"`` runs ``kernels.reference`` instead, the same math), batches are
drawn and augmented on the training device, terms whose weight is 0 are not computed, and a step
never waits on the device: its losses stay tensors until the next log line (``tests/training/
test_trainer_speed.py`` makes every host read raise inside a step). The schedule is set in steps;
``max_minutes`` only stops a run early, at a checkpoint.

Distributed: under torchrun (WORLD_SIZE > 1) each rank reads its own shard of every global batch
and gradients are all-reduced (mean) before the update, so every rank holds identical weights.
Run directly for torchrun: ``python -m service.training.hypernet --base ... --out ...``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import save_file

from service.archs import FULL_WIDTH, ResNet20, inner_widths, tensor_specs
from service.atomic import atomic_path
from service.hypernet import HyperNet, scatter
from service.training.batched_inr import BatchedINR
from service.training.data import StepBatches
from service.training.distributed import average_gradients, init_distributed, weights_digest
from service.training.evaluate import accuracy
from service.training.folded import load_folded
from service.training.hypernet_inputs import TrainConfig, load_splits
from service.training.inr_start import continued_inr, fresh_fixed, identity_blocks
from service.training.objective import distillation, full_state, generated_tensors
from service.training.precision import autocast, hardware, prepare_input, resolve_device, resolve_precision
from service.training.recipes import check_resumable


def warmup_cosine(peak: float, step: int, progress: float, warmup: int = 20) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``peak`` to 5% of it as ``progress``
    goes from 0 to 1."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def ema_decay_at(decay: float, step: int) -> float:
    """``decay``, shortened early so the average does not remember the random start for long."""
    return min(decay, (1 + step) / (10 + step))


# --- the trainer --------------------------------------------------------------------------------

class Trainer:
    def __init__(self, cfg: TrainConfig, force: bool = False):
        torch.set_num_threads(cfg.threads)
        self.rank, self.world = init_distributed()
        self.device = resolve_device(cfg.device)
        # Not frozen on resume: the ResNet pass is recomputed every step, so a run may move between machines.
        self.cfg = cfg = replace(cfg, precision=resolve_precision(cfg.precision, self.device))
        if self.device.type == "cuda":
            if self.world > 1:
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            if cfg.precision == "bf16":  # the INR's fp32 matmuls on the tensor cores too (TF32)
                torch.backends.cuda.matmul.allow_tf32 = True
        self.out = Path(cfg.out)
        self.base, _ = load_folded(cfg.base)
        self.base = {k: v.to(self.device) for k, v in self.base.items()}
        self.fixed = self.base  # the non-morphed layers (a continued checkpoint brings its own)
        self.in_ch = self.base["conv1.weight"].shape[1]
        self.n_cls = self.base["fc.weight"].shape[0]
        self.splits = load_splits(cfg)
        torch.manual_seed(cfg.seed)  # identical initial INR on every rank (drawn on the CPU, then moved)
        self.hn = HyperNet(cfg.inr_config()).to(self.device)
        identity_blocks(self.hn, cfg.scope, self.in_ch, self.n_cls)
        if cfg.fixed_init == "fresh":
            fresh = fresh_fixed(cfg.scope, self.in_ch, self.n_cls, cfg.seed)
            self.fixed = {**self.base, **{k: v.to(self.device) for k, v in fresh.items()}}
        if cfg.init_from:
            hn, fixed = continued_inr(cfg.init_from, self.hn.config, cfg.scope, cfg.seed)
            self.hn.load_state_dict(hn.state_dict())
            self.fixed = {**self.base, **{k: v.to(self.device, copy=True) for k, v in fixed.items()}}
        self.ema = copy.deepcopy(self.hn).requires_grad_(False)
        groups: list[dict[str, Any]] = [{"params": list(self.hn.parameters()), "lr_scale": 1.0}]
        self.ema_fixed: dict[str, torch.Tensor] = {}
        if cfg.train_fixed:
            # The non-morphed layers co-adapt to the generated block (ours, not the paper's): they
            # become parameters, with their own EMA, and ship as the checkpoint's fixed tensors.
            names = [s.name for s in tensor_specs(cfg.scope, FULL_WIDTH, self.in_ch, self.n_cls) if not s.role]
            self.fixed = {**self.fixed, **{n: torch.nn.Parameter(self.fixed[n].clone()) for n in names}}
            self.ema_fixed = {n: self.fixed[n].detach().clone() for n in names}
            groups.append({"params": [self.fixed[n] for n in names], "lr_scale": cfg.fixed_lr_scale,
                           "weight_decay": 0.0})
        self.params = [p for g in groups for p in g["params"]]
        # Fused AdamW: one kernel for every parameter, on CUDA and CPU alike (no per-tensor launches).
        self.opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        self.step, self.wall = 0, 0.0
        self.best: dict[str, Any] = {"score": -1.0}
        self.models: dict[int, ResNet20] = {}
        self.teacher = ResNet20(self.in_ch, self.n_cls, None, batchnorm=False).requires_grad_(False)
        self.teacher.load_state_dict(self.base)
        self.teacher.to(self.device).eval()
        self.hardware = [hardware(self.device)]  # every machine the run trained on (resumes may move)
        self.batches = StepBatches(self.splits.train, self.splits.info, cfg.batch, cfg.seed, self.world, self.rank,
                                   self.device)
        batched = cfg.inr_path == "batched"
        self.batched = BatchedINR(self.hn, cfg.scope, self.in_ch, self.n_cls) if batched else None
        if self.rank == 0:
            check_resumable(self.out, cfg, force)
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
        self._resume()

    def lr_at(self, step: int) -> float:
        """Linear warm-up (``lr_warmup`` steps) then cosine to 5% of the peak over all steps. Set in steps only,
        so a run's schedule is the same on any machine (``max_minutes`` stops early, it never anneals)."""
        return warmup_cosine(self.cfg.lr, step, min(1.0, step / max(1, self.cfg.steps)), self.cfg.lr_warmup)

    def width_at(self, step: int) -> int:
        lo, hi = self.cfg.widths_train
        if self.cfg.width_sampling == "sandwich" and step % 3 < 2:
            # The extremes bound every width between them (US-Nets); uniform draws give them 2/49 of the steps.
            return (lo, hi)[step % 3]
        return random.Random(self.cfg.seed * 1_000_003 + step).randint(lo, hi)  # same on every rank

    def model(self, width: int) -> ResNet20:
        if width not in self.models:
            self.models[width] = ResNet20(self.in_ch, self.n_cls, inner_widths(self.cfg.scope, width),
                                          batchnorm=False).requires_grad_(False).to(self.device)
        return self.models[width]

    def generated(self, width: int, seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """The INR's tensors at ``width`` (noisy sample ``seed``) and, when ``lambda_norm`` > 0, the sum
        of their Frobenius norms."""
        if self.batched is None:
            gen = generated_tensors(self.hn, self.cfg.scope, width, self.in_ch, self.n_cls, seed=seed)
            norm = torch.stack([g.norm() for g in gen.values()]).sum() if self.cfg.lambda_norm > 0 else None
            return gen, norm
        plan = self.batched.plan(width)
        out = self.batched.forward(plan, seed)
        norm = self.batched.norm_sum(plan, out) if self.cfg.lambda_norm > 0 else None
        return scatter(plan.table, out), norm

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """The objective at ``step`` and its parts, as tensors (reading them waits on the device)."""
        cfg, w = self.cfg, self.width_at(step)
        gen, norm = self.generated(w, seed=step + 1)
        parts: dict[str, torch.Tensor] = {}
        loss = torch.zeros((), device=self.device)
        if norm is not None:  # the terms are summed in the order they always were: the same bits
            parts["norm"] = norm
            loss = loss + cfg.lambda_norm * norm
        x, y = self.batches.at(step)
        state = full_state(self.fixed, gen, cfg.scope, w, self.in_ch, self.n_cls)
        x = prepare_input(x, cfg.precision)
        with autocast(cfg.precision, self.device):
            logits = torch.func.functional_call(self.model(w), state, (x,)).float()
            if cfg.lambda_kd > 0:
                with torch.no_grad():
                    teacher = self.teacher(x).float()
        parts["ce"] = F.cross_entropy(logits, y)
        parts["acc"] = (logits.argmax(1) == y).float().mean() * 100
        loss = loss + parts["ce"]
        if cfg.lambda_kd > 0:
            parts["kd"] = distillation(logits, teacher, cfg.kd_temperature)
            loss = loss + cfg.lambda_kd * parts["kd"]
        return loss, {"width": w, **{k: v.detach() for k, v in parts.items()}}

    def train_step(self) -> dict[str, Any]:
        """One optimisation step. Nothing in it reads a device value on the host."""
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step) * group["lr_scale"]
        loss, info = self.loss(self.step)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(self.params, self.world)
        info["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.clip, foreach=True)
        self.opt.step()
        # The fused kernel writes the parameters without bumping their version counters, and values
        # derived from a parameter (the band-limited w_in, kernels.memo) are keyed by that counter:
        # without this, validation and generation would read the weights of an earlier step.
        for p in self.params:  # one at a time: older torch (the GPU image's 2.11) takes a single tensor
            torch.autograd.graph.increment_version(p)
        with torch.no_grad():
            decay = ema_decay_at(self.cfg.ema_decay, self.step)
            ema = [*self.ema.parameters(), *self.ema_fixed.values()]
            live = [*(p.detach() for p in self.hn.parameters()), *(self.fixed[n].detach() for n in self.ema_fixed)]
            torch._foreach_lerp_(ema, live, 1 - decay)
        self.step += 1
        return info

    @torch.no_grad()
    def validate(self, hn: HyperNet | None = None, limit: int | None = None) -> dict[int, float]:
        """VAL accuracy (%) of the clean K=1 network at each validation width."""
        hn = hn or self.ema
        accs = {}
        for w in self.cfg.default_val_widths():
            gen = generated_tensors(hn, self.cfg.scope, w, self.in_ch, self.n_cls, seed=None)
            fixed = {**self.fixed, **self.ema_fixed} if hn is self.ema else self.fixed
            state = full_state(fixed, gen, self.cfg.scope, w, self.in_ch, self.n_cls)
            accs[w] = accuracy(state, self.splits.val, self.splits.info, limit=limit or self.cfg.val_limit)
        return accs

    # --- checkpoints (scratch, rank 0 only) ---
    def _save(self) -> None:
        if self.rank != 0:
            return
        state = {"step": self.step, "wall": self.wall, "best": self.best, "hardware": self.hardware,
                 "hn": self.hn.state_dict(),
                 "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                 "fixed": {n: self.fixed[n].detach() for n in self.ema_fixed}, "ema_fixed": self.ema_fixed}
        with atomic_path(self.out / "last.pt") as tmp:
            torch.save(state, tmp)

    def _resume(self) -> None:
        path = self.out / "last.pt"
        if not path.is_file():
            return
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.hn.load_state_dict(state["hn"])
        self.ema.load_state_dict(state["ema"])
        with torch.no_grad():
            for n in self.ema_fixed:
                self.fixed[n].copy_(state["fixed"][n])
                self.ema_fixed[n].copy_(state["ema_fixed"][n])
        self.opt.load_state_dict(state["opt"])
        self.step, self.wall, self.best = state["step"], state["wall"], state["best"]
        self.hardware = list(dict.fromkeys([*state.get("hardware", []), *self.hardware]))

    def _log(self, record: dict[str, Any]) -> None:
        if self.rank == 0:
            with open(self.out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def _maybe_best(self, accs: dict[int, float], train: dict[str, float] | None = None) -> None:
        score = sum(accs.values()) / len(accs)
        self._log({"step": self.step, "val": accs, "score": score, "wall_s": round(self.wall, 1), **(train or {})})
        if self.rank == 0 and score > self.best["score"]:
            self.best = {"score": score, "step": self.step, "val": {str(k): v for k, v in accs.items()}}
            # Written beside and renamed into place: a copy of the run taken at any moment (the GPU
            # session packs it every 30 s) holds whole files, never a half-written one.
            ema = {k: v.cpu().contiguous() for k, v in self.ema.state_dict().items()}
            files: dict[str, tuple[dict[str, torch.Tensor], dict[str, str] | None]] = {
                "best_ema.safetensors": (ema, {"best": json.dumps(self.best), "config": json.dumps(asdict(self.cfg))})}
            if self.ema_fixed:
                files["best_fixed.safetensors"] = ({k: v.cpu().contiguous() for k, v in self.ema_fixed.items()}, None)
            with contextlib.ExitStack() as renamed_at_exit:  # both files complete before either is renamed
                for name, (tensors, metadata) in files.items():
                    save_file(tensors, str(renamed_at_exit.enter_context(atomic_path(self.out / name))),
                              metadata=metadata)

    def run(self) -> dict[str, Any]:
        from tqdm import tqdm

        cfg = self.cfg
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not cfg.progress or self.rank != 0,
                   desc=f"hypernet[{cfg.scope}]", dynamic_ncols=True)
        start = time.time() - self.wall
        running: dict[str, list[torch.Tensor]] = {}
        last_save = time.monotonic()
        while self.step < cfg.steps:
            info = self.train_step()
            self.wall = time.time() - start  # the host's clock: no wait on the device
            for k in ("ce", "acc", "kd"):
                if k in info:
                    running.setdefault(k, []).append(info[k])
            bar.update(1)
            at_checkpoint = self.step % cfg.ckpt_every == 0
            out_of_time = at_checkpoint and self._out_of_time(start)
            done = self.step >= cfg.steps or out_of_time
            if self.step % cfg.val_every == 0 or done:
                # The only host reads of the training losses: once per validation, not once per step.
                train = {f"train_{k}": round(float(torch.stack(v).mean()), 4) for k, v in running.items()}
                accs = self.validate()
                self._maybe_best(accs, train)
                running.clear()
                bar.set_postfix({"val": f"{sum(accs.values()) / len(accs):.2f}",
                                 **{k: f"{v:.3g}" for k, v in train.items()}})
                if bar.disable and self.rank == 0:  # no bar (--no-progress, a log file): one line per validation
                    print(f"step {self.step}/{cfg.steps} wall {self.wall:.0f}s "
                          f"val {' '.join(f'w{w}:{a:.2f}' for w, a in accs.items())} "
                          f"{' '.join(f'{k}:{v:.3g}' for k, v in train.items())}", flush=True)
            # Checkpoints at most every ckpt_min_seconds: a fast device would otherwise spend its time writing.
            if done or (at_checkpoint and time.monotonic() - last_save >= cfg.ckpt_min_seconds):
                self._save()
                last_save = time.monotonic()
            if out_of_time:
                break
        bar.close()
        if self.world > 1:
            # Every rank records a digest of its weights: identical digests = the ranks stayed in sync.
            (self.out / f"rank{self.rank}.sha256").write_text(weights_digest(self.hn) + "\n")
            dist.barrier()
        return {"step": self.step, "wall_s": self.wall, "best": self.best}

    def _out_of_time(self, start: float) -> bool:
        """Whether ``max_minutes`` has passed; under DDP the slowest rank's clock decides for all."""
        self.wall = time.time() - start
        if self.world > 1:
            clock = torch.tensor([self.wall], dtype=torch.float64, device=self.device)
            dist.all_reduce(clock, op=dist.ReduceOp.MAX)
            self.wall = float(clock)
        return self.cfg.max_minutes is not None and self.wall > 60 * self.cfg.max_minutes


def train(cfg: TrainConfig) -> dict[str, Any]:
    return Trainer(cfg).run()


if __name__ == "__main__":  # torchrun entry point
    import sys

    from service.training.hypernet_commands import main

    sys.exit(main())
