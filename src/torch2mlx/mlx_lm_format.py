"""``--format mlx-lm``: a Hugging Face language model as a folder that ``mlx_lm.load`` reads
as it is: mlx-lm's weight names and layouts (those its models hold after ``sanitize``), the
Hugging Face config.json with every field mlx-lm's ModelArgs takes written out (and its
``quantization`` block), shards of at most 5 GB with their index, and the tokenizer files.

mlx-lm implements each architecture itself, so only the architectures listed here, whose
names, layouts and config fields are known and tested, are written; the rest are refused
by name, and so are configs that mlx-lm's implementation would compute differently.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from torch2mlx import _core
from torch2mlx.checkpoint import Torch2MLXError

# model_type -> (renames of torch name prefixes to mlx-lm's, suffixes of tensors mlx-lm
# does not hold). A tied LM head is dropped too (mlx-lm computes it from the embedding).
_LLAMA_LIKE = ((), ("rotary_emb.inv_freq",))
ARCHITECTURES: dict[str, tuple[tuple[tuple[str, str], ...], tuple[str, ...]]] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    # mlx-lm's GPT2Model sits under "model."; Conv1D weights become Linear's (out, in), which
    # the registry's rule for Conv1D already does; the LM head is always the embedding.
    "gpt2": ((("transformer.", "model."),), (".attn.bias", ".attn.masked_bias", "lm_head.weight")),
}
MAX_SHARD = 5_000_000_000  # mlx-lm's MAX_FILE_SIZE_GB
VERIFY_TOKENS = 64  # enough positions for a wrong rope theta to show in the logits


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# The fields of mlx-lm's ModelArgs (mlx_lm/models/<type>.py, 0.32) per model_type. Each is
# written into config.json from the transformers config the model was built with, so that
# mlx-lm never falls back on a default of its own: its llama reads a top-level rope_theta
# (10000 when absent), where transformers 5 nests the theta in rope_parameters.
_LLAMA_FIELDS = _names(
    "model_type hidden_size num_hidden_layers intermediate_size num_attention_heads "
    "rms_norm_eps vocab_size head_dim max_position_embeddings num_key_value_heads "
    "attention_bias mlp_bias rope_theta rope_traditional rope_scaling tie_word_embeddings "
    "layer_types sliding_window"
)
MLX_LM_FIELDS: dict[str, tuple[str, ...]] = {
    "llama": _LLAMA_FIELDS,
    "mistral": _LLAMA_FIELDS,  # mlx-lm runs mistral as llama (MODEL_REMAPPING)
    "qwen2": _names(
        "model_type hidden_size num_hidden_layers intermediate_size num_attention_heads "
        "rms_norm_eps vocab_size num_key_value_heads max_position_embeddings rope_theta "
        "rope_traditional rope_scaling tie_word_embeddings"
    ),
    "qwen3": _names(
        "model_type hidden_size num_hidden_layers intermediate_size num_attention_heads "
        "rms_norm_eps vocab_size num_key_value_heads max_position_embeddings head_dim "
        "tie_word_embeddings rope_theta rope_scaling rope_parameters"
    ),
    "gpt2": _names(
        "model_type n_ctx n_embd n_head n_layer n_positions layer_norm_epsilon vocab_size "
        "num_key_value_heads"
    ),
}

# What mlx-lm's implementations fix that transformers lets a config choose: model_type ->
# {attribute: the values mlx-lm computes with}, a callable of the config where they depend
# on other fields. A config with another value is refused: mlx-lm would load it and
# compute something else.
FIXED: dict[str, dict[str, Any]] = {
    "llama": {"hidden_act": ("silu",)},
    "mistral": {"hidden_act": ("silu",)},
    # mlx-lm's qwen2 derives the head size from hidden_size; its q/k/v carry a bias, o none.
    "qwen2": {
        "hidden_act": ("silu",),
        "head_dim": lambda c: (None, c.hidden_size // c.num_attention_heads),
    },
    "qwen3": {"hidden_act": ("silu",), "attention_bias": (False,)},
    # mlx-lm's GPT-2: tanh GELU, an MLP of 4 * n_embd, 1/sqrt(head_dim) attention scale,
    # and the LM head always the token embedding.
    "gpt2": {
        "activation_function": ("gelu_new", "gelu_pytorch_tanh"),
        "n_inner": lambda c: (None, 4 * c.n_embd),
        "scale_attn_weights": (True,),
        "scale_attn_by_inverse_layer_idx": (False,),
        "tie_word_embeddings": (True,),
    },
}


def _rename(name: str, renames: tuple[tuple[str, str], ...]) -> str:
    for old, new in renames:
        if name.startswith(old):
            return new + name[len(old) :]
        if name == old.rstrip("."):
            return new.rstrip(".")
    return name


def _rope_parameters(config: Any) -> dict[str, Any]:
    """transformers' rope parameters, one flat dict: transformers 5's ``rope_parameters``
    (theta included), or the ``rope_theta`` and ``rope_scaling`` of older configs."""
    params = dict(getattr(config, "rope_parameters", None) or {})
    if any(isinstance(value, dict) for value in params.values()):
        raise Torch2MLXError(
            f"[mlx-lm] {config.model_type}: rope parameters per layer type "
            f"({', '.join(params)}) are not something mlx-lm's {config.model_type} reads; "
            "convert it to a torch2mlx package instead (leave out --format)"
        )
    if "rope_theta" not in params and getattr(config, "rope_theta", None) is not None:
        params["rope_theta"] = config.rope_theta
    params["rope_type"] = params.pop("type", None) or params.get("rope_type") or "default"
    return params


def _yarn(params: dict[str, Any], config: Any) -> dict[str, Any]:
    """YaRN as mlx-lm's YarnRoPE reads it. Its defaults differ from transformers' (an
    original context of 4096, not max_position_embeddings) and it takes no
    attention_factor: that is written as the mscale that gives it (with mscale_all_dim 0),
    and transformers' own rule (mscale / mscale_all_dim only when both are set) is made
    explicit. transformers' keys stay, so that it reads the dict as before."""
    if params.get("truncate", True) is False:
        raise Torch2MLXError(
            "[mlx-lm] yarn rope with truncate=false: mlx-lm always truncates the correction "
            "range, so its positions would differ; convert it to a torch2mlx package instead"
        )
    original = params.get("original_max_position_embeddings") or config.max_position_embeddings
    factor = params.get("factor") or config.max_position_embeddings / original
    attention = params.get("attention_factor")
    mscale, mscale_all_dim = params.get("mscale"), params.get("mscale_all_dim")
    if attention is not None:
        if factor <= 1 and attention != 1:
            raise Torch2MLXError(
                f"[mlx-lm] yarn rope with factor {factor} and attention_factor {attention}: "
                "mlx-lm scales attention only for a factor above 1; convert it to a "
                "torch2mlx package instead"
            )
        mscale = (attention - 1) / (0.1 * math.log(factor)) if factor > 1 else 1.0
        mscale_all_dim = 0.0
    elif not (mscale and mscale_all_dim):
        mscale, mscale_all_dim = 1.0, 0.0
    return {
        **params,
        "factor": factor,
        "original_max_position_embeddings": original,
        "beta_fast": params.get("beta_fast") or 32,
        "beta_slow": params.get("beta_slow") or 1,
        "mscale": mscale,
        "mscale_all_dim": mscale_all_dim,
    }


