"""CIFAR-style ResNet20 whose residual blocks can each have their own inner width.

Two forms share one parameter naming scheme:
- trainable (``batchnorm=True``): convs without bias, each followed by BatchNorm;
- folded (``batchnorm=False``): BatchNorm folded into the conv, which then has a bias.
Generated networks are always folded. Names of the folded form:

    conv1.{weight,bias}                      stem 3x3, in_channels -> 16
    layer{s}.{b}.conv1.{weight,bias}         [inner, in, 3, 3]   (morphed)
    layer{s}.{b}.conv2.{weight,bias}         [out, inner, 3, 3]  (morphed)
    layer{s}.0.shortcut.{weight,bias}        1x1, stride 2, where the shape changes
    fc.{weight,bias}                         [num_classes, 64]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

STAGE_WIDTHS = (16, 32, 64)
BLOCKS_PER_STAGE = 3
NUM_BLOCKS = len(STAGE_WIDTHS) * BLOCKS_PER_STAGE
FULL_WIDTH = STAGE_WIDTHS[-1]


def block_names() -> list[str]:
    """The nine residual blocks in forward order: ``layer1.0`` ... ``layer3.2``."""
    return [f"layer{s + 1}.{b}" for s in range(len(STAGE_WIDTHS)) for b in range(BLOCKS_PER_STAGE)]


def block_io(index: int) -> tuple[int, int, int]:
    """(in_channels, out_channels, stride) of block ``index`` (0..8)."""
    stage, pos = divmod(index, BLOCKS_PER_STAGE)
    out = STAGE_WIDTHS[stage]
    if pos > 0:
        return out, out, 1
    if stage == 0:
        return STAGE_WIDTHS[0], out, 1
    return STAGE_WIDTHS[stage - 1], out, 2


def _conv(cin: int, cout: int, k: int, stride: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=bias)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, inner: int, cout: int, stride: int, batchnorm: bool):
        super().__init__()
        self.conv1 = _conv(cin, inner, 3, stride, bias=not batchnorm)
        self.conv2 = _conv(inner, cout, 3, 1, bias=not batchnorm)
        self.bn1 = nn.BatchNorm2d(inner) if batchnorm else nn.Identity()
        self.bn2 = nn.BatchNorm2d(cout) if batchnorm else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        self.shortcut_bn: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = _conv(cin, cout, 1, stride, bias=not batchnorm)
            if batchnorm:
                self.shortcut_bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut_bn(self.shortcut(x)))


class ResNet20(nn.Module):
    """ResNet20 with per-block inner widths (``inner_widths[i]`` = conv1's output channels)."""

    # The stages are registered by name in a loop (add_module); declared here so they are typed.
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        inner_widths: Sequence[int] | None = None,
        batchnorm: bool = True,
    ):
        super().__init__()
        inner = list(inner_widths) if inner_widths is not None else full_inner_widths()
        if len(inner) != NUM_BLOCKS or min(inner) < 1:
            raise ValueError(f"inner_widths needs {NUM_BLOCKS} positive ints, got {inner}")
        self.inner_widths = tuple(int(w) for w in inner)
        self.conv1 = _conv(in_channels, STAGE_WIDTHS[0], 3, 1, bias=not batchnorm)
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0]) if batchnorm else nn.Identity()
        for stage in range(len(STAGE_WIDTHS)):
            blocks = []
            for pos in range(BLOCKS_PER_STAGE):
                i = stage * BLOCKS_PER_STAGE + pos
                cin, cout, stride = block_io(i)
                blocks.append(BasicBlock(cin, self.inner_widths[i], cout, stride, batchnorm))
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(STAGE_WIDTHS[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, H, W) -> (B, classes)
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        logits: torch.Tensor = self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))  # Module calls are Any
        return logits

    def block(self, name: str) -> BasicBlock:
        """The residual block called ``name`` (one of ``block_names()``)."""
        block = self.get_submodule(name)
        if not isinstance(block, BasicBlock):
            raise TypeError(f"{name} is a {type(block).__name__}, not a residual block")
        return block


def full_inner_widths() -> list[int]:
    return [block_io(i)[1] for i in range(NUM_BLOCKS)]


def _fold(conv: nn.Module, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """W' = W * g / sqrt(var + eps), b' = beta + (b - mean) * g / sqrt(var + eps)."""
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"expected a Conv2d to fold into, got {type(conv).__name__}")
    weight = conv.weight.detach()
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros(weight.shape[0])
    if not isinstance(bn, nn.BatchNorm2d):
        return weight.clone(), bias.clone()
    if bn.running_var is None or bn.running_mean is None:
        raise ValueError("a BatchNorm that tracks no running statistics has nothing to fold")
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    return weight * scale[:, None, None, None], bn.bias.detach() + (bias - bn.running_mean) * scale


def conv_bn_pairs(model: ResNet20) -> list[tuple[str, str]]:
    """(conv, the norm after it) module names, stem first; with ``batchnorm=False`` the norms are
    identities, so the same names serve a folded model and its BN twin."""
    pairs = [("conv1", "bn1")]
    for name in block_names():
        pairs += [(f"{name}.conv1", f"{name}.bn1"), (f"{name}.conv2", f"{name}.bn2")]
        if isinstance(model.block(name).shortcut, nn.Conv2d):
            pairs.append((f"{name}.shortcut", f"{name}.shortcut_bn"))
    return pairs


@torch.no_grad()
def fold_batchnorm(model: ResNet20) -> dict[str, torch.Tensor]:
    """Folded state_dict (float32, contiguous) computing ``model``'s eval-mode function."""
    folded: dict[str, torch.Tensor] = {}
    for conv, norm in conv_bn_pairs(model):
        folded[f"{conv}.weight"], folded[f"{conv}.bias"] = _fold(model.get_submodule(conv), model.get_submodule(norm))
    folded["fc.weight"] = model.fc.weight.detach().clone()
    folded["fc.bias"] = model.fc.bias.detach().clone()
    return {k: v.float().contiguous() for k, v in folded.items()}


def folded_model(
    state: dict[str, torch.Tensor], in_channels: int, num_classes: int
) -> ResNet20:
    """A BN-free ResNet20 holding a folded state_dict; inner widths are read off its shapes."""
    inner = [state[f"{name}.conv1.weight"].shape[0] for name in block_names()]
    model = ResNet20(in_channels, num_classes, inner, batchnorm=False)
    model.load_state_dict(state)
    return model.eval()
