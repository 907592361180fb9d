"""torch2mlx: translate trained PyTorch models and checkpoints to Apple MLX.

The heavy lifting happens in a C++ core (``torch2mlx._core``) that never imports torch or
MLX and never executes code from a checkpoint; this package is the Python front.
"""

from torch2mlx.analyze import PortabilityReport, analyze
from torch2mlx.checkpoint import (
    CheckpointInfo,
    CheckpointWarning,
    TensorInfo,
    Torch2MLXError,
    inspect_checkpoint,
    load_state_dict,
    save_safetensors,
)
from torch2mlx.conversion import ConversionResult, VerificationWarning, convert
from torch2mlx.generation import Generator, convert_for_generation, generate
from torch2mlx.registry import layer_registry
from torch2mlx.runtime import load
from torch2mlx.verification import VerificationReport, verify
from torch2mlx.weights import ConversionWarning, convert_weights, module_map, to_mlx_module

__version__ = "0.1.0"


def supported_ops() -> list[str]:
    """Every ATen overload the op registry translates (in-place variants normalise to these)."""
    from torch2mlx import _core

    return list(_core.supported_ops())


__all__ = [
    "CheckpointInfo",
    "CheckpointWarning",
    "ConversionResult",
    "ConversionWarning",
    "Generator",
    "PortabilityReport",
    "TensorInfo",
    "Torch2MLXError",
    "VerificationReport",
    "VerificationWarning",
    "__version__",
    "analyze",
    "convert",
    "convert_for_generation",
    "convert_weights",
    "generate",
    "inspect_checkpoint",
    "layer_registry",
    "load",
    "load_state_dict",
    "module_map",
    "save_safetensors",
    "supported_ops",
    "to_mlx_module",
    "verify",
]
