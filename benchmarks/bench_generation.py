"""Tokens per second of a converted decoder against mlx-lm's own model on the same weights.

    .venv/bin/python benchmarks/bench_generation.py [--repeat 5] [--decode 64]

One Llama built from a config with seeded random weights is written twice: by
`torch2mlx.convert_for_generation` (prefill and decode programs translated from torch) and by
`--format mlx-lm` (mlx-lm's hand-written Llama reads it). Both run greedy steps on the same
prompt, in one process: prefill of 128 and 512 tokens (tokens per second of the prompt,
runs alternating), decode (new tokens per second after a 128-token prompt: the models
alone in the same loop, each step evaluated before the next, alternating step by step so
that a change of load falls on both alike) and generate (each library's own generation
loop, `Generator.tokens` against mlx-lm's `generate_step`, greedy, runs alternating; the
time between consecutive tokens; mlx-lm's loop also computes log-probabilities). Medians
over all steps of --repeat rounds.
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


def ours_steps(generator: Generator, ids: list[int]):
    """Yields after each decode step of the converted model, evaluated before the next."""
    logits, keys, values = ours_prefill(generator, ids)
    length = len(ids)
    while True:
        token = mx.argmax(logits[0]).reshape(1, 1).astype(mx.int32)
        keys, values = with_room(keys, length), with_room(values, length)
        logits, keys, values = generator.decode(token, keys, values, length)
        mx.eval(logits, keys, values)
        length += 1
        yield


def mlx_lm_prefill(model, ids: list[int]):
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    logits = model(mx.array([ids]), cache=cache)[:, -1, :]
    mx.eval(logits, [c.state for c in cache])
    return logits, cache


def mlx_lm_steps(model, ids: list[int]):
    """Yields after each step of mlx-lm's model with its KV cache, evaluated before the next."""
    logits, cache = mlx_lm_prefill(model, ids)
    while True:
        token = mx.argmax(logits[0])
        logits = model(token.reshape(1, 1), cache=cache)[:, -1, :]
        mx.eval(logits, [c.state for c in cache])
        yield


def step_seconds(ours, reference, steps: int) -> tuple[list[float], list[float]]:
    """Seconds per decode step of both models, alternating step by step, so that a change
    in the machine's load falls on both alike."""
    ours_times, reference_times = [], []
    next(ours), next(reference)  # warm-up
    for _ in range(steps):
        start = time.perf_counter()
        next(ours)
        middle = time.perf_counter()
        next(reference)
        ours_times.append(middle - start)
        reference_times.append(time.perf_counter() - middle)
    return ours_times, reference_times


def loop_seconds(tokens) -> list[float]:
    """Seconds between consecutive tokens of a generation loop (the prompt excluded)."""
    times, last = [], None
    for _ in tokens:
        now = time.perf_counter()
        if last is not None:
            times.append(now - last)
        last = now
    return times


def seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def report(name: str, tokens: int, ours_s: float, reference_s: float) -> None:
    print(
        f"{name:<24} {tokens / ours_s:>16.1f} {tokens / reference_s:>14.1f} "
        f"{reference_s / ours_s:>6.2f}x"
    )


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
        print(f"{'case':<24} {'torch2mlx tok/s':>16} {'mlx-lm tok/s':>14} {'ratio':>7}")
        for length in (128, 512):
            ids = prompt[:length]
            ours_prefill(ours, ids), mlx_lm_prefill(reference, ids)  # warm-up
            ours_times, reference_times = [], []
            for _ in range(args.repeat):
                ours_times.append(seconds(lambda ids=ids: ours_prefill(ours, ids)))
                reference_times.append(seconds(lambda ids=ids: mlx_lm_prefill(reference, ids)))
            median = statistics.median
            report(f"prefill {length}", length, median(ours_times), median(reference_times))
        ours_times, reference_times = [], []
        for _ in range(args.repeat):
            steps = step_seconds(
                ours_steps(ours, prompt[:128]), mlx_lm_steps(reference, prompt[:128]), args.decode
            )
            ours_times += steps[0]
            reference_times += steps[1]
        name = f"decode {args.decode} after 128"
        report(name, 1, statistics.median(ours_times), statistics.median(reference_times))
        from mlx_lm.generate import generate_step

        ours_times, reference_times = [], []
        for _ in range(args.repeat):
            ours_times += loop_seconds(ours.tokens(prompt[:128], args.decode, stop_at_eos=False))
            reference_times += loop_seconds(
                generate_step(mx.array(prompt[:128]), reference, max_tokens=args.decode)
            )
        name = f"generate {args.decode} after 128"
        report(name, 1, statistics.median(ours_times), statistics.median(reference_times))


if __name__ == "__main__":
    main()
