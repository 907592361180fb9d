"""Decoder language models with an incremental KV cache: conversion and token generation.

A Hugging Face CausalLM is converted as two programs that share one cache format
(docs/generation.md): ``prefill`` takes the prompt and returns the logits of its last
position and the keys and values of every layer; ``decode`` takes one token, the cache so
far and its length, writes the token's keys and values at that position and returns the
next logits and the cache. The cache is plain tensors, ``keys`` and ``values`` as lists over
layers of ``[batch, kv_heads, positions, head_dim]``, so both programs are ordinary
torch.export graphs the code generator translates; the generation loop (here, in Python)
keeps the buffers, with room to spare as mlx-lm's KVCache does, from one call to the next.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from torch2mlx.checkpoint import Torch2MLXError

FORMAT = "torch2mlx-generation"
CACHE_STEP = 256  # cache positions allocated at a time (mlx-lm's KVCache.step)


# The attention implementation the two programs are captured with (_attention_for_capture).
_ATTENTION = "torch2mlx_generation"


def _mask(**arguments: Any) -> Any:
    """The mask of a plain causal attention without padding is None in both programs: prefill
    has no past, so its queries and keys are the same positions (causal, which the attention
    below asks of SDPA), and decode has one query, which sees every key. Sliding windows,
    padding and custom patterns keep transformers' own mask. transformers skips the mask
    itself only when it is not exporting, since it cannot know that the shapes stay so."""
    from transformers.masking_utils import causal_mask_function, sdpa_mask

    plain = arguments.get("mask_function") is causal_mask_function
    if plain and arguments.get("attention_mask") is None and arguments.get("local_size") is None:
        return None
    return sdpa_mask(**{**arguments, "allow_is_causal_skip": False})


def _attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any):
    """transformers' SDPA attention, with the mask _mask leaves out: causal when queries and
    keys are the same positions (prefill: the query length is a symbolic size), none for the
    one query of decode (a static 1). Key and value keep their fewer heads (enable_gqa), so
    the generated code calls mx.fast with them as they are, as mlx-lm does."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if attention_mask is not None or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    is_causal = kwargs.get("is_causal")
    causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
    one_query = isinstance(query.shape[2], int) and query.shape[2] == 1
    output = torch.nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        dropout_p=0.0,
        scale=kwargs.get("scaling"),
        is_causal=bool(causal) and not one_query,
        enable_gqa=query.shape[1] != key.shape[1],
    )
    return output.transpose(1, 2).contiguous(), None


@contextlib.contextmanager
def _attention_for_capture(model: Any) -> Iterator[None]:
    """Captures ``model`` with _attention and _mask instead of transformers' SDPA (only when
    it uses SDPA: eager models, e.g. with logit soft-capping, keep theirs), and restores it."""
    config = model.config
    previous = config._attn_implementation
    if previous != "sdpa":
        yield
        return
    from transformers.masking_utils import AttentionMaskInterface
    from transformers.modeling_utils import AttentionInterface

    AttentionInterface.register(_ATTENTION, _attention)
    AttentionMaskInterface.register(_ATTENTION, _mask)
    config._attn_implementation = _ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = previous