def _llama3(params: dict[str, Any], config: Any) -> dict[str, Any]:
    """Llama 3's rope with transformers' values made explicit (mlx-lm's own default
    original context is 8192, transformers' the config's max_position_embeddings)."""
    return {
        **params,
        "low_freq_factor": params.get("low_freq_factor", 1.0),
        "high_freq_factor": params.get("high_freq_factor", 4.0),
        "original_max_position_embeddings": params.get("original_max_position_embeddings")
        or config.max_position_embeddings,
    }


# transformers' rope_type -> the rope_scaling dict mlx-lm's rope_utils.initialize_rope
# reads (None: plain rope). linear scales positions by 1 / factor in both; dynamic (NTK)
# rescales the base past max_position_embeddings, which mlx-lm reads from the top level.
ROPE_SCALING: dict[str, Any] = {
    "default": lambda params, config: None,
    "linear": lambda params, config: dict(params),
    "dynamic": lambda params, config: dict(params),
    "llama3": _llama3,
    "yarn": _yarn,
}


def rope_fields(config: Any) -> dict[str, Any]:
    """``rope_theta`` and ``rope_scaling`` as mlx-lm reads them, from transformers'
    parameters; a rope type mlx-lm computes differently (longrope, ...) is refused."""
    params = _rope_parameters(config)
    rope_type = params["rope_type"]
    if rope_type not in ROPE_SCALING:
        raise Torch2MLXError(
            f"[mlx-lm] rope type '{rope_type}' is not one --format mlx-lm translates for "
            f"mlx-lm (it knows {', '.join(ROPE_SCALING)}); convert it to a torch2mlx package "
            "instead (leave out --format)"
        )
    if params.get("rope_theta") is None:
        raise Torch2MLXError(
            f"[mlx-lm] {config.model_type}: the config has no rope theta; pass the "
            "config.json that save_pretrained wrote"
        )
    return {
        "rope_theta": float(params["rope_theta"]),
        "rope_scaling": ROPE_SCALING[rope_type](params, config),
        "rope_traditional": False,  # transformers rotates halves (rotate_half), not pairs
    }


