"""MLX templates: hand-written mlx.nn.Module classes for torch.nn modules that mlx.nn lacks or
does differently.

Each template takes the torch module's constructor arguments and has exactly torch's
parameter names and shapes (its state_dict keys), so a converted state dict loads with

    model.load_weights([(k, mx.array(v.numpy())) for k, v in sd.items()], strict=True)

with no renaming. Two layout rules apply (the project's channels-last rule):

- convolutions hold MLX-layout weights (O, *K, I/groups): the weight converter permutes
  torch's; see conv.py for the exact permutations;
- spatial modules (conv, pooling, normalization, upsampling, pixel shuffle, PReLU) take
  channels-last input (N, *spatial, C).

The transformer classes also have `from_torch(module)`, building the template from a live
torch module's configuration.

torch's `num_batches_tracked` buffers are not stored. All templates compute torch's
eval-mode function (dropout is the identity).
"""

from .activations import (
    GELU,
    GLU,
    Hardsigmoid,
    Hardtanh,
    LogSoftmax,
    PReLU,
    Softmax,
    Softmin,
    Softplus,
)
from .attention import MultiheadAttention
from .conv import (
    Conv1d,
    Conv2d,
    Conv3d,
    ConvTranspose1d,
    ConvTranspose2d,
    ConvTranspose3d,
)
from .embedding import EmbeddingBag
from .misc import Flatten, Identity, PixelShuffle, PixelUnshuffle, Unflatten, Upsample
from .norm import (
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    GroupNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    InstanceNorm3d,
    LayerNorm,
    RMSNorm,
)
from .pooling import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveAvgPool3d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool2d,
    AdaptiveMaxPool3d,
    AvgPool1d,
    AvgPool2d,
    AvgPool3d,
    MaxPool1d,
    MaxPool2d,
    MaxPool3d,
)
from .recurrent import GRU, LSTM, RNN
from .transformer import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)

__all__ = [
    "GELU",
    "GLU",
    "GRU",
    "LSTM",
    "RNN",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "EmbeddingBag",
    "Flatten",
    "GroupNorm",
    "Hardsigmoid",
    "Hardtanh",
    "Identity",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "LayerNorm",
    "LogSoftmax",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "MultiheadAttention",
    "PReLU",
    "PixelShuffle",
    "PixelUnshuffle",
    "RMSNorm",
    "Softmax",
    "Softmin",
    "Softplus",
    "Transformer",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "Unflatten",
    "Upsample",
]
