"""Hugging Face model folders: sharded safetensors, sharded torch.save, single files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch

import torch2mlx
from conftest import assert_same_tensor, random_tensor

SHARDS = 3


def hf_state() -> dict[str, torch.Tensor]:
    """A small decoder's weights under Hugging Face names, in several dtypes."""
    state: dict[str, torch.Tensor] = {
        "model.embed_tokens.weight": random_tensor(torch.bfloat16, (32, 8), seed=0)
    }
    for layer in range(3):
        prefix = f"model.layers.{layer}"
        state[f"{prefix}.self_attn.q_proj.weight"] = random_tensor(torch.float16, (8, 8), layer)
        state[f"{prefix}.self_attn.k_proj.weight"] = random_tensor(torch.float32, (4, 8), layer)
        state[f"{prefix}.input_layernorm.weight"] = random_tensor(torch.float32, (8,), layer)
        state[f"{prefix}.mlp.gate_proj.weight"] = random_tensor(torch.bfloat16, (16, 8), layer)
    state["model.norm.weight"] = torch.ones(8)
    state["model.rotary.inv_freq"] = random_tensor(torch.float64, (4,), seed=9)
    state["model.position_ids"] = torch.arange(16, dtype=torch.int64).unsqueeze(0)
    state["lm_head.weight"] = random_tensor(torch.bfloat16, (32, 8), seed=10)
    return state


