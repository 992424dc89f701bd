"""How a run starts: its INR fresh, its blocks starting as identities (``identity_blocks``), or
continued from a shipped checkpoint (``--init-from``), grown to this run's INR shape first; its
fixed layers the base's, or fresh (``--fixed-init fresh``, see ``fresh_fixed``)."""

from __future__ import annotations

import math

import torch

from service.archs import FULL_WIDTH, tensor_specs
from service.hypernet import HyperNet, HyperNetConfig
from service.training.objective import generated_tensors

# Heads whose output layer starts at zero: the conv2 heads (and conv1's bias), so every morphed block
# starts as the identity and the fixed layers alone form a working network, while conv1's weights
# start at He scale. Random outputs start the blocks with random biases that kill the ReLUs (measured:
# CE stuck at ln 10 = 2.30 for 60+ steps); zeroing both convs is a saddle: conv1 gets no gradient
# through a zero conv2, conv2 none from a zero conv1 (measured: CE flat at 2.29).
ZEROED_ROLES = ("conv1.bias", "conv2.weight", "conv2.bias")


@torch.no_grad()
def identity_blocks(hn: HyperNet, scope: str, in_channels: int, num_classes: int) -> None:
    """Start ``hn``'s blocks as identities: ZEROED_ROLES' output layers at zero, conv1 at He scale."""
    heads = [h for role in ZEROED_ROLES for h in hn.role_heads(role)]
    hn.w_out[heads] = 0.0
    hn.b_out[heads] = 0.0
    _he_scale_conv1(hn, scope, in_channels, num_classes)


@torch.no_grad()
def _he_scale_conv1(hn: HyperNet, scope: str, in_channels: int, num_classes: int) -> None:
    """Rescale the conv1-weight heads so their full-width tensors start at std sqrt(2 / fan_in)."""
    gen = generated_tensors(hn, scope, FULL_WIDTH, in_channels, num_classes, seed=None)
    ratios = [(2.0 / t[0].numel()) ** 0.5 / float(t.std()) for k, t in gen.items() if k.endswith("conv1.weight")]
    heads = hn.role_heads("conv1.weight")
    scale = sum(ratios) / len(ratios)
    hn.w_out[heads] *= scale
    hn.b_out[heads] *= scale


@torch.no_grad()
def continued_inr(path: str, wanted: HyperNetConfig, scope: str, seed: int) -> tuple[HyperNet, dict[str, torch.Tensor]]:
    """A shipped checkpoint's INR, grown to ``wanted``, and its fixed layers (the INR was trained
    against those, so they replace the base's; the base stays the teacher).

    A wider hidden grows the saved INR (Net2Net) and a head per block splits its role heads: both keep
    the same function, with more capacity. Noise may change (it scales the coordinate jitter, not any
    weight's shape), and so may the band limit (exact at full width, a change only at narrower ones).
    Any other difference is refused."""
    from service.hypernet import load_checkpoint

    ckpt = load_checkpoint(path)
    saved = ckpt.manifest.inr
    split = wanted.head_per_block and not saved.head_per_block
    update = {"hidden": wanted.hidden, "noise": wanted.noise, "band_limit": wanted.band_limit}
    if split:
        update |= {"heads": wanted.heads, "head_per_block": True}
    if saved.model_copy(update=update) != wanted or saved.hidden > wanted.hidden or ckpt.manifest.scope.value != scope:
        raise ValueError(f"{path} holds a {ckpt.manifest.scope.value}-scope INR {saved}; "
                         f"this run trains a {scope}-scope {wanted}")
    hn = ckpt.hypernet.widened(wanted.hidden, seed=seed)
    if split:
        hn = hn.split_per_block(wanted.heads // saved.heads)
    return hn, ckpt.fixed


@torch.no_grad()
def fresh_fixed(scope: str, in_channels: int, num_classes: int, seed: int) -> dict[str, torch.Tensor]:
    """Fixup-style fixed layers (Zhang et al., 2019): He-initialised stem and shortcut convolutions,
    zero biases and a zero classifier. With the blocks starting as identities (``identity_blocks``)
    the untrained network is then a small working CNN (stem, two strided 1x1 convolutions, pooling,
    classifier) with unit-scale features, which the task loss trains at once. The base's own fixed
    layers expect its trained blocks: behind identity blocks their features are ~100x too small
    (pooled 0.014 against 1.95), and the loss sits near chance for hundreds of steps."""
    gen = torch.Generator().manual_seed(seed)
    fixed = {}
    for spec in tensor_specs(scope, FULL_WIDTH, in_channels, num_classes):
        if spec.role:
            continue
        if spec.name.endswith("bias") or spec.name.startswith("fc."):
            fixed[spec.name] = torch.zeros(spec.shape)
        else:  # (out, in, k, k): He normal over fan-in
            fan_in = math.prod(spec.shape[1:])
            fixed[spec.name] = torch.randn(spec.shape, generator=gen) * math.sqrt(2.0 / fan_in)
    return fixed
