"""Hugging Face model folders (``config.json`` and weights) as a conversion source.

``load_folder`` builds the torch model with ``transformers`` from the folder alone
(``local_files_only``), loads its weights through torch2mlx's own readers (safetensors or
``.bin``, sharded or not: a ``.bin`` is never unpickled by torch), and chooses example inputs
and dynamic dimensions from the model's task. Nothing touches the network, and no Python
file of the folder runs unless the caller passes ``trust_remote_code=True``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch2mlx.checkpoint import Torch2MLXError

# Files that travel with a converted model: tokenizers, processors, generation settings.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "chat_template.json",
    "chat_template.jinja",
    "preprocessor_config.json",
    "processor_config.json",
    "image_processor_config.json",
    "feature_extractor_config.json",
    "generation_config.json",
)

# Example inputs by the model's main input (transformers' `main_input_name`): what each
# task feeds, and which dims may vary. Sizes come from the config where it has them.
_TEXT_LENGTH = 12
_BATCH = 2
_AUDIO_SAMPLES = 16000

REMOTE_CODE_HINT = (
    "its config.json names Python code of its own (auto_map), which transformers would "
    "import and run from the folder; torch2mlx runs no code from a file it converts unless "
    "you pass --trust-remote-code (trust_remote_code=True), so only do that for a folder "
    "whose Python you have read or whose author you trust"
)


@dataclass
class FolderModel:
    """A torch model built from a Hugging Face folder, with inputs to capture it on."""

    model: Any
    example_inputs: Any
    dynamic_shapes: Any
    task: str  # "text", "vision" or "audio"
    architecture: str
    config: dict
    files: list[Path] = field(default_factory=list)  # tokenizer/processor files to copy
    notes: list[str] = field(default_factory=list)
    # Set when `model` holds its parameters on the meta device: the folder whose
    # checkpoint supplies them (by name, with the dtypes and shapes the model has).
    weights_from: Path | None = None
    model_class: Any = None
    hf_config: Any = None


def is_folder(path: str | Path) -> bool:
    """True for a directory with a config.json (a Hugging Face model folder)."""
    path = Path(path)
    return path.is_dir() and (path / "config.json").is_file()


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise Torch2MLXError(
            f"[hf] {path}: cannot read it as JSON ({error}); a Hugging Face folder needs the "
            "config.json that save_pretrained writes"
        ) from None
    if not isinstance(config, dict):
        raise Torch2MLXError(f"[hf] {path}: is not a JSON object; pass a model folder")
    return config


def tokenizer_files(folder: Path) -> list[Path]:
    """The tokenizer, processor and generation files present in ``folder``."""
    return [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()]


def copy_tokenizer_files(files: list[Path], destination: Path) -> list[str]:
    names = []
    for path in files:
        shutil.copyfile(path, destination / path.name)
        names.append(path.name)
    return names


# The transformers auto class whose mapping gives a config without `architectures` its model
# class, by the task asked (load_folder's `task`): "causal-lm" for --format generation and
# mlx-lm, the bare model otherwise, as transformers' AutoModel gives.
_AUTO_CLASSES = {None: "AutoModel", "causal-lm": "AutoModelForCausalLM"}


def _model_class(config: Any, architecture: str | None, trust_remote_code: bool) -> Any:
    import transformers

    if architecture and hasattr(transformers, architecture):
        return getattr(transformers, architecture)
    if trust_remote_code and architecture:
        from transformers.dynamic_module_utils import get_class_from_dynamic_module

        reference = (getattr(config, "auto_map", None) or {}).get("AutoModel")
        if reference:
            return get_class_from_dynamic_module(reference, config.name_or_path)
    return transformers.AutoModel


def _class_for_task(config: Any, task: str | None, folder: Path) -> Any:
    """The class transformers' auto class for ``task`` maps the config's type to: what a
    folder whose config.json names no architecture (transformers' GGUF loader writes such
    configs) is built as."""
    import transformers

    auto = _AUTO_CLASSES.get(task)
    if auto is None:
        raise Torch2MLXError(
            f"[hf] unknown task {task!r}: pass one of {', '.join(map(str, _AUTO_CLASSES))}"
        )
    mapping = getattr(transformers, auto)._model_mapping
    try:
        return mapping[type(config)]
    except KeyError:
        raise Torch2MLXError(
            f"[hf] {folder}/config.json names no architecture, and transformers' {auto} has "
            f"no class for its model_type {getattr(config, 'model_type', None)!r}: add the "
            "model class to config.json's architectures"
            + (" (--format generation and mlx-lm need a causal LM)" if task else "")
        ) from None


def _weights(folder: Path) -> dict[str, Any]:
    """The folder's state dict through torch2mlx's readers, as torch tensors sharing memory."""
    import numpy as np
    import torch

    from torch2mlx.checkpoint import load_state_dict

    try:
        arrays = load_state_dict(folder)
    except Torch2MLXError as error:
        raise Torch2MLXError(
            f"[hf] {folder}: its weights could not be read: {error}. A folder needs "
            "model.safetensors or pytorch_model.bin, or their sharded index"
        ) from None
    tensors = {}
    for name, array in arrays.items():
        if array.dtype.name == "bfloat16":
            tensors[name] = torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
        else:
            # (np.ascontiguousarray would make a 0-d array 1-d)
            tensors[name] = torch.from_numpy(np.require(array, requirements="C"))
    return tensors


def _build(
    cls: Any, config: Any, folder: Path, notes: list[str], only: set[str] | None = None
) -> Any:
    """The model with the folder's weights. transformers maps checkpoint names to the
    module's (its conversion mappings, base-model prefixes, tied heads) as it loads from a
    state dict, which torch2mlx's readers supply: transformers never opens the files.
    ``only`` keeps the tensors of those names alone (the rest is never read)."""
    import warnings

    from transformers.utils import logging

    state = _weights(folder)
    if only is not None:
        state = {name: tensor for name, tensor in state.items() if name in only}
    shown = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()  # a bar for copying tensors already in memory says nothing
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, info = cls.from_pretrained(
                None, config=config, state_dict=state, output_loading_info=True
            )
    except (RuntimeError, ValueError, KeyError) as error:
        raise Torch2MLXError(
            f"[hf] {folder}: transformers could not load the weights into "
            f"{cls.__name__} ({str(error).strip().splitlines()[0]}): the folder's "
            "config.json and weights disagree; pass the folder save_pretrained wrote"
        ) from None
    finally:
        if shown:
            logging.enable_progress_bar()
    missing = [name for name in info.get("missing_keys", ()) if "inv_freq" not in name]
    if missing:
        raise Torch2MLXError(
            f"[hf] {folder}: the weights lack {len(missing)} parameters of {cls.__name__}, "
            f"e.g. {', '.join(sorted(missing)[:4])}: the folder's config.json and weights "
            "disagree; pass the folder save_pretrained wrote"
        )
    unexpected = sorted(info.get("unexpected_keys", ()))
    if unexpected:
        notes.append(
            f"{len(unexpected)} tensors of the folder are not used by {cls.__name__} "
            f"(e.g. {', '.join(unexpected[:3])})"
        )
    return model


def _meta_model(cls: Any, config: Any, folder: Path, notes: list[str]) -> Any | None:
    """The model with its parameters on the meta device, in the checkpoint's dtypes, or None
    when the checkpoint's names or shapes are not the module's own (transformers renames
    them on load for some architectures): such a folder is built for real."""
    import torch

    from torch2mlx.checkpoint import inspect_checkpoint
    from torch2mlx.model_args import _cast_like, _parameters_on_meta

    try:
        stored = {info.name: info for info in inspect_checkpoint(folder).tensors}
    except Torch2MLXError:
        return None
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    default = torch.get_default_dtype()
    try:
        # As from_pretrained builds it: in the config's dtype, so that buffers computed from
        # the default dtype match; parameters then take the checkpoint's own.
        if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
            torch.set_default_dtype(dtype)
        with _parameters_on_meta():
            model = cls(config).eval()
    finally:
        torch.set_default_dtype(default)
    wanted: dict[str, Any] = {}
    for names in tied_names(model):
        found = [name for name in names if name in stored]
        info = stored.get(found[0]) if found else None
        if info is None or tuple(info.shape) != tuple(model.get_parameter(names[0]).shape):
            return None
        wanted.update({name: getattr(torch, info.dtype) for name in names})
    _cast_like(model, wanted)
    if not _buffers_on_meta(model, stored):
        return None
    notes.append("captured with its parameters on the meta device; weights stream from the folder")
    return model


def _buffers_on_meta(model: Any, stored: dict[str, Any]) -> bool:
    """Moves the buffers the checkpoint holds (BatchNorm statistics) to the meta device as
    well: their values come from the folder, and a real buffer beside meta parameters
    stops the capture. Buffers it does not hold (a rotary table) stay real. False when a
    stored buffer's shape differs from the module's."""
    import torch

    for prefix, module in model.named_modules():
        for name, buffer in list(module._buffers.items()):
            info = stored.get(f"{prefix}.{name}" if prefix else name)
            if buffer is None or info is None:
                continue
            if tuple(info.shape) != tuple(buffer.shape):
                return False
            dtype = getattr(torch, info.dtype)
            module._buffers[name] = torch.empty(buffer.shape, dtype=dtype, device="meta")
    return True


def tied_names(model: Any) -> list[list[str]]:
    """The names of each parameter, tied ones together (``lm_head.weight`` with the
    embedding's), in the order the module registers them."""
    groups: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(parameter), []).append(name)
    return list(groups.values())


