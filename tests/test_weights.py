"""convert_weights: registry rules keyed on module type, names, dtypes, shards, reverse."""

from __future__ import annotations

import hashlib
import json
import warnings

import mlx.core as mx
import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

import torch2mlx
import torch2mlx.weights
from torch2mlx.weights import ConversionWarning, convert_weights, module_map


def _save(model: nn.Module, path) -> None:
    torch.save(model.state_dict(), path)


def _mlx(path) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in mx.load(str(path)).items()}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_conv_weights_become_channels_last_and_sequential_children_move_under_layers(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv1d(8, 4, 1))
    _save(model, tmp_path / "m.pth")
    report = convert_weights(tmp_path / "m.pth", tmp_path / "m.safetensors", model=model)
    out = _mlx(tmp_path / "m.safetensors")
    sd = model.state_dict()
    np.testing.assert_array_equal(
        out["layers.0.weight"], sd["0.weight"].permute(0, 2, 3, 1).numpy()
    )
    np.testing.assert_array_equal(out["layers.1.running_var"], sd["1.running_var"].numpy())
    assert "layers.1.num_batches_tracked" not in out
    assert ("1.num_batches_tracked", report["dropped"][0][1]) == tuple(report["dropped"][0])
    key_map = json.loads((tmp_path / "m.safetensors.key_map.json").read_text())
    assert key_map["0.weight"] == "layers.0.weight"


def test_kernel_size_1_conv_is_permuted_once_by_type_not_guessed_from_shape(tmp_path):
    conv = nn.Conv2d(16, 32, kernel_size=1)
    _save(conv, tmp_path / "c.pth")
    convert_weights(tmp_path / "c.pth", tmp_path / "c.safetensors", model=conv)
    weight = _mlx(tmp_path / "c.safetensors")["weight"]
    assert weight.shape == (32, 1, 1, 16)
    np.testing.assert_array_equal(weight[:, 0, 0, :], conv.weight[:, :, 0, 0].detach().numpy())


def test_depthwise_weights_keep_their_bytes(tmp_path):
    conv = nn.Conv2d(8, 8, 3, groups=8)
    _save(conv, tmp_path / "d.pth")
    convert_weights(tmp_path / "d.pth", tmp_path / "d.safetensors", model=conv)
    weight = _mlx(tmp_path / "d.safetensors")["weight"]
    assert weight.shape == (8, 3, 3, 1)
    # [C, 1, kH, kW] and [C, kH, kW, 1] hold the same bytes.
    assert weight.tobytes() == conv.weight.detach().numpy().tobytes()


def test_grouped_transposed_conv_is_permuted_per_group(tmp_path):
    deconv = nn.ConvTranspose2d(6, 4, 3, groups=2)  # torch weight [6, 2, 3, 3]
    _save(deconv, tmp_path / "t.pth")
    convert_weights(tmp_path / "t.pth", tmp_path / "t.safetensors", model=deconv)
    weight = _mlx(tmp_path / "t.safetensors")["weight"]
    torch_weight = deconv.weight.detach().numpy().reshape(2, 3, 2, 3, 3)  # [g, I/g, O/g, kH, kW]
    expected = torch_weight.transpose(0, 2, 3, 4, 1).reshape(4, 3, 3, 3)  # [O, kH, kW, I/g]
    np.testing.assert_array_equal(weight, expected)


def test_hugging_face_conv1d_is_transposed(tmp_path):
    from transformers.pytorch_utils import Conv1D

    layer = Conv1D(12, 5)  # weight [in=5, out=12]
    _save(layer, tmp_path / "h.pth")
    convert_weights(tmp_path / "h.pth", tmp_path / "h.safetensors", model=layer)
    np.testing.assert_array_equal(
        _mlx(tmp_path / "h.safetensors")["weight"], layer.weight.detach().numpy().T
    )


