"""Tokens per second of a converted decoder against mlx-lm's own model on the same weights.

    .venv/bin/python benchmarks/bench_generation.py [--repeat 5] [--decode 64]

One Llama built from a config with seeded random weights is written twice: by
`torch2mlx.convert_for_generation` (prefill and decode programs translated from torch) and by
`--format mlx-lm` (mlx-lm's hand-written Llama reads it). Both run greedy steps on the same
prompt, alternating within one process: prefill of 128 and 512 tokens (tokens per second of
the prompt) and decode (tokens per second of new tokens after a 128-token prompt, each step
evaluated before the next, as generation does). Medians over --repeat rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import mlx.core as mx
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch2mlx  # noqa: E402
from torch2mlx.generation import Generator, with_room  # noqa: E402


def build_llama(directory: Path):
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=8192,
        hidden_size=512,
        intermediate_size=1408,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=1024,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    model.save_pretrained(directory)
    return model


def ours_prefill(generator: Generator, ids: list[int]):
    logits, keys, values = generator.prefill(mx.array([ids], dtype=mx.int32))
    mx.eval(logits, keys, values)
    return logits, keys, values


def ours_decode(generator: Generator, ids: list[int], steps: int) -> None:
    logits, keys, values = ours_prefill(generator, ids)
    length = len(ids)
    for _ in range(steps):
        token = mx.argmax(logits[0])
        keys, values = with_room(keys, length), with_room(values, length)
        ids_ = token.reshape(1, 1).astype(mx.int32)
        logits, keys, values = generator.decode(ids_, keys, values, length)
        mx.eval(logits, keys, values)
        length += 1


def mlx_lm_prefill(model, ids: list[int]):
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    logits = model(mx.array([ids]), cache=cache)[:, -1, :]
    mx.eval(logits, [c.state for c in cache])
    return logits, cache


def mlx_lm_decode(model, ids: list[int], steps: int) -> None:
    logits, cache = mlx_lm_prefill(model, ids)
    for _ in range(steps):
        token = mx.argmax(logits[0])
        logits = model(token.reshape(1, 1), cache=cache)[:, -1, :]
        mx.eval(logits, [c.state for c in cache])


def seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--decode", type=int, default=64, help="new tokens per decode run")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from mlx_lm.utils import load_model

    from torch2mlx.hf import load_folder
    from torch2mlx.mlx_lm_format import write_mlx_lm

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        model = build_llama(root / "hf")
        torch2mlx.convert_for_generation(model, root / "ours", verify=False)
        write_mlx_lm(load_folder(root / "hf"), root / "mlx-lm", verify=False)
        ours = Generator(root / "ours")
        reference = load_model(root / "mlx-lm")[0]
        generator = torch.Generator().manual_seed(1)
        prompt = torch.randint(0, 8192, (512,), generator=generator).tolist()
        cases = [
            (
                "prefill 128",
                128,
                lambda: ours_prefill(ours, prompt[:128]),
                lambda: mlx_lm_prefill(reference, prompt[:128]),
            ),
            (
                "prefill 512",
                512,
                lambda: ours_prefill(ours, prompt),
                lambda: mlx_lm_prefill(reference, prompt),
            ),
            (
                f"decode {args.decode} after 128",
                args.decode,
                lambda: ours_decode(ours, prompt[:128], args.decode),
                lambda: mlx_lm_decode(reference, prompt[:128], args.decode),
            ),
        ]
        print(f"{'case':<24} {'torch2mlx tok/s':>16} {'mlx-lm tok/s':>14} {'ratio':>7}")
        for name, tokens, run_ours, run_reference in cases:
            run_ours(), run_reference()  # warm-up
            ours_times, reference_times = [], []
            for _ in range(args.repeat):
                ours_times.append(seconds(run_ours))
                reference_times.append(seconds(run_reference))
            ours_s, reference_s = statistics.median(ours_times), statistics.median(reference_times)
            if name.startswith("decode"):  # the prompt's share, measured on its own
                prefill_ours = statistics.median(
                    seconds(lambda: ours_prefill(ours, prompt[:128])) for _ in range(3)
                )
                prefill_ref = statistics.median(
                    seconds(lambda: mlx_lm_prefill(reference, prompt[:128])) for _ in range(3)
                )
                ours_s, reference_s = ours_s - prefill_ours, reference_s - prefill_ref
            print(
                f"{name:<24} {tokens / ours_s:>16.1f} {tokens / reference_s:>14.1f} "
                f"{reference_s / ours_s:>6.2f}x"
            )


if __name__ == "__main__":
    main()