def weight_aliases(model: Any, folder: Path) -> dict[str, str]:
    """Each parameter name the folder's checkpoint does not hold -> the name it holds that
    parameter under (a tied head, stored once as the embedding)."""
    from torch2mlx.checkpoint import inspect_checkpoint

    stored = {info.name for info in inspect_checkpoint(folder).tensors}
    aliases = {}
    for names in tied_names(model):
        found = [name for name in names if name in stored]
        aliases.update({name: found[0] for name in names if found and name not in stored})
    return aliases


def load_reduced(folder: FolderModel, layers: int) -> Any:
    """The folder's model with only its first ``layers`` layers, with their real weights and
    the real embedding and head: what verification compares a large model on."""
    import copy

    config = copy.deepcopy(folder.hf_config)
    setattr(config, layer_field(config), layers)
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = config.layer_types[:layers]
    from torch2mlx.model_args import _parameters_on_meta

    with _parameters_on_meta():
        names = {name for group in tied_names(folder.model_class(config)) for name in group}
    model = _build(folder.model_class, config, folder.weights_from, [], only=names)
    return model.eval()


# A folder whose weights exceed this is verified on a copy of its first REDUCED_LAYERS layers
# (with the real embedding, norm and head): torch and MLX then hold only those in memory.
FULL_VERIFICATION_BYTES = 2 << 30
REDUCED_LAYERS = 2