def _step_module(model: Any, with_past: bool) -> Any:
    import torch
    from transformers.cache_utils import Cache, DynamicLayer

    class Prefill(torch.nn.Module):
        def __init__(self, lm: Any) -> None:
            super().__init__()
            self.lm = lm
            self.takes_logits_to_keep = "logits_to_keep" in inspect.signature(lm.forward).parameters

        def run(self, input_ids: Any, cache: Any, past: Any) -> tuple:
            length = input_ids.shape[1]
            position = torch.arange(length, device=input_ids.device) + past
            # Only the last position's logits are returned: the LM head runs on it alone.
            keep = {"logits_to_keep": 1} if self.takes_logits_to_keep else {}
            out = self.lm(
                input_ids=input_ids,
                past_key_values=cache,
                use_cache=True,
                position_ids=position.unsqueeze(0).expand(input_ids.shape[0], -1),
                cache_position=position,
                **keep,
            )
            layers = out.past_key_values.layers
            keys = [layer.keys for layer in layers]
            values = [layer.values for layer in layers]
            return out.logits[:, -1, :], keys, values

        def forward(self, input_ids: Any) -> tuple:
            # Plain layers that keep every position, also for sliding-window attention:
            # its mask limits what each query sees, and decode needs the whole prompt.
            return self.run(input_ids, Cache(layer_class_to_replicate=DynamicLayer), 0)

    class BufferLayer(DynamicLayer):
        """A layer's cache in preallocated buffers: the new position is written at
        ``length`` (slice_scatter, which MLX runs in place on a buffer nobody else holds) and
        attention reads the first ``length + 1`` positions, as mlx-lm's KVCache does."""

        def __init__(self, keys: Any, values: Any, length: Any) -> None:
            super().__init__()
            self.buffers = (keys, values)
            self.length = length
            self.keys, self.values = keys[:, :, :length], values[:, :, :length]
            self.is_initialized = True

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any):
            end = self.length + key_states.shape[2]
            self.buffers = tuple(
                torch.slice_scatter(buffer, states, dim=2, start=self.length, end=end)
                for buffer, states in zip(self.buffers, (key_states, value_states), strict=True)
            )
            self.keys, self.values = (buffer[:, :, :end] for buffer in self.buffers)
            return self.keys, self.values

        def get_seq_length(self) -> Any:
            return self.length

        def get_mask_sizes(self, query_length: int) -> tuple[Any, int]:
            return self.length + query_length, 0

    class Decode(Prefill):
        def forward(self, input_ids: Any, keys: list, values: list, length: int) -> tuple:
            layers = [BufferLayer(k, v, length) for k, v in zip(keys, values, strict=True)]
            cache = Cache(layers=layers)
            logits, _, _ = self.run(input_ids, cache, length)
            return (
                logits,
                [layer.buffers[0] for layer in layers],
                [layer.buffers[1] for layer in layers],
            )

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
    tolerance: float | None = None,
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
    # Batch 1 (one sequence); the prompt, the cache buffers and the past have any length.
    seq = torch.export.Dim("seq", min=1, max=1 << 16)
    capacity = torch.export.Dim("capacity", min=2, max=1 << 16)
    length = torch.export.Dim.DYNAMIC
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
        with _attention_for_capture(model):
            prefill = _step_module(model, with_past=False)
            results = {
                "prefill": convert(
                    prefill, (ids,), staging / "prefill", dynamic_shapes=({1: seq},), **options
                )
            }
            with torch.no_grad():
                _, keys, values = prefill(ids)
            # The decode example: buffers twice the prompt's length whose free tail holds
            # noise, so that verification shows it is never read.
            buffers = [
                torch.cat([cache, torch.randn_like(cache)], dim=2) for cache in (*keys, *values)
            ]
            cache_shape = [{2: capacity}] * len(keys)
            results["decode"] = convert(
                _step_module(model, with_past=True),
                (ids[:, :1], buffers[: len(keys)], buffers[len(keys) :], example_length),
                staging / "decode",
                dynamic_shapes=(None, cache_shape, cache_shape, length),
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
            "decode": (
                "decode/: (input_ids[batch, 1], keys, values, length) -> (logits, keys, values): "
                "writes position `length` of the buffers and attends to positions 0..length"
            ),
        },
        "cache": {
            "layout": (
                "keys and values: a list over layers of [batch, kv_heads, positions, head_dim]; "
                "prefill returns the prompt's, decode takes and returns buffers with room "
                f"beyond `length`, grown {CACHE_STEP} positions at a time"
            ),
            "layers": len(keys),
            "kv_heads": int(keys[0].shape[1]),
            "head_dim": int(keys[0].shape[3]),
            "value_head_dim": int(values[0].shape[3]),
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
                f"{self.config.get('format')!r}): `torch2mlx convert` writes one only when "
                "asked; convert the CausalLM with `torch2mlx convert HF_FOLDER -o OUT --format "
                "generation` (or torch2mlx.convert_for_generation)"
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

        def choose(logits: Any) -> Any:
            nonlocal key
            sub = None
            if temperature > 0:
                key, sub = mx.random.split(key)
            return _choose(logits, temperature, top_p, sub)

        logits, keys, values = self.prefill(mx.array([list(prompt_ids)], dtype=mx.int32))
        length = len(prompt_ids)
        token = choose(logits)
        mx.async_eval(token)
        for step in range(max_tokens):
            # The next step is queued before this token is read, so that MLX computes it
            # while the caller handles this one (mlx-lm's generate_step does the same).
            following = None
            if step + 1 < max_tokens:
                keys, values = with_room(keys, length), with_room(values, length)
                logits, keys, values = self.decode(token, keys, values, length)
                following = choose(logits)
                mx.async_eval(following)
            value = int(token.item())
            yield value
            if stop_at_eos and value in self.eos:
                return
            token, length = following, length + 1


def with_room(buffers: list, length: int) -> list:
    """The cache buffers of every layer, with room for position ``length``: grown by
    CACHE_STEP positions when full, as mlx-lm's KVCache does, so that decode writes one
    position in place instead of copying the cache each step."""
    import mlx.core as mx

    if length < buffers[0].shape[2]:
        return buffers
    capacity = (length // CACHE_STEP + 1) * CACHE_STEP
    return [
        mx.concatenate(
            [
                buffer[:, :, :length],
                mx.zeros((*buffer.shape[:2], capacity - length, buffer.shape[3]), buffer.dtype),
            ],
            axis=2,
        )
        for buffer in buffers
    ]


def _choose(logits: Any, temperature: float, top_p: float, key: Any) -> Any:
    """The next token, as a [1, 1] int32 array (unevaluated): the argmax at temperature 0,
    else a sample, restricted to the top-p nucleus when top_p < 1."""
    import mlx.core as mx

    logits = logits[0].astype(mx.float32)
    if temperature <= 0:
        token = mx.argmax(logits)
    else:
        logits = logits / temperature
        if top_p < 1.0:
            order = mx.argsort(-logits)
            probs = mx.softmax(logits[order])
            keep = (mx.cumsum(probs) - probs) < top_p  # always keeps the most likely token
            masked = mx.where(keep, logits[order], -mx.inf)
            token = order[mx.random.categorical(masked, key=key)]
        else:
            token = mx.random.categorical(logits, key=key)
    return token.reshape(1, 1).astype(mx.int32)


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
