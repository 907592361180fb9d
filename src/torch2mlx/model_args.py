"""Probes for ModelArgs: the model captured again with one config field changed at a time.

A single trace cannot say which config field a number of model.py comes from (in a tiny
Llama the key-value heads and the layers are both 2), so each numeric field of a Hugging
Face config is changed once, the model rebuilt from that config with its parameters on the
``meta`` device (no memory, no initialisation; buffers such as a rotary table are computed
for real, since the code generator reads them) and captured again. The code generator
compares the code of each probe with the model's and writes every number that moves with
the fields as an expression of them (``args.hidden_size // args.num_attention_heads``) in a
``ModelArgs`` dataclass, so that one model.py serves every size of the architecture
(cpp/include/torch2mlx/model_args.h).
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Config fields that cannot shape an inference graph: token ids, dropout rates,
# initialisation scales and label tables. Probing them would only cost a capture each.
_NOT_SIZES = ("_token_id", "dropout", "initializer_", "_init_")
_NOT_CONFIG = ("id2label", "label2id", "task_specific_params")


def _numeric_fields(config: Any) -> list[tuple[str, tuple[str, ...], int | float]]:
    """(ModelArgs name, path in the config, value) of every positive number of the config,
    and of the dicts it holds one level down (``rope_parameters.rope_theta``)."""
    found: list[tuple[str, tuple[str, ...], int | float]] = []
    for key, value in config.to_dict().items():
        if key in _NOT_CONFIG:
            continue
        entries = value.items() if isinstance(value, dict) else [(None, value)]
        for inner, item in entries:
            name = inner or key
            if isinstance(item, bool) or not isinstance(item, (int, float)) or item <= 0:
                continue
            if any(part in name for part in _NOT_SIZES) or not name.isidentifier():
                continue
            found.append((name, (key,) if inner is None else (key, inner), item))
    names = [name for name, _, _ in found]
    # A name held twice (one nested, one not) keeps its path, joined, for the nested one.
    return [
        (name if names.count(name) == 1 or len(path) == 1 else "_".join(path), path, value)
        for name, path, value in found
    ]


def _with_value(config: Any, path: tuple[str, ...], value: int | float) -> Any:
    changed = copy.deepcopy(config)
    if len(path) == 1:
        setattr(changed, path[0], value)
    else:
        holder = dict(getattr(changed, path[0]))
        holder[path[1]] = value
        setattr(changed, path[0], holder)
    return changed


def _value_at(config: Any, path: tuple[str, ...]) -> Any:
    value = getattr(config, path[0])
    return value[path[1]] if len(path) > 1 else value


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Modules built inside keep their parameters on the meta device (each is moved there as
    it is registered, so initialising it costs nothing); buffers stay real."""
    import torch

    register = torch.nn.Module.register_parameter

    def on_meta(module: Any, name: str, parameter: Any) -> None:
        if parameter is not None and parameter.device.type != "meta":
            parameter = torch.nn.Parameter(
                parameter.to("meta"), requires_grad=parameter.requires_grad
            )
        register(module, name, parameter)

    torch.nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


