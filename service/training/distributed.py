"""Data parallelism for the INR trainer under torchrun: joining the group, averaging gradients, and
the weight digest every rank writes so a test can check that the ranks stayed identical."""

from __future__ import annotations

import hashlib
import os

import torch
import torch.distributed as dist


def init_distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """All-reduce every gradient as one flat buffer (mean over ranks)."""
    if world == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 over a module's parameters (name order, raw float32 bytes)."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
