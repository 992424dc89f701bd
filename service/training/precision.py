"""Training device and precision of the ResNet passes, shared by base/individual, hypernetwork
training and evaluation.

``--device auto`` trains on the GPU when torch sees one (the dataset stays in host memory; each
batch is augmented there and copied over), else on the CPU.

``bf16`` runs the convolutions under bfloat16 autocast with channels-last inputs: 1.8x faster per
step on an AVX-512-BF16 CPU (160 -> 91 ms for a ResNet20 step at batch 128, measured), but 10x
*slower* on a CPU without AVX-512, where oneDNN emulates it (an AVX2-only AMD EPYC: 362 -> 3,496
ms). Weights, optimizer state, BatchNorm statistics and losses stay float32. ``fp32`` is plain
float32. ``auto`` (the default) picks bf16 only where the hardware runs it natively.
"""

from __future__ import annotations

import warnings

import torch

from service.errors import InvalidParameter

# Autocast of the ResNet passes in training; not the kernel precisions of service.constants.
TRAIN_PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU; ``cuda`` without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InvalidParameter("--device cuda: torch sees no CUDA device (use --device cpu or auto)")
    return torch.device(name)


def bf16_is_native(device: torch.device) -> bool:
    """Whether bfloat16 convolutions are fast on ``device``: a CUDA GPU with bf16, or a CPU that oneDNN
    runs bf16 on (AVX-512 and up). Elsewhere they are emulated and slower than float32."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())  # unannotated in torch: Any to mypy
    # torch's own oneDNN probe (private: if a release drops it, fp32 is the safe answer).
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return device.type == "cpu" and probe is not None and bool(probe())


def resolve_precision(name: str, device: torch.device, *, resumed: str | None = None) -> str:
    """``auto``: the run's own precision when it resumes (``resumed``), else bf16 where it is native and
    fp32 elsewhere. An explicit bf16 on hardware that emulates it is kept, with a warning."""
    if name not in TRAIN_PRECISIONS:
        raise InvalidParameter(f"unknown precision {name!r}; expected one of {', '.join(TRAIN_PRECISIONS)}")
    if name == "auto":
        return resumed or ("bf16" if bf16_is_native(device) else "fp32")
    if name == "bf16" and not bf16_is_native(device):
        warnings.warn(f"--precision bf16 on {device.type}: this hardware emulates bfloat16 convolutions, so a "
                      "step is several times slower than fp32 (use --precision auto or fp32)",
                      RuntimeWarning, stacklevel=2)
    return name


def prepare_input(x: torch.Tensor, precision: str) -> torch.Tensor:
    """(B, C, H, W) images in the layout the precision's convolutions are fastest in."""
    return x.contiguous(memory_format=torch.channels_last) if precision == "bf16" else x


def autocast(precision: str, device: torch.device | str = "cpu") -> torch.autocast:
    """The autocast region for a forward pass at ``precision`` on ``device`` (disabled for fp32)."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")


def hardware(device: torch.device) -> str:
    """What a run trained on, for its report: the GPU's name, or the CPU's thread budget."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA), torch {torch.__version__}"
    return f"CPU ({torch.get_num_threads()} torch threads), torch {torch.__version__}"