def _field(config: Any, name: str) -> Any:
    """One ModelArgs field's value as transformers computes with it."""
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None)
    derived = {
        "head_dim": lambda: getattr(config, "head_dim", None) or config.hidden_size // heads,
        "num_key_value_heads": lambda: getattr(config, "num_key_value_heads", None) or heads,
        "attention_bias": lambda: bool(getattr(config, "attention_bias", False)),
        "mlp_bias": lambda: bool(getattr(config, "mlp_bias", False)),
        "tie_word_embeddings": lambda: bool(getattr(config, "tie_word_embeddings", False)),
        # mlx-lm's llama applies a window only on layers typed sliding and needs one full
        # layer; transformers' llama and mistral type none (see _notes for mistral).
        "layer_types": lambda: ["full_attention"] * config.num_hidden_layers,
        "sliding_window": lambda: getattr(config, "sliding_window", None),
        "n_ctx": lambda: config.n_positions,
        "rope_parameters": lambda: _rope_parameters(config),
    }
    if name in derived:
        return derived[name]()
    return getattr(config, name)


def mlx_lm_config(config: Any) -> dict[str, Any]:
    """Every field mlx-lm's ModelArgs takes for ``config``'s model_type, from the
    transformers config; refuses a config whose FIXED values mlx-lm does not compute."""
    model_type = config.model_type
    for name, allowed in FIXED[model_type].items():
        values = allowed(config) if callable(allowed) else allowed
        value = getattr(config, name, None)
        if value not in values:
            raise Torch2MLXError(
                f"[mlx-lm] {model_type} with {name}={value!r}: mlx-lm's {model_type} computes "
                f"with {' or '.join(repr(v) for v in values)} only, so its output would "
                "differ; convert it to a torch2mlx package instead (leave out --format)"
            )
    rope = rope_fields(config) if "rope_theta" in MLX_LM_FIELDS[model_type] else {}
    return {
        name: rope[name] if name in rope else _field(config, name)
        for name in MLX_LM_FIELDS[model_type]
    }


def _notes(config: Any) -> list[str]:
    """What mlx-lm computes differently from transformers beyond the verified length."""
    window = getattr(config, "sliding_window", None)
    sliding = config.model_type == "mistral" or getattr(config, "use_sliding_window", False)
    if sliding and window and window < getattr(config, "max_position_embeddings", 0):
        return [
            f"mlx-lm's {config.model_type} attends over the whole context: beyond the "
            f"sliding window of {window} tokens its output differs from transformers'"
        ]
    return []