def test_without_a_model_tensors_are_copied_and_a_warning_says_so(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    _save(model, tmp_path / "m.pth")
    with pytest.warns(ConversionWarning, match="layouts were not converted"):
        convert_weights(tmp_path / "m.pth", tmp_path / "m.safetensors")
    out = _mlx(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(out["0.weight"], model[0].weight.detach().numpy())
    assert not (tmp_path / "m.safetensors.key_map.json").exists()


def test_compile_and_data_parallel_prefixes_are_stripped(tmp_path):
    model = nn.Linear(4, 3)
    state = {f"module._orig_mod.{k}": v for k, v in model.state_dict().items()}
    torch.save(state, tmp_path / "p.pth")
    report = convert_weights(tmp_path / "p.pth", tmp_path / "p.safetensors", model=model)
    assert set(_mlx(tmp_path / "p.safetensors")) == {"weight", "bias"}
    assert any("module." in note for note in report["notes"])
    assert any("_orig_mod." in note for note in report["notes"])


@pytest.mark.filterwarnings("ignore:.*weight_norm` is deprecated:FutureWarning")
@pytest.mark.parametrize("style", ["old", "parametrizations"])
def test_weight_norm_is_folded_into_a_plain_weight(tmp_path, style):
    layer = nn.Linear(6, 5)
    if style == "old":
        layer = torch.nn.utils.weight_norm(layer)
    else:
        layer = torch.nn.utils.parametrizations.weight_norm(layer)
    with torch.no_grad():
        expected = layer.weight.detach().clone().numpy()
    torch.save(layer.state_dict(), tmp_path / "w.pth")
    plain = nn.Linear(6, 5)
    convert_weights(tmp_path / "w.pth", tmp_path / "w.safetensors", model=plain)
    out = _mlx(tmp_path / "w.safetensors")
    assert set(out) == {"weight", "bias"}
    np.testing.assert_allclose(out["weight"], expected, rtol=1e-6, atol=1e-6)


def test_unknown_module_with_tensors_is_reported_by_path_and_type(tmp_path):
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.gain = nn.Parameter(torch.ones(3))

    model = nn.Sequential(nn.Linear(3, 3), Scale())
    _save(model, tmp_path / "u.pth")
    with pytest.raises(torch2mlx.Torch2MLXError, match=r"'1.gain' \(module '1' of type .*Scale"):
        convert_weights(tmp_path / "u.pth", tmp_path / "u.safetensors", model=model)
    assert not (tmp_path / "u.safetensors").exists()
    with pytest.warns(ConversionWarning, match="no rule covers"):
        convert_weights(
            tmp_path / "u.pth", tmp_path / "u.safetensors", model=model, keep_unknown=True
        )
    assert "layers.1.gain" in _mlx(tmp_path / "u.safetensors")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_dtype_cast_matches_torch_bit_for_bit_and_keeps_integer_buffers(tmp_path, dtype):
    model = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32))
    model[0].weight.data.mul_(1000)  # exercise rounding over a wide range
    _save(model, tmp_path / "m.pth")
    convert_weights(tmp_path / "m.pth", tmp_path / "m.safetensors", model=model, dtype=dtype)
    out = mx.load(str(tmp_path / "m.safetensors"))
    expected = model[0].weight.detach().to(getattr(torch, dtype))
    got = out["layers.0.weight"]
    assert got.dtype == getattr(mx, dtype)
    np.testing.assert_array_equal(
        np.asarray(got.view(mx.int16)), expected.view(torch.int16).numpy()
    )


def test_large_outputs_are_sharded_with_an_index_that_mlx_reads(tmp_path):
    model = nn.Sequential(*[nn.Linear(64, 64) for _ in range(6)])
    _save(model, tmp_path / "m.pth")
    report = convert_weights(
        tmp_path / "m.pth", tmp_path / "model.safetensors", model=model, shard_size=40_000
    )
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert len(report["files"]) == len(shards) + 1
    loaded = {}
    for shard in shards:
        loaded.update(mx.load(str(tmp_path / shard)))
    assert set(loaded) == set(index["weight_map"])
    reread = torch2mlx.load_state_dict(tmp_path)  # our own reader takes the folder
    assert set(reread) == set(loaded)


def test_a_hundred_thousand_tensors_are_written_and_sharded_with_a_complete_index(tmp_path):
    """At the scale of mixture-of-experts checkpoints: every name in its shard's header and
    in the index. (The writer's header and the index were built by a linear scan per tensor:
    about a minute each at this count, about a second now; bench_many_tensors.py times it.)"""
    count = 100_000
    arrays = {f"experts.{i}.weight": np.full((1,), i, np.float32) for i in range(count)}
    torch2mlx.save_safetensors(tmp_path / "many.safetensors", arrays)
    with pytest.warns(ConversionWarning, match="no model given"):
        convert_weights(
            tmp_path / "many.safetensors",
            tmp_path / "out" / "model.safetensors",
            shard_size=count,  # bytes: four shards of 25k float32 scalars
            progress=False,
        )
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert list(index["weight_map"]) == sorted(arrays)
    shards = sorted(set(index["weight_map"].values()))
    assert shards == [f"model-{i:05d}-of-00004.safetensors" for i in range(1, 5)]
    names = []
    for shard in shards:
        with safe_open(str(tmp_path / "out" / shard), "numpy") as opened:
            keys = list(opened.keys())
            assert {index["weight_map"][name] for name in keys} == {shard}
            assert opened.get_tensor(keys[-1])[0] == int(keys[-1].split(".")[1])
        names.extend(keys)
    assert sorted(names) == sorted(arrays)


