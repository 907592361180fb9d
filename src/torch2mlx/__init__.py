"""torch2mlx: translate trained PyTorch models and checkpoints to Apple MLX.

The heavy lifting happens in a C++ core (``torch2mlx._core``) that never imports torch or
MLX and never executes code from a checkpoint; this package is the Python front.
"""

from torch2mlx.checkpoint import (
    CheckpointInfo,
    CheckpointWarning,
    TensorInfo,
    Torch2MLXError,
    inspect_checkpoint,
    load_state_dict,
    save_safetensors,
)
from torch2mlx.registry import layer_registry
from torch2mlx.weights import ConversionWarning, convert_weights, module_map, to_mlx_module

__version__ = "0.1.0"

__all__ = [
    "CheckpointInfo",
    "CheckpointWarning",
    "ConversionWarning",
    "TensorInfo",
    "Torch2MLXError",
    "__version__",
    "convert_weights",
    "inspect_checkpoint",
    "layer_registry",
    "load_state_dict",
    "module_map",
    "save_safetensors",
    "to_mlx_module",
]
