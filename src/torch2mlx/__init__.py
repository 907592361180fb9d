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

__version__ = "0.1.0"

__all__ = [
    "CheckpointInfo",
    "CheckpointWarning",
    "TensorInfo",
    "Torch2MLXError",
    "__version__",
    "inspect_checkpoint",
    "load_state_dict",
    "save_safetensors",
]