def _check_destination(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise Torch2MLXError(f"[mlx-lm] {out_dir} exists and is not a directory; choose another -o")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        ours = (out_dir / "config.json").is_file() and any(out_dir.glob("model*.safetensors"))
        if not ours:
            raise Torch2MLXError(
                f"[mlx-lm] {out_dir} is a non-empty directory that is not a model folder; "
                "refusing to replace it: choose an empty or new directory"
            )


def _streamed_source(folder: Any, renames, drops) -> Path | None:
    """The folder itself as the weights' source, when its model was built on the meta device
    and its checkpoint already holds mlx-lm's names (no rename, nothing to drop): the
    weights then stream from its shards, a shard at a time. None otherwise."""
    from torch2mlx.checkpoint import inspect_checkpoint

    if folder.weights_from is None or renames:
        return None
    names = [info.name for info in inspect_checkpoint(folder.weights_from).tensors]
    if any(name.endswith(suffix) for name in names for suffix in drops):
        return None
    return Path(folder.weights_from)


def _state_arrays(model: Any, renames, drops, tied: bool) -> dict[str, Any]:
    import ml_dtypes
    import torch

    arrays = {}
    for name, tensor in model.state_dict().items():
        if any(name.endswith(suffix) for suffix in drops):
            continue
        if tied and name == "lm_head.weight":
            continue
        tensor = tensor.detach().cpu().contiguous()
        if tensor.dtype == torch.bfloat16:
            array = tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        else:
            array = tensor.numpy()
        arrays[_rename(name, renames)] = array
    return arrays


def write_mlx_lm(
    folder: Any,
    out_dir: str | Path,
    *,
    quantize: dict | None = None,
    dtype: str | None = None,
    shard_size: int = MAX_SHARD,
    verify: bool = True,
) -> dict[str, Any]:
    """Writes ``folder`` (a ``torch2mlx.hf.FolderModel``) for mlx-lm into ``out_dir``,
    atomically; with ``verify``, loads it with mlx-lm and compares its logits with torch's."""
    from torch2mlx.checkpoint import save_safetensors
    from torch2mlx.conversion import _move_into_place
    from torch2mlx.hf import copy_tokenizer_files
    from torch2mlx.quantization import config_block, core_layers, plan_from
    from torch2mlx.weights import module_map, quantizable_layers

    model_type = folder.config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise Torch2MLXError(
            f"[mlx-lm] model_type '{model_type}' ({folder.architecture}) is not one that "
            f"--format mlx-lm writes (it knows {', '.join(sorted(ARCHITECTURES))}); convert "
            "it to a torch2mlx package instead (leave out --format)"
        )
    if folder.task != "text":
        raise Torch2MLXError(f"[mlx-lm] {folder.architecture} is not a language model")
    if shard_size > MAX_SHARD:
        raise Torch2MLXError("[mlx-lm] mlx-lm reads shards of at most 5 GB: lower --shard-size")
    renames, drops = ARCHITECTURES[model_type]
    streamed = _streamed_source(folder, renames, drops)
    if folder.weights_from is not None and streamed is None:
        from torch2mlx.hf import load_folder

        folder = load_folder(folder.weights_from)  # names to change: the model's own tensors
    # The folder's config.json stays (transformers and the tokenizer read it), with mlx-lm's
    # fields written over it from the config transformers built the model with.
    fields = mlx_lm_config(folder.model.config)
    config = {**folder.config, **fields}
    tied = fields.get("tie_word_embeddings", True)  # mlx-lm's GPT-2 always ties
    plan = plan_from(quantize)
    modules = [
        (_rename(path, renames), kind, groups) for path, kind, groups in module_map(folder.model)
    ]
    table = plan.layers(quantizable_layers(modules)) if plan is not None else {}

    out_dir = Path(out_dir)
    _check_destination(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent)
    )
    try:
        with tempfile.TemporaryDirectory(prefix=".torch-", dir=staging) as scratch:
            source = streamed
            if source is None:
                source = Path(scratch) / "model.safetensors"
                save_safetensors(source, _state_arrays(folder.model, renames, drops, tied))
            report = _core.convert_weights(
                os.fspath(source),
                os.fspath(staging / "model.safetensors"),
                modules,
                dtype,
                plan.default.bits if plan else 0,
                plan.default.group_size if plan else 64,
                shard_size,
                False,
                True,  # norms and other tensors no layer rule covers are kept as they are
                {"format": "mlx"},
                "",
                None,
                None,
                plan.default.mode if plan else "affine",
                core_layers(table),
            )
        quantized = {
            target.rsplit(".", 1)[0]
            for _, target, _, _ in report["tensors"]
            if target.endswith(".scales")
        }
        notes = [note for note in report["notes"] if note.startswith("not quantized")]
        notes += _notes(folder.model.config)
        if plan is not None:
            block = config_block(
                plan,
                {path: spec for path, spec in table.items() if path in quantized or spec is None},
            )
            config["quantization"] = block
            config["quantization_config"] = block
            notes.append(f"quantized {len(quantized)} layers ({plan.default.mode})")
        if dtype:
            config["torch_dtype"] = dtype
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        files = [Path(name).name for name in report["files"]]
        files += copy_tokenizer_files(
            [path for path in folder.files if path.name != "config.json"], staging
        )
        verification = _verify(staging, folder, plan is not None, dtype) if verify else None
        _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {
        "model_type": model_type,
        "files": ["config.json", *files],
        "notes": notes,
        "verification": verification,
    }


