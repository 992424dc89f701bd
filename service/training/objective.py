"""The NeuMeta objective's pieces, shared by the trainer and its tests: what the INR generates at a
width, the folded state it completes, and the loss terms (see ``hypernet``'s docstring for the sum).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from service.archs import tensor_specs
from service.hypernet import HyperNet, coord_table, scatter


def distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's KD term: T^2 * KL(p_teacher || p_student) at temperature T, batch mean.
    student, teacher: (B, classes) logits."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), reduction="batchmean",
                    log_target=True) * t * t


def generated_tensors(hn: HyperNet, scope: str, width: int, in_channels: int, num_classes: int,
                      seed: int | None) -> dict[str, torch.Tensor]:
    """The INR's tensors at ``width``, on the INR's device: one noisy sample (``seed``) or the clean
    one (None)."""
    c = hn.config
    table = coord_table(scope, width, in_channels, num_classes, c.norm, c.noise, str(hn.w_in.device))
    out = hn(table, samples=1, seed=seed or 0, clean_first=seed is None)
    return scatter(table, out)


def full_state(fixed: dict[str, torch.Tensor], gen: dict[str, torch.Tensor], scope: str, width: int,
               in_channels: int, num_classes: int) -> dict[str, torch.Tensor]:
    specs = tensor_specs(scope, width, in_channels, num_classes)
    return {s.name: gen[s.name] if s.role else fixed[s.name] for s in specs}