def test_metadata_records_format_and_provenance(tmp_path):
    model = nn.Linear(3, 2)
    _save(model, tmp_path / "m.pth")
    convert_weights(tmp_path / "m.pth", tmp_path / "m.safetensors", model=model)
    with safe_open(tmp_path / "m.safetensors", "np") as f:
        metadata = f.metadata()
    assert metadata["format"] == "mlx"
    assert metadata["source"] == "m.pth"
    assert (
        metadata["source_sha256"] == hashlib.sha256((tmp_path / "m.pth").read_bytes()).hexdigest()
    )
    assert metadata["torch2mlx_version"] == torch2mlx.__version__


def test_every_shard_records_the_digest_of_the_source(tmp_path):
    # The digest is hashed beside the writers and written into a placeholder in each header
    # at the end; every shard must carry the same, correct value, and parse as safetensors.
    model = nn.Sequential(*[nn.Linear(64, 64) for _ in range(6)])
    _save(model, tmp_path / "m.pth")
    expected = hashlib.sha256((tmp_path / "m.pth").read_bytes()).hexdigest()
    digest = torch2mlx.weights.start_digest(tmp_path / "m.pth")  # as the CLI does, early
    report = convert_weights(
        tmp_path / "m.pth", tmp_path / "m.safetensors", model=model, shard_size=20000, digest=digest
    )
    assert len(report["files"]) > 3
    for shard in report["files"]:
        if shard.endswith(".safetensors"):
            with safe_open(shard, "np") as f:
                assert f.metadata()["source_sha256"] == expected
    assert digest.wait() == expected


def test_a_sharded_source_records_the_digest_of_each_of_its_files(tmp_path):
    # Converting a folder: its output is sharded too, and every output shard names each
    # source file (index first) with that file's SHA-256.
    model = nn.Sequential(*[nn.Linear(64, 64) for _ in range(6)])
    _save(model, tmp_path / "m.pth")
    source, out = tmp_path / "source", tmp_path / "out"
    source.mkdir()
    out.mkdir()
    convert_weights(tmp_path / "m.pth", source / "model.safetensors", model=model, shard_size=40000)
    files = [source / "model.safetensors.index.json", *sorted(source.glob("model-*.safetensors"))]
    assert len(files) > 2
    expected = ",".join(f"{f.name}:{hashlib.sha256(f.read_bytes()).hexdigest()}" for f in files)
    with pytest.warns(ConversionWarning, match="layouts were not converted"):  # no model given
        report = convert_weights(source, out / "m.safetensors", shard_size=20000)
    shards = [name for name in report["files"] if name.endswith(".safetensors")]
    assert len(shards) > 3
    for shard in shards:
        with safe_open(shard, "np") as f:
            assert f.metadata()["source_sha256"] == expected


def test_a_digest_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(
        torch2mlx.Torch2MLXError, match=r"\[checkpoint\] .*nothing\.pth: no such file"
    ):
        torch2mlx.weights.start_digest(tmp_path / "nothing.pth").wait()


def test_reverse_turns_mlx_weights_back_into_a_loadable_torch_state_dict(tmp_path):
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, groups=1),
        nn.BatchNorm2d(8),
        nn.ConvTranspose2d(8, 4, 2, stride=2, groups=2),
        nn.Conv1d(4, 4, 3, dilation=2),
        nn.Linear(5, 5),
    )
    model.eval()
    _save(model, tmp_path / "m.pth")
    convert_weights(tmp_path / "m.pth", tmp_path / "m.safetensors", model=model)
    convert_weights(
        tmp_path / "m.safetensors", tmp_path / "back.safetensors", model=model, reverse=True
    )
    back = torch2mlx.load_state_dict(tmp_path / "back.safetensors")
    original = model.state_dict()
    assert set(back) == set(original)
    for name, tensor in original.items():
        if name.endswith("num_batches_tracked"):
            assert back[name] == 0  # restored; only training with momentum=None reads it
        else:
            np.testing.assert_array_equal(back[name], tensor.numpy(), err_msg=name)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in back.items()}, strict=True)


def test_module_map_names_every_module_with_its_type(tmp_path):
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU()))
    paths = {path: kind for path, kind, _ in module_map(model)}
    assert paths[""] == "torch.nn.modules.container.Sequential"
    assert paths["1.0"] == "torch.nn.modules.activation.ReLU"


