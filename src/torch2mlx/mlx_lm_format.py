"""``--format mlx-lm``: a Hugging Face language model as a folder that ``mlx_lm.load`` reads
as it is: mlx-lm's weight names and layouts (those its models hold after ``sanitize``), the
Hugging Face config.json plus mlx-lm's ``quantization`` block, shards of at most 5 GB with
their index, and the tokenizer files.

mlx-lm implements each architecture itself, so only the architectures listed here, whose
names and layouts are known and tested, are written; the rest are refused by name.
"""

from __future__ import annotations

import json
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
# Config keys mlx-lm's ModelArgs require that recent transformers no longer write: key ->
# the key whose value it takes.
CONFIG_ALIASES: dict[str, dict[str, str]] = {"gpt2": {"n_ctx": "n_positions"}}
MAX_SHARD = 5_000_000_000  # mlx-lm's MAX_FILE_SIZE_GB


def _rename(name: str, renames: tuple[tuple[str, str], ...]) -> str:
    for old, new in renames:
        if name.startswith(old):
            return new + name[len(old) :]
        if name == old.rstrip("."):
            return new.rstrip(".")
    return name


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
    config = dict(folder.config)
    for key, other in CONFIG_ALIASES.get(model_type, {}).items():
        if key not in config and other in config:
            config[key] = config[other]
    tied = bool(config.get("tie_word_embeddings", model_type == "gpt2"))
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
        verification = _verify(staging, folder, plan is not None) if verify else None
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


def _verify(directory: Path, folder: Any, quantized: bool) -> dict[str, Any] | None:
    """mlx-lm's own load of ``directory`` and its logits against torch's on the folder's
    example tokens, judged by the one rule (torch2mlx.comparison) against torch in float64
    where the model allows; a quantized folder's errors are reported, not judged. None when
    mlx-lm is not installed."""
    try:
        from mlx_lm.utils import load_model
    except ImportError:
        return None
    import mlx.core as mx
    import numpy as np
    import torch

    from torch2mlx.comparison import judge, rule_for
    from torch2mlx.verification import compute_dtype, exact_run

    torch_model, override = _torch_reference(folder)
    try:
        model, _ = load_model(directory, strict=override is None, model_config=override)
    except Exception as error:  # mlx-lm raises many types; keep its message
        raise Torch2MLXError(
            f"[mlx-lm] mlx_lm could not load the folder written for {folder.architecture}: "
            f"{type(error).__name__}: {error}; this is a torch2mlx bug: please report it with "
            "the model's config.json"
        ) from None
    ids = folder.example_inputs["input_ids"]
    rule = rule_for(compute_dtype(torch_model))
    with torch.no_grad():
        expected = torch_model(input_ids=ids, use_cache=False).logits.float().numpy()
        exact, exact_dtype = exact_run(
            torch_model,
            lambda: torch_model(input_ids=ids, use_cache=False).logits.double().numpy(),
            rule.compute_dtype,
        )
    got = np.array(model(mx.array(ids.numpy())).astype(mx.float32))
    verdict = judge(expected, got, rule, exact, reference_dtype=exact_dtype)
    return {
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
    from torch2mlx.hf import layer_field, verification_model

    if folder.weights_from is None:
        return folder.model, None
    field = layer_field(folder.hf_config)
    model, override = verification_model(folder, {field: getattr(folder.hf_config, field)})
    if model is None:
        raise Torch2MLXError(f"[mlx-lm] {folder.weights_from}: {folder.notes[-1]}")
    return model, override