def verification_model(folder: FolderModel) -> tuple[Any, dict | None]:
    """The torch model to verify a package of ``folder`` against, and the ModelArgs fields
    its MLX model is built with for it: the whole model when it is small, else a copy of its
    first layers with the real embedding and head; (None, None) when neither fits."""
    from torch2mlx.checkpoint import inspect_checkpoint

    size = inspect_checkpoint(folder.weights_from).total_bytes
    field_name = layer_field(folder.hf_config)
    layers = getattr(folder.hf_config, field_name, None)
    if size <= FULL_VERIFICATION_BYTES:
        return _build(folder.model_class, folder.hf_config, folder.weights_from, []).eval(), None
    if isinstance(layers, int) and layers > REDUCED_LAYERS:
        return load_reduced(folder, REDUCED_LAYERS), {field_name: REDUCED_LAYERS}
    folder.notes.append(
        f"not verified: its weights ({size / 1e9:.1f} GB) are too large to hold twice, and "
        f"it has no more than {REDUCED_LAYERS} layers to compare fewer of"
    )
    return None, None


def layer_field(config: Any) -> str:
    """The config field that counts the model's layers (``n_layer`` for GPT-2)."""
    return getattr(config, "attribute_map", {}).get("num_hidden_layers", "num_hidden_layers")


def _image_size(config: Any) -> tuple[int, int]:
    size = getattr(config, "image_size", None)
    if size is None and hasattr(config, "vision_config"):
        size = getattr(config.vision_config, "image_size", None)
    if size is None:
        size = 224
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[-1])
    if isinstance(size, dict):
        return int(size.get("height", 224)), int(size.get("width", 224))
    return int(size), int(size)


