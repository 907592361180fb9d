"""The ``torch2mlx`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from torch2mlx import __version__
from torch2mlx.checkpoint import CheckpointInfo, Torch2MLXError, inspect_checkpoint
from torch2mlx.numerics import OUTPUT_DTYPES

# The one tolerance rule's atol (docs/verify.md); its default comes from the compute dtype.
ATOL_HELP = (
    "the rule's atol, scaled by the output's magnitude (default by the compute dtype: 1e-5 "
    "for float32, 1e-2 for bfloat16 and float16)"
)


def _human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.2f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def _human_count(count: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.2f}{unit}"
    return str(count)


def _print_inspect(info: CheckpointInfo) -> None:
    rows = [
        (t.name, t.dtype, "x".join(map(str, t.shape)) or "scalar", t.nbytes) for t in info.tensors
    ]
    name_width = max([len("name"), *(len(r[0]) for r in rows)])
    dtype_width = max([len("dtype"), *(len(r[1]) for r in rows)])
    shape_width = max([len("shape"), *(len(r[2]) for r in rows)])
    print(f"{'name':<{name_width}}  {'dtype':<{dtype_width}}  {'shape':<{shape_width}}  bytes")
    for name, dtype, shape, nbytes in rows:
        print(f"{name:<{name_width}}  {dtype:<{dtype_width}}  {shape:<{shape_width}}  {nbytes}")
    print()
    print(f"format:   {info.format}")
    if len(info.files) > 1:
        print(f"files:    {len(info.files)} ({', '.join(info.files)})")
    print(
        f"tensors:  {len(info.tensors)}, {_human_count(info.total_elements)} elements, "
        f"{_human_bytes(info.total_bytes)}"
    )
    for key, value in sorted(info.metadata.items()):
        print(f"metadata: {key} = {value}")
    if info.others:
        print(f"other values ({len(info.others)}, not tensors):")
        for path, kind, value in info.others:
            print(f"  {path or '(root)'}: {kind} = {value}")


def _inspect(args: argparse.Namespace) -> int:
    info = inspect_checkpoint(args.path)
    if args.json:
        json.dump(info.to_dict(), sys.stdout, indent=2)
        print()
    else:
        _print_inspect(info)
    return 0


def _load_factory(spec: str):
    """'pkg.module:factory' -> the model the factory returns."""
    import importlib

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--model expects 'pkg.module:factory', got '{spec}'")
    sys.path.insert(0, os.getcwd())
    factory = getattr(importlib.import_module(module_name), attribute)
    return factory()


def _convert_weights(args: argparse.Namespace) -> int:
    import warnings

    from torch2mlx.weights import convert_weights, start_digest

    # Hashing the checkpoint for the output's provenance starts now, so that the disk is
    # busy while torch imports and the model is built.
    digest = start_digest(args.checkpoint) if os.path.exists(args.checkpoint) else None
    model = None
    if args.model and os.path.exists(args.model):
        model = args.model  # a .pt2 archive: its graph names every module's type
    elif args.model:
        model = _load_factory(args.model)
    quantize = _quantize_options(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = convert_weights(
            args.checkpoint,
            args.output,
            model=model,
            dtype=args.dtype,
            quantize=quantize,
            reverse=args.reverse,
            shard_size=args.shard_size,
            keep_unknown=args.keep_unknown,
            digest=digest,
        )
    for warning in caught:
        print(f"torch2mlx: warning: {warning.message}", file=sys.stderr)
    rules: dict[str, int] = {}
    for _, _, module_type, transform in report["tensors"]:
        key = f"{transform} ({module_type.rsplit('.', 1)[-1]})" if module_type else transform
        rules[key] = rules.get(key, 0) + 1
    print(f"wrote {', '.join(report['files'])} in {report['seconds']:.2f} s")
    print(f"tensors: {len(report['tensors'])}, dropped: {len(report['dropped'])}")
    for rule, count in sorted(rules.items()):
        print(f"  {count:>5} x {rule}")
    for note in report["notes"]:
        print(f"  note: {note}")
    if "key_map" in report:
        print(f"key map: {report['key_map']}")
    return 0


def _quantize_options(args: argparse.Namespace) -> dict | None:
    """quantize= from --quantize BITS, --group-size, --q-mode and --q-recipe (any of them
    turns quantization on; bits and group size default to the mode's)."""
    if args.quantize is None and args.q_mode is None and args.q_recipe is None:
        if args.group_size is not None:
            raise ValueError("--group-size needs --quantize BITS, --q-mode or --q-recipe")
        return None
    options = {"bits": args.quantize, "group_size": args.group_size, "mode": args.q_mode}
    if args.q_recipe:
        options["recipe"] = args.q_recipe
    return options


def _add_quantize_flags(parser: argparse.ArgumentParser) -> None:
    from torch2mlx.numerics import QUANT_MODES
    from torch2mlx.quantization import RECIPES

    parser.add_argument(
        "--quantize",
        type=int,
        choices=[2, 3, 4, 5, 6, 8],
        metavar="BITS",
        help="quantize Linear and Embedding weights to BITS (default: the mode's)",
    )
    parser.add_argument(
        "--group-size",
        type=int,
        choices=[16, 32, 64, 128],
        help="quantization group size (affine 32/64/128, default 64; mxfp4/mxfp8 32; nvfp4 16)",
    )
    parser.add_argument(
        "--q-mode",
        choices=list(QUANT_MODES),
        help="MLX quantization mode (affine, default; mxfp4, mxfp8, nvfp4)",
    )
    parser.add_argument(
        "--q-recipe",
        choices=list(RECIPES),
        help="mixed recipe: mlx-lm's mixed_L_H (LM head and some v_proj/down_proj at H bits), "
        "or edges_8 (embeddings and LM head at 8-bit affine, the rest as --q-mode)",
    )


def _example_inputs(shapes: list[str], dtypes: list[str]) -> tuple:
    """Seeded random inputs from --input-shape 1x3x224x224 and --input-dtype float32."""
    import torch

    generator = torch.Generator().manual_seed(0)
    inputs = []
    for index, shape_text in enumerate(shapes):
        try:
            shape = tuple(int(size) for size in shape_text.lower().split("x"))
        except ValueError:
            raise ValueError(
                f"--input-shape expects sizes joined by 'x' such as 1x3x224x224, got '{shape_text}'"
            ) from None
        dtype_name = dtypes[min(index, len(dtypes) - 1)] if dtypes else "float32"
        dtype = getattr(torch, dtype_name, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"--input-dtype: unknown torch dtype '{dtype_name}'")
        if dtype.is_floating_point:
            inputs.append(torch.randn(shape, generator=generator).to(dtype))
        else:  # token ids, indices: small non-negative values fit any vocabulary
            inputs.append(torch.randint(0, 2, shape, generator=generator, dtype=dtype))
    return tuple(inputs)


def _convert(args: argparse.Namespace) -> int:
    import time
    import warnings

    from torch2mlx.conversion import VerificationWarning, convert
    from torch2mlx.weights import parse_size

    source = args.source
    start = time.perf_counter()
    dynamic = None
    hf_extra: dict | None = None
    extra_files: list | None = None
    streaming: dict = {}  # a folder's weights, read from it while they are written
    if args.format == "mlx-lm" and not os.path.isdir(source):
        raise ValueError(
            "--format mlx-lm takes a Hugging Face folder: mlx-lm builds the model from its "
            "config.json, so a .pt2 or a factory has nothing for it to read"
        )
    if args.format == "generation" and os.path.isfile(source):
        raise ValueError(
            "--format generation takes a Hugging Face folder or a 'pkg.module:factory' of a "
            "*ForCausalLM model: a .pt2 holds one forward graph, not the prefill and decode "
            "steps generation needs"
        )
    if ":" in source and not os.path.exists(source):
        built = _load_factory(source)
        model, inputs = built if isinstance(built, tuple) else (built, None)
        if args.format == "generation":
            return _convert_generation(args, model, None, start)
        if args.input_shape:
            inputs = _example_inputs(args.input_shape, args.input_dtype or [])
        if inputs is None:
            raise ValueError(
                f"{source} returned a model without example inputs: pass --input-shape "
                "(and --input-dtype), or make the factory return (model, example_inputs)"
            )
    elif os.path.isdir(source):
        from torch2mlx.hf import is_folder, load_folder, verification_model

        if not is_folder(source):
            raise ValueError(
                f"[hf] {source} is a folder without config.json: pass a Hugging Face model "
                "folder (save_pretrained writes one), a .pt2 archive or 'pkg.module:factory'"
            )
        # A config without `architectures` is built for the task the format asks for.
        task = "causal-lm" if args.format in ("generation", "mlx-lm") else None
        folder = load_folder(
            source,
            trust_remote_code=args.trust_remote_code,
            task=task,
            on_meta=args.format in ("package", "mlx-lm"),
        )
        for note in folder.notes:
            print(f"  note: {note}")
        if args.format == "mlx-lm":
            return _convert_mlx_lm(args, folder, start)
        if args.format == "generation":
            files = [path for path in folder.files if path.name != "config.json"]
            return _convert_generation(args, folder.model, files, start)
        model, inputs, dynamic = folder.model, folder.example_inputs, folder.dynamic_shapes
        hf_extra = {
            "hugging_face": {
                "architecture": folder.architecture,
                "model_type": folder.config.get("model_type"),
                "task": folder.task,
                "config": folder.config,
            }
        }
        extra_files = folder.files
        if folder.weights_from is not None:
            streaming = {
                "weights_from": folder.weights_from,
                "reference": verification_model(folder) if not args.no_verify else None,
            }
    else:
        model = source
        inputs = (
            _example_inputs(args.input_shape, args.input_dtype or []) if args.input_shape else None
        )
    options = {
        "dynamic_shapes": dynamic,
        "dtype": args.dtype,
        "verify": not args.no_verify,
        "tolerance": args.atol,
        "shard_size": parse_size(args.shard_size),
        "quiet": True,
        "dump_ir": args.dump_ir,
        "quantize": _quantize_options(args),
        "extra_files": extra_files,
        "config_extra": hf_extra,
        "model_args": False if args.no_model_args else None,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerificationWarning)  # reported below, as an error
        try:
            result = convert(model, inputs, args.output, **options, **streaming)
        except Torch2MLXError as error:
            if not streaming or not str(error).startswith("[capture]"):
                raise
            # Some models cannot be traced with meta parameters: build this one for real.
            print(f"  note: capture on the meta device failed ({str(error)[:120]}...); "
                  "building the model with its weights")  # fmt: skip
            folder = load_folder(source, trust_remote_code=args.trust_remote_code)
            result = convert(folder.model, folder.example_inputs, args.output, **options)
    seconds = time.perf_counter() - start
    print(
        f"wrote {args.output}: model.py, {', '.join(result.config['weights'])}, config.json, "
        f"report.json in {seconds:.2f} s"
    )
    for note in result.config["notes"]:
        print(f"  note: {note}")
    if result.config.get("decomposed_ops"):
        ops = ", ".join(result.config["decomposed_ops"])
        print(f"  decomposed with torch's tables (no direct translation): {ops}")
    if result.config.get("files"):
        print(f"  copied: {', '.join(result.config['files'])}")
    if result.summary:
        print("verification against torch:")
        print("\n".join(result.summary))
    elif not args.no_verify:
        print(f"not verified: {result.report.get('reason', 'no example inputs')}")
    if result.passed is False:
        print(
            f"torch2mlx: error: the MLX model does not match torch within tolerance; the "
            f"package is written for debugging, see {args.output}/report.json",
            file=sys.stderr,
        )
        return 2
    return 0


def _verify(args: argparse.Namespace) -> int:
    from torch2mlx.conversion import _module_from_archive
    from torch2mlx.verification import load_inputs, verify

    source = args.against
    if ":" in source and not os.path.exists(source):
        built = _load_factory(source)
        model, example = built if isinstance(built, tuple) else (built, None)
    elif source.endswith(".pt2") and os.path.isfile(source):
        model, example = _module_from_archive(Path(source), None)
        if model is None:
            raise ValueError(f"{source}: verifying against a .pt2 archive needs torch installed")
    else:
        raise ValueError(
            f"--against {source}: pass the torch model as 'pkg.module:factory' (or a .pt2 "
            "archive), as for torch2mlx convert"
        )
    if args.inputs:
        runs = [load_inputs(args.inputs)]
    elif args.random is not None:
        runs = [None] * args.random
    else:
        runs = [example]  # the factory's example inputs, or random ones when it has none
    reports = []
    for seed, inputs in enumerate(runs):
        report = verify(model, args.out, inputs, atol=args.atol, seed=seed)
        reports.append(report)
        if not args.json:
            if len(runs) > 1:
                print(f"run {seed + 1} of {len(runs)}:")
            print(report.text())
    if args.json:
        print(
            json.dumps(
                [r.to_dict() for r in reports] if len(reports) > 1 else reports[0].to_dict(),
                indent=2,
            )
        )
    if args.html:
        failing = next((r for r in reports if not r.passed), reports[-1])
        Path(args.html).write_text(failing.html())
        if not args.json:
            print(f"wrote {args.html}")
    return 0 if all(r.passed for r in reports) else 2


def _analyze(args: argparse.Namespace) -> int:
    from torch2mlx.analyze import analyze

    source = args.source
    if ":" in source and not os.path.exists(source):
        built = _load_factory(source)
        model, inputs = built if isinstance(built, tuple) else (built, None)
        if args.input_shape:
            inputs = _example_inputs(args.input_shape, args.input_dtype or [])
    elif os.path.isdir(source):
        raise ValueError(
            f"[analyze] {source} is a folder: Hugging Face folders arrive in a later release; "
            "pass a .pt2 archive or a 'pkg.module:factory'"
        )
    else:
        model, inputs = source, None
    report = analyze(model, inputs)
    print(report.to_json() if args.json else report.format_text())
    return report.exit_code


def _convert_mlx_lm(args: argparse.Namespace, folder, start: float) -> int:
    import time

    from torch2mlx.mlx_lm_format import write_mlx_lm
    from torch2mlx.weights import parse_size

    result = write_mlx_lm(
        folder,
        args.output,
        quantize=_quantize_options(args),
        dtype=args.dtype,
        shard_size=parse_size(args.shard_size),
        verify=not args.no_verify,
    )
    seconds = time.perf_counter() - start
    print(
        f"wrote {args.output} for mlx-lm ({result['model_type']}): "
        f"{', '.join(result['files'])} in {seconds:.2f} s"
    )
    for note in result["notes"]:
        print(f"  note: {note}")
    check = result.get("verification")
    if check:
        against = (
            f"; against {check['reference']}: MLX {check['error']:.3g}, torch "
            f"{check['torch_error']:.3g}"
            if check["reference"] != "torch"
            else ""
        )
        print(
            f"mlx_lm.load and logits against torch: max abs {check['max_abs_error']:.3g}, "
            f"cosine {check['cosine_similarity']:.6f}{against}, bound {check['bound']:.3g} "
            f"({check['rule']})"
        )
        if check["passed"] is False:
            print(
                f"torch2mlx: error: mlx-lm's logits do not match torch within tolerance; the "
                f"folder is written for debugging: {args.output}",
                file=sys.stderr,
            )
            return 2
    return 0


def _convert_generation(args: argparse.Namespace, model, files, start: float) -> int:
    import time
    import warnings

    from torch2mlx.conversion import VerificationWarning
    from torch2mlx.generation import convert_for_generation

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerificationWarning)  # reported below, as an error
        result = convert_for_generation(
            model,
            args.output,
            dtype=args.dtype,
            quantize=_quantize_options(args),
            verify=not args.no_verify,
            tolerance=args.atol,
            extra_files=files,
        )
    seconds = time.perf_counter() - start
    cache = result["cache"]
    print(
        f"wrote {args.output}: prefill/ and decode/ packages of {result['architecture']} with a "
        f"KV cache of {cache['layers']} layers x {cache['kv_heads']} heads x "
        f"{cache['head_dim']} in {seconds:.2f} s"
    )
    if result.get("files"):
        print(f"  copied: {', '.join(result['files'])}")
    for name, check in result["verification"].items():
        if check["summary"]:
            print(f"verification of {name} against torch:")
            print("\n".join(check["summary"]))
    if result["passed"] is False:
        print(
            f"torch2mlx: error: the MLX model does not match torch within tolerance; see "
            f"{args.output}/prefill/report.json and decode/report.json",
            file=sys.stderr,
        )
        return 2
    print(f"run it: torch2mlx generate {args.output} --prompt '...'")
    return 0


