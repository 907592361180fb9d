"""Decoder language models with an incremental KV cache: conversion and token generation.

A Hugging Face CausalLM is converted as two programs that share one cache format
(docs/generation.md): ``prefill`` takes the prompt and returns the logits of its last
position and the keys and values of every layer; ``decode`` takes one token and the cache so
far and returns the next logits and the cache grown by one position. The cache is plain
tensors, ``keys`` and ``values`` stacked over layers as ``[layers, batch, kv_heads, length,
head_dim]``, so both programs are ordinary torch.export graphs the code generator translates;
the generation loop (here, in Python) threads the cache from one call to the next.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch2mlx.checkpoint import Torch2MLXError

FORMAT = "torch2mlx-generation"


def _step_module(model: Any, with_past: bool) -> Any:
    import torch
    from transformers import DynamicCache

    class Prefill(torch.nn.Module):
        def __init__(self, lm: Any) -> None:
            super().__init__()
            self.lm = lm

        def run(self, input_ids: Any, cache: Any, past: Any) -> tuple:
            length = input_ids.shape[1]
            position = torch.arange(length, device=input_ids.device) + past
            out = self.lm(
                input_ids=input_ids,
                past_key_values=cache,
                use_cache=True,
                position_ids=position.unsqueeze(0).expand(input_ids.shape[0], -1),
                cache_position=position,
            )
            cache = out.past_key_values
            keys = torch.stack([layer.keys for layer in cache.layers])
            values = torch.stack([layer.values for layer in cache.layers])
            return out.logits[:, -1, :], keys, values

        def forward(self, input_ids: Any) -> tuple:
            return self.run(input_ids, DynamicCache(config=self.lm.config), 0)

    class Decode(Prefill):
        def forward(self, input_ids: Any, past_keys: Any, past_values: Any) -> tuple:
            pairs = [(past_keys[i], past_values[i]) for i in range(past_keys.shape[0])]
            cache = DynamicCache(ddp_cache_data=pairs, config=self.lm.config)
            return self.run(input_ids, cache, past_keys.shape[3])

    return (Decode if with_past else Prefill)(model)


def _check_model(model: Any) -> None:
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "get_output_embeddings"):
        raise Torch2MLXError(
            f"[generation] {type(model).__name__} is not a Hugging Face CausalLM (no config or "
            "output embeddings): generation converts *ForCausalLM models; convert other models "
            "with torch2mlx.convert"
        )


def _check_destination(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise Torch2MLXError(
            f"[generation] {out_dir} exists and is not a directory; choose another -o"
        )
    if out_dir.is_dir() and any(out_dir.iterdir()):
        try:
            ours = json.loads((out_dir / "config.json").read_text()).get("format") == FORMAT
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise Torch2MLXError(
                f"[generation] {out_dir} is a non-empty directory that is not a generating "
                "package; refusing to replace it: choose an empty or new directory"
            )


def convert_for_generation(
    model: Any,
    out_dir: str | Path,
    *,
    dtype: str | None = None,
    quantize: dict | None = None,
    verify: bool = True,
    tolerance: tuple[float, float] | None = None,
    quiet: bool = True,
    extra_files: list[Path] | None = None,
    example_length: int = 8,
) -> dict:
    """Converts a Hugging Face CausalLM into a generating package in ``out_dir``: ``prefill/``
    and ``decode/`` (each a torch2mlx package) and a top-level config.json describing the
    cache. ``dtype`` and ``quantize`` are those of ``torch2mlx.convert``. The folder appears
    whole or not at all. Returns the config, with each program's verification under
    ``"verification"`` (``passed`` is False when either differs from torch)."""
    import shutil
    import tempfile

    import torch

    from torch2mlx.conversion import _move_into_place, convert
    from torch2mlx.hf import copy_tokenizer_files

    _check_model(model)
    out_dir = Path(out_dir)
    _check_destination(out_dir)
    model.eval()
    config = model.config
    vocab = int(config.vocab_size)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (1, example_length), generator=generator)
    # Batch 1 (one sequence). The past length is Dim.DYNAMIC: a named Dim with a range is
    # refused by export over guards sympy cannot simplify (min(16 + 16*p, 32 + 32*p)).
    seq = torch.export.Dim("seq", min=1, max=1 << 16)
    past = torch.export.Dim.DYNAMIC
    cache_shape = {3: past}
    options = {
        "dtype": dtype,
        "quantize": quantize,
        "verify": verify,
        "tolerance": tolerance,
        "quiet": quiet,
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent)
    )
    try:
        prefill = _step_module(model, with_past=False)
        results = {
            "prefill": convert(
                prefill, (ids,), staging / "prefill", dynamic_shapes=({1: seq},), **options
            )
        }
        with torch.no_grad():
            _, keys, values = prefill(ids)
        results["decode"] = convert(
            _step_module(model, with_past=True),
            (ids[:, :1], keys, values),
            staging / "decode",
            dynamic_shapes=(None, cache_shape, cache_shape),
            **options,
        )
        summary = _summary(model, keys, values, dtype, quantize)
        if extra_files:
            # In a folder of their own: AutoTokenizer would read the config.json above as a
            # model config.
            (staging / "tokenizer").mkdir()
            names = copy_tokenizer_files(list(extra_files), staging / "tokenizer")
            summary["files"] = [f"tokenizer/{name}" for name in names]
        (staging / "config.json").write_text(json.dumps(summary, indent=2) + "\n")
        _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary["verification"] = {
        name: {"passed": result.passed, "summary": result.summary}
        for name, result in results.items()
    }
    summary["passed"] = (
        None if not verify else all(result.passed is not False for result in results.values())
    )
    return summary


def _summary(model: Any, keys: Any, values: Any, dtype: str | None, quantize: dict | None) -> dict:
    config = model.config
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(config, "eos_token_id", None)
    return {
        "format": FORMAT,
        "architecture": type(model).__name__,
        "programs": {
            "prefill": "prefill/: (input_ids[batch, seq]) -> (last logits, keys, values)",
            "decode": "decode/: (input_ids[batch, 1], keys, values) -> (logits, keys, values)",
        },
        "cache": {
            "layout": "[layers, batch, kv_heads, length, head_dim]",
            "layers": int(keys.shape[0]),
            "kv_heads": int(keys.shape[2]),
            "head_dim": int(keys.shape[4]),
            "value_head_dim": int(values.shape[4]),
        },
        "vocab_size": int(config.vocab_size),
        "eos_token_id": eos if isinstance(eos, list) else ([eos] if eos is not None else []),
        "dtype": dtype or "as exported",
        "quantization": {k: v for k, v in quantize.items() if k != "predicate"}
        if quantize
        else None,
    }


class Generator:
    """A loaded generating package: ``prefill`` and ``decode`` MLX models and the cache."""

    def __init__(self, directory: str | Path) -> None:
        from torch2mlx.runtime import load

        self.directory = Path(directory)
        config_path = self.directory / "config.json"
        try:
            self.config = json.loads(config_path.read_text())
        except (OSError, ValueError) as error:
            raise Torch2MLXError(
                f"[generation] {config_path}: cannot read it ({error}): pass a folder written "
                "by torch2mlx.convert_for_generation or `torch2mlx convert` of a CausalLM"
            ) from None
        if self.config.get("format") != FORMAT:
            raise Torch2MLXError(
                f"[generation] {config_path} is not a generating package (format "
                f"{self.config.get('format')!r}): convert the CausalLM with "
                "torch2mlx.convert_for_generation or `torch2mlx convert HF_FOLDER -o OUT`"
            )
        self.prefill = load(self.directory / "prefill")
        self.decode = load(self.directory / "decode")
        self.eos = set(self.config.get("eos_token_id") or [])

    def tokens(
        self,
        prompt_ids: Sequence[int],
        max_tokens: int,
        *,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop_at_eos: bool = True,
    ):
        """Yields up to ``max_tokens`` new token ids after ``prompt_ids``."""
        import mlx.core as mx

        if not prompt_ids:
            raise Torch2MLXError("[generation] the prompt is empty: pass at least one token")
        key = mx.random.key(0 if seed is None else seed)
        logits, keys, values = self.prefill(mx.array([list(prompt_ids)], dtype=mx.int32))
        for _ in range(max_tokens):
            key, sub = mx.random.split(key)
            token = _choose(logits, temperature, top_p, sub)
            yield token
            if stop_at_eos and token in self.eos:
                return
            logits, keys, values = self.decode(mx.array([[token]], dtype=mx.int32), keys, values)


def _choose(logits: Any, temperature: float, top_p: float, key: Any) -> int:
    import mlx.core as mx

    logits = logits[0].astype(mx.float32)
    if temperature <= 0:
        return int(mx.argmax(logits).item())
    logits = logits / temperature
    if top_p < 1.0:
        order = mx.argsort(-logits)
        probs = mx.softmax(logits[order])
        keep = (mx.cumsum(probs) - probs) < top_p  # always keeps the most likely token
        masked = mx.where(keep, logits[order], -mx.inf)
        return int(order[mx.random.categorical(masked, key=key)].item())
    return int(mx.random.categorical(logits, key=key).item())


def generate(
    package: str | Path | Generator,
    prompt: str | Sequence[int],
    max_tokens: int = 32,
    *,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
) -> Any:
    """Generates after ``prompt`` (token ids, or text with the package's tokenizer): greedy
    at ``temperature`` 0, else sampled (``top_p`` nucleus), reproducibly with ``seed``.
    Returns the new token ids for ids, the new text for text."""
    generator = package if isinstance(package, Generator) else Generator(package)
    if isinstance(prompt, str):
        tokenizer = load_tokenizer(generator.directory)
        ids = tokenizer(prompt)["input_ids"]
        new = list(
            generator.tokens(ids, max_tokens, temperature=temperature, top_p=top_p, seed=seed)
        )
        return tokenizer.decode(new, skip_special_tokens=True)
    return list(
        generator.tokens(list(prompt), max_tokens, temperature=temperature, top_p=top_p, seed=seed)
    )


def load_tokenizer(directory: Path) -> Any:
    """The tokenizer a generating package carries (copied from its Hugging Face folder)."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(directory / "tokenizer"), local_files_only=True)
    except Exception as error:  # transformers raises several types for a missing tokenizer
        raise Torch2MLXError(
            f"[generation] {directory}: no tokenizer could be loaded ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}): convert from a Hugging Face "
            "folder that has tokenizer files, or pass token ids"
        ) from None