def write_sharded(folder: Path, state: dict[str, torch.Tensor], kind: str) -> Path:
    """Splits `state` over SHARDS files the way transformers does and writes the index."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(state)
    weight_map: dict[str, str] = {}
    for shard in range(SHARDS):
        part = {n: state[n].contiguous() for n in names[shard::SHARDS]}
        if kind == "safetensors":
            file = f"model-{shard + 1:05d}-of-{SHARDS:05d}.safetensors"
            safetensors.torch.save_file(part, folder / file, metadata={"format": "pt"})
        else:
            file = f"pytorch_model-{shard + 1:05d}-of-{SHARDS:05d}.bin"
            torch.save(part, folder / file)
        weight_map.update(dict.fromkeys(part, file))
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = folder / (
        "model.safetensors.index.json" if kind == "safetensors" else "pytorch_model.bin.index.json"
    )
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    return index


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return hf_state()


@pytest.fixture(params=["safetensors", "torch"])
def sharded(request: pytest.FixtureRequest, tmp_path: Path, state: dict) -> tuple[str, Path]:
    return request.param, write_sharded(tmp_path / "model", state, request.param)


def assert_matches(loaded: dict, state: dict[str, torch.Tensor]) -> None:
    assert sorted(loaded) == sorted(state)
    for name, tensor in state.items():
        assert_same_tensor(loaded[name], tensor, name)


def test_folder_and_index_read_every_tensor(sharded: tuple[str, Path], state: dict) -> None:
    _, index = sharded
    assert_matches(torch2mlx.load_state_dict(index.parent), state)
    assert_matches(torch2mlx.load_state_dict(index), state)


def test_inspect_reports_the_sharded_format(sharded: tuple[str, Path], state: dict) -> None:
    kind, index = sharded
    info = torch2mlx.inspect_checkpoint(index.parent)
    assert (
        info.format == {"safetensors": "hf-sharded-safetensors", "torch": "hf-sharded-torch"}[kind]
    )
    assert info.files[0] == str(index)
    assert sorted(Path(f).name for f in info.files[1:]) == sorted(
        p.name for p in index.parent.iterdir() if p != index
    )
    assert len(info.files) == 1 + SHARDS
    total = sum(t.numel() * t.element_size() for t in state.values())
    assert info.total_bytes == total
    assert info.metadata == {"total_size": str(total)}
    assert sorted(t.name for t in info.tensors) == sorted(state)
    assert torch2mlx.inspect_checkpoint(index).format == info.format


def test_safetensors_index_is_preferred(tmp_path: Path, state: dict) -> None:
    folder = tmp_path / "both"
    write_sharded(folder, state, "torch")
    write_sharded(folder, state, "safetensors")
    assert torch2mlx.inspect_checkpoint(folder).format == "hf-sharded-safetensors"


def _edit_index(index: Path, edit) -> None:
    content = json.loads(index.read_text())
    edit(content["weight_map"])
    index.write_text(json.dumps(content))


def assert_index_error(index: Path, *fragments: str) -> None:
    for target in (index, index.parent):
        with pytest.raises(torch2mlx.Torch2MLXError) as caught:
            torch2mlx.load_state_dict(target)
        message = str(caught.value)
        assert message.startswith("[checkpoint] "), message
        assert index.name in message, message
        for fragment in fragments:
            assert fragment in message, message


def test_missing_shard(sharded: tuple[str, Path]) -> None:
    _, index = sharded
    victim = sorted(p for p in index.parent.iterdir() if p != index)[1]
    victim.unlink()
    assert_index_error(index, victim.name, "missing")


def test_tensor_listed_but_absent_from_its_shard(sharded: tuple[str, Path]) -> None:
    _, index = sharded
    shard = json.loads(index.read_text())["weight_map"]["lm_head.weight"]
    _edit_index(index, lambda m: m.update({"lm_head.bias": shard}))
    assert_index_error(index, "'lm_head.bias'", shard, "not in it")


def test_tensor_in_a_shard_but_not_in_the_index(sharded: tuple[str, Path]) -> None:
    _, index = sharded
    _edit_index(index, lambda m: m.pop("model.norm.weight"))
    assert_index_error(index, "'model.norm.weight'", "not at all")


@pytest.mark.parametrize(
    "bad", ["../model-00001-of-00003.safetensors", "sub/shard.safetensors", "/etc/passwd", ".."]
)
def test_shard_names_must_stay_in_the_folder(tmp_path: Path, state: dict, bad: str) -> None:
    index = write_sharded(tmp_path / "model", state, "safetensors")
    # A real file where "../" points, so only the name check can refuse it.
    (tmp_path / "model-00001-of-00003.safetensors").write_bytes(
        (tmp_path / "model" / "model-00001-of-00003.safetensors").read_bytes()
    )
    _edit_index(index, lambda m: m.update({"model.norm.weight": bad}))
    assert_index_error(index, f"'{bad}'", "not a plain file name")


def test_index_naming_itself_is_refused(tmp_path: Path, state: dict) -> None:
    index = write_sharded(tmp_path / "model", state, "safetensors")
    _edit_index(index, lambda m: m.update({"model.norm.weight": index.name}))
    assert_index_error(index, "is an index")


def test_index_that_is_not_json(tmp_path: Path, state: dict) -> None:
    index = write_sharded(tmp_path / "model", state, "safetensors")
    index.write_text('{"weight_map": {')
    assert_index_error(index, "not valid JSON")
    index.write_text('{"metadata": {}}')
    assert_index_error(index, "no 'weight_map'")


def test_folder_with_a_single_safetensors_file(tmp_path: Path, state: dict) -> None:
    folder = tmp_path / "single"
    folder.mkdir()
    safetensors.torch.save_file(state, folder / "model.safetensors")
    (folder / "config.json").write_text("{}")
    loaded = torch2mlx.load_state_dict(folder)
    assert_matches(loaded, state)
    info = torch2mlx.inspect_checkpoint(folder)
    assert info.format == "safetensors"
    assert info.files == [str(folder / "model.safetensors")]


def test_folder_with_a_single_torch_file(tmp_path: Path, state: dict) -> None:
    folder = tmp_path / "single"
    folder.mkdir()
    torch.save(state, folder / "pytorch_model.bin")
    assert_matches(torch2mlx.load_state_dict(folder), state)
    assert torch2mlx.inspect_checkpoint(folder).format == "torch"


def test_folder_without_weights(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(torch2mlx.Torch2MLXError) as caught:
        torch2mlx.load_state_dict(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"[checkpoint] {tmp_path}: folder holds none of")
    assert "model.safetensors" in message


def test_an_index_of_a_hundred_thousand_tensors_is_read(tmp_path: Path) -> None:
    """Regression: the index parser was quadratic in the number of tensors."""
    import numpy as np
    import safetensors.numpy

    count = 100_000
    folder = tmp_path / "many"
    folder.mkdir()
    weight_map = {}
    for shard in range(2):
        file = f"model-{shard + 1:05d}-of-00002.safetensors"
        part = {f"layers.{i}.weight": np.full(1, i, np.float32) for i in range(shard, count, 2)}
        safetensors.numpy.save_file(part, str(folder / file))
        weight_map.update(dict.fromkeys(part, file))
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 4 * count}, "weight_map": weight_map}))
    info = torch2mlx.inspect_checkpoint(folder)
    assert info.format == "hf-sharded-safetensors"
    assert sorted(t.name for t in info.tensors) == sorted(weight_map)
    assert info.metadata["total_size"] == str(4 * count)
    arrays = torch2mlx.load_state_dict(index)
    assert arrays["layers.99999.weight"][0] == 99999
