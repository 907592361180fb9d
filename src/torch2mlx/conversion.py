"""``torch2mlx.convert``: a live model or a .pt2 archive to a self-contained MLX package.

The package directory holds model.py (MLX only), model.safetensors (or shards), config.json
and report.json. It is assembled in a temporary sibling directory and swapped into place at
the end, so a failed or killed conversion leaves the destination as it was.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch2mlx import _core
from torch2mlx.checkpoint import Torch2MLXError
from torch2mlx.comparison import as_dicts, rule_for, summary_lines
from torch2mlx.numerics import OUTPUT_DTYPES
from torch2mlx.runtime import check_package


class VerificationWarning(UserWarning):
    """The converted model does not match torch within tolerance."""


@dataclass
class ConversionResult:
    """What ``convert`` wrote and how the MLX model compared with torch."""

    out_dir: Path
    passed: bool | None  # None: not verified
    config: dict
    report: dict
    summary: list[str] = field(default_factory=list)

    @property
    def model_py(self) -> Path:
        return self.out_dir / "model.py"


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # not installed
        return None


def _rename_exchange(a: Path, b: Path) -> bool:
    """Atomically swaps two paths (Linux renameat2 RENAME_EXCHANGE); False if unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0


def _check_destination(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise Torch2MLXError(
            f"[convert] {out_dir} exists and is not a directory; choose another -o"
        )
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "model.py").exists():
        raise Torch2MLXError(
            f"[convert] {out_dir} is a non-empty directory that is not a torch2mlx package; "
            "refusing to replace it: choose an empty or new directory"
        )