def _takes(model: Any, name: str) -> bool:
    """Whether the model's forward has a parameter ``name`` (not only ``**kwargs``)."""
    import inspect

    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def example_inputs(model: Any, config: Any) -> tuple[str, Any, Any]:
    """(task, example inputs, dynamic shapes) for a transformers model, by its main input.

    Text models get input_ids, and the attention mask and token type ids (all ones, all
    zeros: transformers' own defaults) when their forward takes them, so that model.py takes
    them too, as optional inputs (``optional_inputs``). The dynamic shapes are
    ``capture.Preferred``: torch2mlx's choice, which capture relaxes if torch refuses it."""
    import torch

    from torch2mlx.capture import Preferred

    generator = torch.Generator().manual_seed(0)
    main = getattr(model, "main_input_name", "input_ids")
    batch = torch.export.Dim("batch", min=1, max=1024)
    if main == "input_ids":
        vocab = int(getattr(config, "vocab_size", 2) or 2)
        limit = getattr(config, "max_position_embeddings", None) or getattr(
            config, "n_positions", None
        )
        length = min(_TEXT_LENGTH, int(limit)) if limit else _TEXT_LENGTH
        sequence = torch.export.Dim("sequence", min=2, max=int(limit) if limit else 4096)
        inputs = {"input_ids": torch.randint(0, vocab, (_BATCH, length), generator=generator)}
        if _takes(model, "attention_mask"):
            inputs["attention_mask"] = torch.ones(_BATCH, length, dtype=torch.long)
        # (GPT-2 takes token_type_ids too, but adds no type embedding without them.)
        if _takes(model, "token_type_ids") and (getattr(config, "type_vocab_size", 0) or 0) > 0:
            inputs["token_type_ids"] = torch.zeros(_BATCH, length, dtype=torch.long)
        dynamic = {name: {0: batch, 1: sequence} for name in inputs}
        return "text", inputs, Preferred(dynamic)
    if main == "pixel_values":
        channels = int(getattr(config, "num_channels", 3) or 3)
        height, width = _image_size(config)
        pixels = torch.randn(_BATCH, channels, height, width, generator=generator)
        return "vision", {"pixel_values": pixels}, Preferred({"pixel_values": {0: batch}})
    if main == "input_values":
        samples = torch.randn(_BATCH, _AUDIO_SAMPLES, generator=generator)
        length = torch.export.Dim("samples", min=4000, max=16000 * 60)
        return (
            "audio",
            {"input_values": samples},
            Preferred({"input_values": {0: batch, 1: length}}),
        )
    raise Torch2MLXError(
        f"[hf] {type(model).__name__} takes '{main}', for which torch2mlx has no example "
        "inputs yet (it knows input_ids, pixel_values and input_values): build the model "
        "yourself and call torch2mlx.convert(model, example_inputs, out_dir)"
    )


def load_folder(
    folder: str | Path,
    *,
    trust_remote_code: bool = False,
    task: str | None = None,
    on_meta: bool = False,
) -> FolderModel:
    """The torch model of a Hugging Face folder with its weights, in eval mode, and the
    example inputs and dynamic dimensions to capture it with.

    The class is the first of config.json's ``architectures``; a config without them gets
    the class of transformers' auto class for ``task``: ``"causal-lm"`` (what --format
    generation and mlx-lm need) the causal LM, else the bare model; a note says which.
    ``on_meta`` builds it with its parameters on the meta device where the checkpoint's
    names are the module's (``weights_from`` is then set): no weight is read until the
    converter streams them."""
    import transformers

    folder = Path(folder)
    raw = read_config(folder)
    if raw.get("auto_map") and not trust_remote_code:
        raise Torch2MLXError(f"[hf] {folder}: {REMOTE_CODE_HINT}")
    architectures = raw.get("architectures") or []
    architecture = architectures[0] if architectures else None
    try:
        config = transformers.AutoConfig.from_pretrained(
            folder, local_files_only=True, trust_remote_code=trust_remote_code
        )
    except (ValueError, KeyError, OSError) as error:
        raise Torch2MLXError(
            f"[hf] {folder}/config.json: transformers {transformers.__version__} cannot build "
            f"a config from it ({str(error).splitlines()[0]}): upgrade transformers, or check "
            "the model_type"
        ) from None
    cls = _model_class(config, architecture, trust_remote_code)
    notes: list[str] = []
    if cls is transformers.AutoModel:
        cls = _class_for_task(config, task, folder)
        if architecture:
            notes.append(f"{architecture} is not in transformers: built {cls.__name__}")
        else:
            notes.append(
                f"config.json names no architecture: built {cls.__name__}, transformers' "
                f"{_AUTO_CLASSES[task]} for model_type {raw.get('model_type')!r}"
                + ("" if task else "; --format generation or mlx-lm build its causal LM")
            )
    model = _meta_model(cls, config, folder, notes) if on_meta else None
    weights_from = folder if model is not None else None
    if model is None:
        model = _build(cls, config, folder, notes)
    model.eval()
    modality, inputs, dynamic = example_inputs(model, config)
    return FolderModel(
        model=model,
        example_inputs=inputs,
        dynamic_shapes=dynamic,
        task=modality,
        architecture=type(model).__name__,
        config=raw,
        files=tokenizer_files(folder),
        notes=notes,
        weights_from=weights_from,
        model_class=cls,
        hf_config=config,
    )