def _generate(args: argparse.Namespace) -> int:
    import time

    from torch2mlx.generation import Generator, load_tokenizer

    generator = Generator(args.package)
    if args.ids is not None:
        ids = [int(token) for token in args.ids.split(",") if token.strip()]
        tokenizer = None
    else:
        tokenizer = load_tokenizer(generator.directory)
        ids = tokenizer(args.prompt)["input_ids"]
    start = time.perf_counter()
    first = None
    new: list[int] = []
    printed = ""
    for token in generator.tokens(
        ids, args.max_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed
    ):
        first = first or time.perf_counter()
        new.append(token)
        if tokenizer is None:
            print(token, end=" ", flush=True)
            continue
        text = tokenizer.decode(new, skip_special_tokens=True)
        print(text[len(printed) :], end="", flush=True)  # stream what is new
        printed = text
    end = time.perf_counter()
    print()
    if first is not None:
        decode = f", decode {(len(new) - 1) / (end - first):.1f} tok/s" if len(new) > 1 else ""
        print(
            f"prompt {len(ids)} tokens: prefill {len(ids) / (first - start):.1f} tok/s; "
            f"{len(new)} new tokens{decode}",
            file=sys.stderr,
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torch2mlx", description="Translate PyTorch models and checkpoints to Apple MLX."
    )
    parser.add_argument("--version", action="version", version=f"torch2mlx {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser(
        "inspect",
        help="list the tensors of a checkpoint (reads headers only)",
        description="List name, dtype, shape and size of every tensor in a safetensors file, "
        "a torch.save checkpoint or a (sharded) Hugging Face folder, reading headers only.",
    )
    inspect.add_argument("path", help="a checkpoint file, an index.json or a model folder")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")
    inspect.set_defaults(run=_inspect)

    weights = commands.add_parser(
        "convert-weights",
        help="convert a checkpoint to MLX safetensors (layouts keyed on module type)",
        description="Convert a torch checkpoint to MLX safetensors. With --model, every tensor "
        "gets the layout rule of the module type that owns it; without, tensors are copied.",
    )
    weights.add_argument("checkpoint", help="checkpoint file, index.json or model folder")
    weights.add_argument("-o", "--output", required=True, help="output .safetensors path")
    weights.add_argument(
        "--model", help="'pkg.module:factory' returning the torch model, or a .pt2 archive"
    )
    weights.add_argument("--dtype", choices=OUTPUT_DTYPES)
    _add_quantize_flags(weights)
    weights.add_argument("--shard-size", default="5GB", help="largest output shard (5GB)")
    weights.add_argument("--reverse", action="store_true", help="MLX weights back to torch's")
    weights.add_argument(
        "--keep-unknown", action="store_true", help="copy tensors no rule covers, unchanged"
    )
    weights.set_defaults(run=_convert_weights)

    check = commands.add_parser(
        "verify",
        help="run a package and its torch model side by side; name the first layer that differs",
        description="Run the package OUT and the torch model on the same inputs, report the "
        "error of every output and of every module call, and name the first module whose output "
        "leaves the tolerance while its input is within it. Exit status 2 when they differ.",
    )
    check.add_argument("out", help="a package folder written by torch2mlx convert")
    check.add_argument(
        "--against", required=True, help="the torch model: 'pkg.module:factory' or a .pt2"
    )
    given = check.add_mutually_exclusive_group()
    given.add_argument("--inputs", help="an .npz of inputs keyed by the package's input names")
    given.add_argument(
        "--random", type=int, metavar="N", help="N runs on random inputs of config.json's shapes"
    )
    check.add_argument("--atol", type=float, help=ATOL_HELP)
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--html", metavar="FILE", help="write a page with the per-layer errors")
    check.set_defaults(run=_verify)

    convert = commands.add_parser(
        "convert",
        help="translate a model to a self-contained MLX package and verify it",
        description="Translate a model (a Hugging Face folder, a torch.export .pt2 archive, or "
        "'pkg.module:factory') into OUT/model.py, MLX weights, config.json and report.json, "
        "then run torch and MLX side by side on the example inputs.",
    )
    convert.add_argument(
        "source",
        help="a Hugging Face folder (config.json + weights), a .pt2, or 'pkg.module:factory'",
    )
    convert.add_argument("-o", "--output", required=True, help="package directory to write")
    convert.add_argument(
        "--input-shape", action="append", metavar="SHAPE", help="e.g. 1x3x224x224; once per input"
    )
    convert.add_argument(
        "--input-dtype", action="append", metavar="DTYPE", help="torch dtype per input (float32)"
    )
    convert.add_argument("--dtype", choices=OUTPUT_DTYPES)
    _add_quantize_flags(convert)
    convert.add_argument(
        "--format",
        choices=["package", "mlx-lm", "generation"],
        default="package",
        help="package: model.py + weights (default); mlx-lm: a folder mlx_lm.load reads "
        "(Hugging Face folders of architectures mlx-lm implements); generation: prefill and "
        "decode packages with a KV cache, for `torch2mlx generate` (causal language models)",
    )
    convert.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let transformers import the folder's own Python (auto_map); off by default, "
        "since it runs code from the folder",
    )
    convert.add_argument("--shard-size", default="5GB", help="largest weight shard (5GB)")
    convert.add_argument("--no-verify", action="store_true", help="skip the torch comparison")
    convert.add_argument(
        "--no-model-args",
        action="store_true",
        help="write the sizes of a Hugging Face model into model.py as numbers, instead of a "
        "ModelArgs read from config.json (which captures the model once more per config field)",
    )
    convert.add_argument(
        "--dump-ir",
        metavar="PASS",
        help=(
            "print the graph IR to stderr after this pass (input, noops, cse, fuse-rms-norm, "
            "fuse-rope, fuse-gqa, rematerialize-sizes, dead-code)"
        ),
    )
    convert.add_argument("--atol", type=float, help=ATOL_HELP)
    convert.set_defaults(run=_convert)

    generate = commands.add_parser(
        "generate",
        help="generate text with a package written by `convert --format generation`",
        description="Greedy (default) or sampled decoding with the package's KV cache; the "
        "prompt goes through the tokenizer copied from the Hugging Face folder. New text is "
        "printed as it comes, speeds go to stderr.",
    )
    generate.add_argument("package", help="a folder written by convert --format generation")
    prompt = generate.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="text, encoded with the package's tokenizer")
    prompt.add_argument("--ids", help="token ids instead of text, e.g. 1,15043,29892")
    generate.add_argument("--max-tokens", type=int, default=64, help="new tokens at most (64)")
    generate.add_argument(
        "--temperature", type=float, default=0.0, help="0 is greedy (default); else sampled"
    )
    generate.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1.0)")
    generate.add_argument("--seed", type=int, help="seed of the sampler, for repeatable runs")
    generate.set_defaults(run=_generate)

    analyze = commands.add_parser(
        "analyze",
        help="portability report: what converts, what does not, and the line to change",
        description="Report, before converting, whether a model converts: module types the "
        "registry maps, hazards in forward source (file:line), and with example inputs (a "
        "factory returning (model, inputs), or --input-shape) or a .pt2 archive, op coverage "
        "and every blocker of the captured graph. Exit status: 0 convertible, 3 blockers "
        "found, 4 undetermined (no example inputs, so no graph to examine), 1 error.",
    )
    analyze.add_argument("source", help="a .pt2 archive, or 'pkg.module:factory'")
    analyze.add_argument(
        "--input-shape", action="append", metavar="SHAPE", help="e.g. 1x3x224x224; once per input"
    )
    analyze.add_argument(
        "--input-dtype", action="append", metavar="DTYPE", help="torch dtype per input (float32)"
    )
    analyze.add_argument("--json", action="store_true", help="print the report as JSON")
    analyze.set_defaults(run=_analyze)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:
        # `torch2mlx inspect big.pth | head`: the reader went away, which is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (Torch2MLXError, OSError, KeyError, ValueError, ImportError, TypeError) as error:
        print(f"torch2mlx: error: {error}", file=sys.stderr)
        return 1
    except MemoryError as error:
        # The core names the tensor where it can (see [tensor] and [convert] errors); this
        # is the last line for an allocation in Python code.
        source = next(
            (
                getattr(args, name)
                for name in ("source", "checkpoint", "path")
                if hasattr(args, name)
            ),
            "the input",
        )
        print(
            f"torch2mlx: error: [{args.command}] out of memory reading {source} "
            f"({error or 'an allocation failed'}); free memory or convert a smaller model",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