def _move_into_place(staging: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        os.rename(staging, out_dir)
        return
    if _rename_exchange(staging, out_dir):
        shutil.rmtree(staging)  # now holds the previous package
        return
    backup = staging.with_name(staging.name + ".old")
    os.rename(out_dir, backup)
    os.rename(staging, out_dir)
    shutil.rmtree(backup)


def _mlx_inputs(args: tuple, kwargs: dict, dtype: str | None) -> tuple[tuple, dict]:
    import mlx.core as mx
    import numpy as np
    import torch

    def convert(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            is_bf16 = value.dtype == torch.bfloat16
            array = mx.array(value.detach().cpu().float().numpy() if is_bf16 else value.numpy())
            if is_bf16:
                array = array.astype(mx.bfloat16)
            if dtype and value.is_floating_point():
                array = array.astype(getattr(mx, dtype))
            return array
        if isinstance(value, (tuple, list)):
            return type(value)(convert(item) for item in value)
        if isinstance(value, dict):
            return {key: convert(item) for key, item in value.items()}
        if isinstance(value, np.ndarray):
            return mx.array(value)
        return value

    return convert(args), convert(kwargs)


def _verify(
    module: Any,
    args: tuple,
    kwargs: dict,
    package: Path,
    dtype: str | None,
    atol: float | None,
    model_args: dict | None = None,
) -> tuple[dict, list[str]]:
    from torch2mlx.verification import verify

    # Outputs only first; the module-by-module comparison runs when they differ, to name
    # the first module that diverges.
    options = {"atol": atol, "model_args": model_args}
    result = verify(module, package, (args, kwargs), layers=False, **options)
    if not result.passed:
        result = verify(module, package, (args, kwargs), layers=True, **options)
    report = {
        "verified": True,
        "passed": result.passed,
        "tolerance": result.tolerance,
        "outputs": as_dicts(result.outputs),
        "seconds": {"torch": result.seconds["torch"], "mlx_first_call": result.seconds["mlx"]},
        "environment": result.environment,
    }
    lines = summary_lines(result.outputs, rule_for(result.tolerance["compute_dtype"], atol))
    if result.first_divergence is not None:
        culprit = result.first_divergence
        report["first_divergence"] = asdict(culprit)
        lines.append(
            f"  first divergence: {culprit.path} ({culprit.type}) at "
            f"{culprit.source_line or 'an unknown line'}: {culprit.explanation}"
        )
    return report, lines


def _config(info: dict, source: str, dtype: str | None) -> dict:
    ranges = {symbol: {"min": low, "max": high} for symbol, (low, high) in info["ranges"].items()}
    dynamic = sorted({dim for item in info["inputs"] for dim in item["shape"] if not dim.isdigit()})
    return {
        "format": "torch2mlx-package",
        "source": source,
        "dtype": dtype or "as exported",
        "inputs": info["inputs"],
        "dynamic_dims": {name: ranges.get(name, {"min": None, "max": None}) for name in dynamic},
        "specialized": not dynamic,
        "specialization_note": (
            "every input shape is fixed to the example inputs; pass dynamic_shapes to "
            "torch2mlx.convert (or export with torch.export.Dim) to run other sizes"
            if not dynamic
            else "dimensions listed in dynamic_dims may vary within their range"
        ),
        # Names inside the package: the files were written in a staging folder.
        "weights": [Path(name).name for name in info["weight_files"]],
        "layout_transposes": info["transposes"],
        "notes": info["notes"],
        "versions": {
            "torch2mlx": _version("torch2mlx"),
            "torch": info["torch_version"],
            "mlx": _version("mlx"),
            "export_schema": list(info["schema_version"]),
        },
    }


def convert(
    model: Any,
    example_inputs: Any = None,
    out_dir: str | Path = "mlx_model",
    dynamic_shapes: Any = None,
    dtype: str | None = None,
    verify: bool = True,
    *,
    tolerance: float | None = None,
    shard_size: int = 5_000_000_000,
    quiet: bool = False,
    dump_ir: str | None = None,
    quantize: dict | None = None,
    extra_files: list[Path] | None = None,
    config_extra: dict | None = None,
    model_args: bool | None = None,
    weights_from: str | Path | None = None,
    reference: tuple[Any, dict | None] | None = None,
) -> ConversionResult:
    """Converts a model to an MLX package in ``out_dir`` and (by default) verifies it.

    ``model`` is a ``torch.nn.Module`` (captured with ``torch.export`` on ``example_inputs``,
    a tensor, a tuple of them, or a dict of keyword inputs) or the path of a ``.pt2`` archive.
    ``dynamic_shapes`` goes to ``torch.export``. ``dtype`` casts the weights ("float16",
    "bfloat16", "float32"). When verification fails the package is still written, with
    ``report.json`` saying so, and ``result.passed`` is False. ``dump_ir`` names a pass
    (``"input"`` for none yet) after which the graph IR is printed to stderr.

    ``quantize`` (``{"bits", "group_size", "mode", "recipe", "predicate"}``, see
    ``torch2mlx.quantization``) quantizes the package's ``mlx.nn.Linear`` and
    ``mlx.nn.Embedding`` layers bit for bit as ``mx.quantize``; config.json records the
    setting per layer as mlx-lm does, and ``torch2mlx.load`` applies it. A quantized model is
    compared with torch's float model and the errors reported, but judged only against an
    explicit ``tolerance``. ``extra_files`` (tokenizer files...) are copied into the package
    and ``config_extra`` is merged into config.json.

    A model built from a Hugging Face config gets a model.py that reads its sizes from a
    ``ModelArgs`` dataclass (config.json's ``model_args``), so that one model.py serves every
    size of the architecture: the model is captured once more per numeric config field, on
    the meta device (torch2mlx.model_args). ``model_args=False`` skips this; ``True`` asks
    for it, and is an error for a model without such a config.

    ``weights_from`` (a checkpoint file or Hugging Face folder) says that ``model`` holds its
    parameters on the meta device: it is captured so, and the weights stream from that
    checkpoint by name into the package, so memory stays bounded by a shard. Such a model
    cannot run, so ``reference`` gives the torch model that verification (and the check of
    optional inputs) runs instead, and the ModelArgs fields the MLX model is built with for
    it (a copy of the first layers, ``{"num_hidden_layers": 2}``, or None for the whole).

    A ``transformers`` model's attention_mask, token_type_ids and position_ids, when given
    by keyword, are optional in model.py as in transformers (all ones, zeros, arange) if
    the model computes the same without them (``hf.optional_inputs``); config.json's
    ``inputs`` marks them with their ``default``. Fallbacks capture took (fixed sizes where
    torch refused dynamic ones) are in config.json's ``notes``.
    """
    from torch2mlx.analyze import harmless_in_place
    from torch2mlx.capture import (
        capture_model,
        decompose_untranslated,
        save_program,
        split_inputs,
        without_cache_outputs,
    )
    from torch2mlx.hf import optional_inputs, weight_aliases
    from torch2mlx.model_args import _on_meta, config_values, is_configured, probe_spec
    from torch2mlx.quantization import plan_from

    live = not isinstance(model, (str, Path))
    if model_args and not (live and is_configured(model)):
        raise Torch2MLXError(
            "[convert] model_args=True needs a model built from a Hugging Face config "
            "(model.config), whose fields ModelArgs would hold"
        )
    if dtype is not None and dtype not in OUTPUT_DTYPES:
        raise Torch2MLXError(
            f"[convert] dtype must be one of {', '.join(OUTPUT_DTYPES)}, not {dtype!r}"
        )
    out_dir = Path(out_dir)
    _check_destination(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent)
    )
    decomposed: list[str] = []
    harmless: list[dict] = []
    # Captured and verified alike without a KV cache in the outputs (Hugging Face decoders).
    restore = contextlib.ExitStack()
    if not isinstance(model, (str, Path)):
        restore.enter_context(without_cache_outputs(model, split_inputs(example_inputs)[1]))
    if reference and reference[0] is not None:
        restore.enter_context(without_cache_outputs(reference[0], split_inputs(example_inputs)[1]))
    try:
        with tempfile.TemporaryDirectory(prefix="torch2mlx-") as scratch:
            capture_notes: list[str] = []
            defaults: dict = {}
            if isinstance(model, (str, Path)):
                archive = Path(model)
                source = str(archive)
                module = None
            else:
                capture_inputs = _on_meta(example_inputs) if weights_from else example_inputs
                captured = capture_model(model, capture_inputs, dynamic_shapes)
                capture_notes = captured.notes
                harmless = harmless_in_place(captured.program)  # before functionalization
                program, decomposed = decompose_untranslated(captured.program)
                archive = save_program(program, Path(scratch) / "model.pt2")
                source = f"{type(model).__module__}.{type(model).__qualname__}"
                module = model
                # A model on the meta device cannot run: its reference copy shows the same.
                semantics = reference[0] if weights_from and reference else model
                defaults, default_notes = (
                    optional_inputs(semantics, example_inputs)
                    if semantics is not None
                    else ({}, [])
                )
                capture_notes = [*capture_notes, *default_notes]
            spec, probe_notes = None, []
            if module is not None and model_args is not False and is_configured(model):
                # Probes are captured with the shapes that worked for the model itself.
                spec, probe_notes = probe_spec(model, example_inputs, captured.dynamic_shapes)
            info = _core.write_package(
                str(archive),
                str(staging),
                dtype=dtype,
                shard_bytes=shard_size,
                dump_ir_after=dump_ir or "",
                model_args=spec,
                weights_from=str(weights_from) if weights_from else None,
                weight_aliases=weight_aliases(model, Path(weights_from)) if weights_from else {},
                input_defaults=defaults,
            )
            info["notes"] = [*capture_notes, *info["notes"], *probe_notes]
            fields = config_values(info["model_args"]) if info["model_args"] else None
            # Whatever verify says: a broken package is never written.
            check_package(staging, model_args=fields)
            analysis = _analysis(model, archive, decomposed, harmless)
            plan = plan_from(quantize)
            quantization = None
            if plan is not None:
                quantization, weight_files, quantize_notes = _quantize_package(
                    staging, plan, shard_size, info["direct_weights"], fields
                )
                info["weight_files"] = weight_files
                info["notes"] = [*info["notes"], *quantize_notes]
                check_package(staging, quantization, fields)
            if module is None and verify:
                module, example_inputs = _module_from_archive(archive, example_inputs)
        # The module calls verification observes, where they sit in the MLX tree, and the
        # axis order of their values (verification.py).
        (staging / "modules.json").write_text(json.dumps(info["modules"], indent=1) + "\n")
        config = _config(info, source, dtype)
        if fields is not None:
            config["model_args"] = fields
        config["decomposed_ops"] = decomposed
        if quantization is not None:
            config["quantization"] = quantization
        if extra_files:
            from torch2mlx.hf import copy_tokenizer_files

            config["files"] = copy_tokenizer_files(list(extra_files), staging)
        config.update(config_extra or {})
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        report: dict = {"verified": False, "passed": None}
        lines: list[str] = []
        override = None
        if verify and weights_from is not None:
            module, override = reference or (None, None)
            if override and not set(override) <= set(fields or {}):
                # model.py does not read the layer count, so no shorter copy can be built.
                module = None
            if module is None:
                report["reason"] = (
                    "no torch model to compare with: its weights are on the meta device and "
                    "it is too large to build twice, or model.py does not read its layer count "
                    "from ModelArgs (--no-model-args?) for a copy of its first layers"
                )
        if verify and module is not None:
            args, kwargs = split_inputs(example_inputs)
            report, lines = _verify(module, args, kwargs, staging, dtype, tolerance, override)
            if override:
                report["reduced"] = override
                lines.append(f"  compared on a reduced copy: {override}")
            if quantization is not None and tolerance is None:
                report["passed"] = None
                report["quantized"] = True
                report["reason"] = (
                    "quantized: compared with torch's float model and reported, not judged; "
                    "pass a tolerance to judge it"
                )
                lines[-1] = (
                    f"  quantized ({quantization['mode']}): errors against torch's float model"
                )
        elif verify:
            report["reason"] = "torch is not installed, so there is nothing to compare against"
        report["decomposed_ops"] = decomposed
        report["analysis"] = analysis
        (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        restore.close()
    result = ConversionResult(out_dir, report.get("passed"), config, report, lines)
    if not quiet and lines:
        print(f"torch2mlx: verified {out_dir} against torch:", file=sys.stderr)
        print("\n".join(lines), file=sys.stderr)
    if result.passed is False:
        warnings.warn(
            f"{out_dir}: the MLX model does not match torch within tolerance; see report.json",
            VerificationWarning,
            stacklevel=2,
        )
    return result


def _analysis(model: Any, archive: Path, decomposed: list[str], harmless: list[dict]) -> dict:
    """The portability report of the graph just translated (docs/analyzer.md)."""
    from torch2mlx.analyze import report_for_package

    live = None if isinstance(model, (str, Path)) else model
    return report_for_package(live, archive, decomposed, harmless)


def _quantizable_layers(
    staging: Path, direct_weights: list[str], model_args: dict | None
) -> tuple[list[tuple[str, str]], list[str]]:
    """(path, torch type) of the mlx.nn.Linear and mlx.nn.Embedding layers of model.py that
    may be quantized: those whose weight the code reads only through the layer (a weight
    read directly, as a tied LM head is, must stay a float array). The code generator
    lists the weights the code reads directly."""
    import mlx.nn as nn

    from torch2mlx.runtime import new_model

    direct = set(direct_weights)
    kinds = {
        nn.Linear: "torch.nn.modules.linear.Linear",
        nn.Embedding: "torch.nn.modules.sparse.Embedding",
    }
    layers, notes = [], []
    for path, module in new_model(staging, model_args).named_modules():
        kind = kinds.get(type(module))
        if kind is None:
            continue
        if f"{path}.weight" in direct:
            notes.append(f"not quantized: '{path}' (model.py reads its weight directly, e.g. tied)")
            continue
        layers.append((path, kind))
    return sorted(layers), notes


def _quantize_package(
    staging: Path, plan: Any, shard_size: int, direct_weights: list[str], model_args: dict | None
) -> tuple[dict, list[str], list[str]]:
    """Rewrites the package's weights with the quantizable layers quantized; returns the
    config.json block, the new weight files and notes."""
    from torch2mlx.quantization import config_block, core_layers
    from torch2mlx.runtime import _weight_files

    layers, notes = _quantizable_layers(staging, direct_weights, model_args)
    table = plan.layers(layers)
    old_files = _weight_files(staging)
    source = staging / "model.safetensors.index.json" if len(old_files) > 1 else old_files[0]
    scratch = Path(tempfile.mkdtemp(prefix=".quantized-", dir=staging))
    try:
        report = _core.convert_weights(
            os.fspath(source),
            os.fspath(scratch / "model.safetensors"),
            [(path, kind, 1) for path, kind in layers],
            None,
            plan.default.bits,
            plan.default.group_size,
            shard_size,
            False,
            True,  # every other tensor is copied as it is
            {"format": "mlx"},
            "",
            None,
            None,
            plan.default.mode,
            core_layers(table),
        )
        for path in old_files:
            path.unlink()
        (staging / "model.safetensors.index.json").unlink(missing_ok=True)
        for path in sorted(scratch.iterdir()):
            os.rename(path, staging / path.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    quantized = {
        target.rsplit(".", 1)[0]
        for _, target, _, _ in report["tensors"]
        if target.endswith(".scales")
    }
    notes += [note for note in report["notes"] if note.startswith("not quantized")]
    notes.append(f"quantized {len(quantized)} of {len(layers)} layers ({plan.default.mode})")
    block = config_block(
        plan, {path: spec for path, spec in table.items() if path in quantized or spec is None}
    )
    return block, [Path(name).name for name in report["files"]], notes


def _module_from_archive(archive: Path, example_inputs: Any) -> tuple[Any, Any]:
    """torch's own run of a .pt2 archive and its sample inputs, when torch is installed.

    Built by pt2_reference from the archive's JSON and our reader's tensors: torch never
    deserializes the file itself (torch.export.load would unpickle parts of it).
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        return None, example_inputs
    from torch2mlx.pt2_reference import reference_module, sample_inputs

    module = reference_module(archive)
    if example_inputs is None:
        found = sample_inputs(archive)
        if found is None:
            return None, None
        args, kwargs = found
        example_inputs = dict(kwargs) if kwargs and not args else tuple(args)
    return module, example_inputs