def _on_meta(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return torch.empty(value.shape, dtype=value.dtype, device="meta")
    if isinstance(value, (tuple, list)):
        return type(value)(_on_meta(item) for item in value)
    if isinstance(value, dict):
        return {key: _on_meta(item) for key, item in value.items()}
    return value


def _capture(
    model: Any, example_inputs: Any, dynamic_shapes: Any, scratch: Path
) -> tuple[str, list[tuple[str, str, list[int], bytes]]]:
    """The program JSON of ``model`` captured as convert captures it, and its buffers and
    constants as (name, dtype, shape, bytes). The parameters are on the meta device, so
    only the archive's program is read (models/model.json), not its weights."""
    import zipfile

    import torch

    from torch2mlx.capture import (
        decompose_untranslated,
        export_model,
        save_program,
        split_inputs,
        without_cache_outputs,
    )

    with without_cache_outputs(model, split_inputs(example_inputs)[1]):
        program = export_model(model, example_inputs, dynamic_shapes)
    program, _ = decompose_untranslated(program)
    archive = save_program(program, scratch / "probe.pt2")
    with zipfile.ZipFile(archive) as contents:
        (name,) = [n for n in contents.namelist() if n.endswith("/models/model.json")]
        text = contents.read(name).decode()
    buffers = []
    for key, tensor in {**program.state_dict, **program.constants}.items():
        if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
            continue
        if isinstance(tensor, torch.nn.Parameter):
            continue
        array = tensor.detach().contiguous()
        dtype = str(array.dtype).removeprefix("torch.")
        if dtype == "bfloat16":
            raw = array.view(torch.int16).numpy().tobytes()
        else:
            raw = array.numpy().tobytes()
        buffers.append((key, dtype, list(array.shape), raw))
    return text, buffers


def _dtypes_of(model: Any) -> dict[str, Any]:
    """The dtype of each of the model's parameters and buffers (persistent or not), by name."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    return {name: tensor.dtype for name, tensor in tensors}


def _cast_like(probe: Any, dtypes: dict[str, Any]) -> Any:
    """``probe`` with each parameter and buffer in the dtype the model's of that name has: a
    bfloat16 model's probes must be captured in bfloat16 too, or every cast differs."""
    import torch

    with torch.no_grad():
        for name, tensor in [*probe.named_parameters(), *probe.named_buffers()]:
            dtype = dtypes.get(name)
            if dtype is not None and tensor.dtype != dtype:
                tensor.data = tensor.data.to(dtype)
    return probe


def is_configured(model: Any) -> bool:
    """Whether ``model`` is built from a Hugging Face config that probes can change."""
    try:
        from transformers import PretrainedConfig
    except ImportError:
        return False
    return isinstance(getattr(model, "config", None), PretrainedConfig)


# A model deeper than this is probed on a copy of its first PROBE_LAYERS layers: each
# capture then costs what a small model's does, whatever the depth.
PROBE_LAYERS = 2


def _layer_count(config: Any) -> tuple[str, int] | None:
    """The config field that counts the layers and its value, when the model is deeper than
    PROBE_LAYERS."""
    from torch2mlx.hf import layer_field

    name = layer_field(config)
    value = config.to_dict().get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value <= PROBE_LAYERS:
        return None
    return name, value


def _shallow(config: Any, field: str) -> Any:
    """``config`` with only its first PROBE_LAYERS layers (and their layer types)."""
    shallow = _with_value(config, (field,), PROBE_LAYERS)
    if isinstance(getattr(shallow, "layer_types", None), list):
        shallow.layer_types = shallow.layer_types[:PROBE_LAYERS]
    return shallow


def _probe_plan(config: Any, fields: list) -> list[tuple[str, tuple, Any, list, list]]:
    """(field, its path, the config to change it in, candidate values, base) for each field,
    the layer count first: a deep model's probes change one field of a shallow copy, and are
    compared with that copy (the base), itself the layer count's probe."""
    layers = _layer_count(config)
    plan = []
    for name, path, value in fields:
        candidates = [value * 2, value // 2] if isinstance(value, int) else [value * 2]
        if layers is None:
            plan.append((name, path, config, candidates, []))
        elif path == (layers[0],):
            plan.insert(0, (name, path, config, [PROBE_LAYERS], []))
        else:
            base = [(layers[0], float(PROBE_LAYERS))]
            plan.append((name, path, _shallow(config, layers[0]), candidates, base))
    return plan


def probe_spec(model: Any, example_inputs: Any, dynamic_shapes: Any) -> tuple[dict, list[str]]:
    """The ``model_args`` argument of ``_core.write_package`` for a model built from a
    Hugging Face config: its numeric fields, and one capture per field with that field
    doubled (halved when doubling makes no valid model); a deep model's on a copy of its
    first layers. Also notes on fields left out."""
    config = model.config
    dtypes = _dtypes_of(model)
    fields = _numeric_fields(config)
    inputs = _on_meta(example_inputs)
    probes: list[tuple] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="torch2mlx-probe-") as scratch:
        for name, path, start, candidates, base in _probe_plan(config, fields):
            value = _value_at(start, path)
            for candidate in candidates:
                if candidate <= 0 or candidate == value:
                    continue
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        with _parameters_on_meta():
                            probe = type(model)(_with_value(start, path, candidate)).eval()
                        _cast_like(probe, dtypes)
                        text, buffers = _capture(probe, inputs, dynamic_shapes, Path(scratch))
                except Exception:  # a config this architecture refuses: try the next value
                    continue
                probes.append((name, float(candidate), text, buffers, base))
                break
            else:
                notes.append(f"ModelArgs: '{name}' stays fixed: no other value of it builds")
    spec = {
        "fields": [(name, float(value), isinstance(value, int)) for name, _, value in fields],
        "probes": probes,
    }
    return spec, notes


def config_values(fields: list) -> dict:
    """config.json's ``model_args``: the fields model.py reads, by name."""
    return {name: int(value) if integer else value for name, value, integer in fields}
