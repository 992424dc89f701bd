"""Width-morphable target networks (ResNet20), BatchNorm folding and parameter naming."""

from service.archs.resnet20 import (
    FULL_WIDTH,
    ResNet20,
    block_names,
    conv_bn_pairs,
    fold_batchnorm,
    folded_model,
)
from service.archs.widths import (
    ROLES,
    Scope,
    TensorSpec,
    compression_ratio,
    inner_widths,
    morphed_blocks,
    param_count,
    tensor_specs,
)

__all__ = [
    "FULL_WIDTH", "ROLES", "ResNet20", "Scope", "TensorSpec", "block_names", "compression_ratio", "conv_bn_pairs",
    "fold_batchnorm", "folded_model", "inner_widths", "morphed_blocks", "param_count", "tensor_specs",
]