def verify_ids(config: Any, batch: int = 1) -> Any:
    """The tokens the check runs on: seeded random ids, VERIFY_TOKENS positions (fewer only
    where the model has fewer). A few positions would not do: a wrong rope theta hardly
    moves the first ones. One sequence: mlx-lm runs a batch as it runs each of its rows."""
    import torch

    vocab = int(getattr(config, "vocab_size", 2) or 2)
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 0)
    length = min(VERIFY_TOKENS, int(limit)) if limit else VERIFY_TOKENS
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, vocab, (batch, length), generator=generator)


def _torch_logits(model: Any, ids: Any, dtype: str | None = None) -> Any:
    """torch's logits as numpy, in ``dtype`` (the model's own when None), or None where
    the model cannot run in it (too large for a float64 copy, a missing kernel)."""
    import torch

    from torch2mlx.verification import cast_floating

    with torch.no_grad():
        if dtype is None:
            return model(input_ids=ids, use_cache=False).logits.float().numpy()
        with cast_floating(model, dtype) as cast:
            if not cast:
                return None
            try:
                logits = model(input_ids=ids, use_cache=False).logits
            except RuntimeError:
                return None
            return logits.double().numpy() if dtype == "float64" else logits.float().numpy()


def _verify(
    directory: Path, folder: Any, quantized: bool, dtype: str | None = None
) -> dict[str, Any] | None:
    """mlx-lm's own load of ``directory`` and its logits against torch's on `verify_ids`,
    judged by the one rule (torch2mlx.comparison) against torch in float64 where the model
    allows, torch's own error measured in the dtype the folder was written in; a quantized
    folder's errors are reported, not judged. None when mlx-lm is not installed."""
    try:
        from mlx_lm.utils import load_model
    except ImportError:
        return None
    import mlx.core as mx
    import numpy as np

    from torch2mlx.comparison import judge, rule_for
    from torch2mlx.verification import compute_dtype

    torch_model, override = _torch_reference(folder)
    written = json.loads((directory / "config.json").read_text())
    if override and isinstance(written.get("layer_types"), list):
        # mlx-lm builds one layer per entry of layer_types, whatever the count says.
        count = next(iter(override.values()))
        override["layer_types"] = written["layer_types"][:count]
    try:
        model, _ = load_model(directory, strict=override is None, model_config=override)
    except Exception as error:  # mlx-lm raises many types; keep its message
        raise Torch2MLXError(
            f"[mlx-lm] mlx_lm could not load the folder written for {folder.architecture}: "
            f"{type(error).__name__}: {error}; this is a torch2mlx bug: please report it with "
            "the model's config.json"
        ) from None
    ids = verify_ids(torch_model.config)
    compute = compute_dtype(torch_model, dtype)
    expected = _torch_logits(torch_model, ids)
    exact, exact_dtype = _torch_logits(torch_model, ids, "float64"), "float64"
    if exact is None and compute in ("bfloat16", "float16"):
        # Too large for a float64 copy: float32 is exact far below half precision.
        exact, exact_dtype = _torch_logits(torch_model, ids, "float32"), "float32"
    own = (
        _torch_logits(torch_model, ids, compute) if compute != compute_dtype(torch_model) else None
    )
    got = np.array(model(mx.array(ids.numpy())).astype(mx.float32))
    rule = rule_for(compute)
    verdict = judge(expected, got, rule, exact, own, exact_dtype)
    return {
        "tokens": list(ids.shape),
        "max_abs_error": verdict.max_abs_error,
        "cosine_similarity": verdict.cosine_similarity,
        "reference": verdict.reference,
        "error": verdict.error,
        "torch_error": verdict.torch_error,
        "bound": verdict.bound,
        "rule": rule.describe(),
        "reduced": override,
        "passed": None if quantized else verdict.passed,
    }


def _torch_reference(folder: Any) -> tuple[Any, dict | None]:
    """The torch model mlx-lm's logits are compared with, and the config fields mlx-lm
    builds its model with for it: the folder's own model, or for a model built on the meta
    device the one `hf.verification_model` gives (a copy of its first layers when large)."""
    from torch2mlx.hf import verification_model

    if folder.weights_from is None:
        return folder.model, None
    model, override = verification_model(folder)
    if model is None:
        raise Torch2MLXError(f"[mlx-lm] {folder.weights_from}: {folder.notes[-1]}")
    return model, override