def test_nothing_is_left_behind_when_a_conversion_fails(tmp_path):
    model = nn.Linear(3, 2)
    torch.save({"weight": torch.zeros(2, 3), "bogus": torch.zeros(1)}, tmp_path / "m.pth")
    with pytest.raises(torch2mlx.Torch2MLXError):
        convert_weights(tmp_path / "m.pth", tmp_path / "m.safetensors", model=model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pth"]


def test_registry_covers_every_inference_layer_the_issue_lists():
    registry = torch2mlx.weights.layer_registry()
    for name in [
        "linear.Linear", "linear.Bilinear", "linear.Identity", "sparse.Embedding",
        "sparse.EmbeddingBag", "conv.Conv1d", "conv.Conv2d", "conv.Conv3d",
        "conv.ConvTranspose1d", "conv.ConvTranspose2d", "conv.ConvTranspose3d",
        "normalization.LayerNorm", "normalization.RMSNorm", "normalization.GroupNorm",
        "batchnorm.BatchNorm1d", "batchnorm.BatchNorm2d", "batchnorm.BatchNorm3d",
        "instancenorm.InstanceNorm1d", "instancenorm.InstanceNorm2d",
        "instancenorm.InstanceNorm3d", "activation.MultiheadAttention",
        "transformer.TransformerEncoderLayer", "transformer.TransformerDecoderLayer",
        "transformer.Transformer", "rnn.RNN", "rnn.LSTM", "rnn.GRU", "activation.PReLU",
        "pooling.AdaptiveAvgPool2d", "upsampling.Upsample", "pixelshuffle.PixelShuffle",
        "flatten.Flatten", "flatten.Unflatten", "dropout.Dropout",
    ]:  # fmt: skip
        assert f"torch.nn.modules.{name}" in registry, name
    assert "transformers.pytorch_utils.Conv1D" in registry


def test_to_mlx_module_of_a_warning_free_sequential(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
        mlx_model = torch2mlx.to_mlx_module(model)
    x = torch.randn(3, 4)
    np.testing.assert_allclose(
        np.asarray(mlx_model(mx.array(x.numpy()))), model(x).detach().numpy(), atol=1e-5
    )


@pytest.mark.parametrize(
    ("bits", "group_size"), [(4, 64), (8, 32), (3, 128), (2, 32), (5, 64), (6, 32)]
)
def test_quantized_output_is_bit_identical_to_mx_quantize_and_loads_into_nn_quantize(
    tmp_path, bits, group_size
):
    import mlx.nn as mnn

    model = nn.Sequential(
        nn.Embedding(50, 128), nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 10)
    ).eval()  # the last Linear's input dim splits into whole groups; its 10 rows do not matter
    _save(model, tmp_path / "m.pth")
    report = convert_weights(
        tmp_path / "m.pth",
        tmp_path / "q.safetensors",
        model=model,
        dtype="float16",
        quantize={"bits": bits, "group_size": group_size},
    )
    out = mx.load(str(tmp_path / "q.safetensors"))
    for index in (0, 1, 3):
        weight = mx.array(model[index].weight.detach().numpy()).astype(mx.float16)
        expected = mx.quantize(weight, group_size=group_size, bits=bits)
        for part, name in zip(expected, ("weight", "scales", "biases"), strict=True):
            got = out[f"layers.{index}.{name}"]
            assert got.dtype == part.dtype and got.shape == part.shape
            assert mx.array_equal(got, part, equal_nan=True).item(), (index, name)
    assert not report["notes"]

    mlx_model = torch2mlx.to_mlx_module(model)
    mlx_model.set_dtype(mx.float16)
    mnn.quantize(mlx_model, group_size=group_size, bits=bits)
    mlx_model.load_weights(str(tmp_path / "q.safetensors"), strict=True)
    tokens = torch.randint(0, 50, (2, 7))
    reference = model(tokens).detach().numpy()
    got = np.asarray(mlx_model(mx.array(tokens.numpy())).astype(mx.float32))
    assert np.abs(got - reference).max() < (0.5 if bits <= 3 else 0.2)


def test_layers_that_do_not_split_into_groups_are_not_quantized_and_say_why(tmp_path):
    model = nn.Sequential(nn.Linear(100, 8), nn.Conv1d(8, 8, 1)).eval()
    _save(model, tmp_path / "m.pth")
    report = convert_weights(
        tmp_path / "m.pth", tmp_path / "q.safetensors", model=model, quantize={"bits": 4}
    )
    assert any("layers.0.weight" in note and "multiple of 64" in note for note in report["notes"])
    out = mx.load(str(tmp_path / "q.safetensors"))
    assert out["layers.0.weight"].dtype == mx.float32 and "layers.0.scales" not in out
    assert "layers.1.scales" not in out  # convs are not quantized, as nn.quantize does


def test_missing_output_folders_are_created_and_removed_again_on_failure(tmp_path):
    model = nn.Linear(3, 2)
    _save(model, tmp_path / "m.pth")
    convert_weights(tmp_path / "m.pth", tmp_path / "new" / "sub" / "m.safetensors", model=model)
    assert (tmp_path / "new" / "sub" / "m.safetensors").is_file()
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(torch2mlx.Torch2MLXError):
        convert_weights(
            tmp_path / "bad.pth", tmp_path / "other" / "sub" / "m.safetensors", model=model
        )
    assert not (tmp_path / "other").exists()