# transformers' defaults for the inputs its models take as optional (a parameter that
# defaults to None): what the model computes when the caller leaves one out. Each is shaped
# as the model's main input (input_ids).
OPTIONAL_INPUTS = {"attention_mask": "ones", "token_type_ids": "zeros", "position_ids": "arange"}


def _filled(fill: str, like: Any) -> Any:
    import torch

    if fill == "arange":
        return torch.arange(like.shape[-1], dtype=like.dtype).expand(like.shape)
    return (torch.ones_like if fill == "ones" else torch.zeros_like)(like)


def _same_without(model: Any, kwargs: dict, names: list[str]) -> bool:
    """Whether the model computes the same, by the one tolerance rule, with ``names`` left
    out as with them given their default values."""
    import torch

    from torch2mlx.comparison import compare, rule_for
    from torch2mlx.verification import compute_dtype

    given = {**kwargs, **{name: _filled(OPTIONAL_INPUTS[name], kwargs[name]) for name in names}}
    left_out = {key: value for key, value in kwargs.items() if key not in names}
    with torch.no_grad():
        try:
            expected = model(**left_out)
        except Exception:  # transformers requires it after all
            return False
        actual = model(**given)
    errors = compare(expected, actual, rule_for(compute_dtype(model)))
    return all(error.passed for error in errors)


def optional_inputs(model: Any, example_inputs: Any) -> tuple[dict[str, tuple[str, str]], list]:
    """The inputs model.py lets the caller leave out, as transformers does, for
    ``_core.write_package``'s ``input_defaults`` ({input: (fill, main input)}), and notes.

    An input of a transformers model qualifies when it is one of ``OPTIONAL_INPUTS``, given
    by keyword beside the model's main input, its forward parameter defaults to None, and
    the model computes the same with it left out as with the default filled in (one forward
    each, on the example inputs): RoBERTa's positions, counted from its padding index, do
    not qualify."""
    import inspect
    import sys

    import torch

    from torch2mlx.capture import split_inputs

    transformers = sys.modules.get("transformers")  # not imported: not a transformers model
    if transformers is None:
        return {}, []
    args, kwargs = split_inputs(example_inputs)
    main = getattr(model, "main_input_name", "input_ids")
    if not isinstance(model, transformers.PreTrainedModel) or args:
        return {}, []
    if not isinstance(kwargs.get(main), torch.Tensor):
        return {}, []
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}, []
    candidates = [
        name
        for name in OPTIONAL_INPUTS
        if isinstance(kwargs.get(name), torch.Tensor)
        and name in parameters
        and parameters[name].default is None
    ]
    if not candidates:
        return {}, []
    chosen = candidates if _same_without(model, kwargs, candidates) else []
    notes = []
    if not chosen:  # find the ones that differ
        for name in candidates:
            if _same_without(model, kwargs, [name]):
                chosen.append(name)
            else:
                notes.append(
                    f"input '{name}' stays required: left out, {type(model).__name__} computes "
                    f"something else than with {OPTIONAL_INPUTS[name]} in its place"
                )
    return {name: (OPTIONAL_INPUTS[name], main) for name in chosen}, notes
