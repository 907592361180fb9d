"""torch.save checkpoints: torch2mlx must agree with torch.load(weights_only=True) bit for bit."""

from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import torch2mlx
from conftest import (
    DTYPES,
    TORCH_TO_NUMPY,
    assert_same_tensor,
    flatten_torch,
    random_tensor,
    rewrite_zip,
    torch_save,
    trained_cnn,
)


def load_both(path: Path) -> tuple[dict[str, np.ndarray], dict[str, torch.Tensor]]:
    return torch2mlx.load_state_dict(path, key=""), flatten_torch(
        torch.load(path, weights_only=True)
    )


# ---------------------------------------------------------------------------------------
# One checkpoint holding every case, saved and read once per module.


def _everything() -> dict:
    base = random_tensor(torch.float32, (6, 10), seed=1)
    shared = random_tensor(torch.float32, (4, 4), seed=2)
    return {
        "dtypes": {
            str(dtype).removeprefix("torch."): random_tensor(dtype, (3, 5), seed=i)
            for i, (dtype, _) in enumerate(DTYPES)
        },
        "views": {
            "transposed": base.t(),
            "step": base[1::2, ::3],
            "offset": base[2:, 4:],
            "narrow_last": base[5, 2:7],
            "expanded": random_tensor(torch.float32, (1, 7), seed=3).expand(5, 7),
            "permuted": random_tensor(torch.int16, (2, 3, 4), seed=4).permute(2, 0, 1),
            "bf16_step": random_tensor(torch.bfloat16, (8, 8), seed=5)[::2, 1::3],
            "uint16_t": random_tensor(torch.uint16, (3, 4), seed=6).t(),
            "base": base,
        },
        "tied": {"encoder": shared, "decoder": shared, "row": shared[1]},
        "nested": {"a": {"b": [{"c": torch.arange(3)}, (torch.ones(2), torch.zeros(1, 2))]}},
        "empty": torch.empty(0, 3),
        "empty_int": torch.empty(4, 0, dtype=torch.int32),
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "scalar_int": torch.tensor(7),
        "param": torch.nn.Parameter(random_tensor(torch.float32, (2, 3), seed=7)),
        "frozen_param": torch.nn.Parameter(torch.arange(4.0), requires_grad=False),
    }


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    path = torch_save(_everything(), tmp_path_factory.mktemp("torch") / "everything.pt")
    ours, theirs = load_both(path)
    return path, ours, theirs


def test_same_keys_as_torch(everything: tuple[Path, dict, dict]) -> None:
    _, ours, theirs = everything
    assert list(ours) == list(theirs)
    assert "nested.a.b.0.c" in ours
    assert "nested.a.b.1.0" in ours
    assert "nested.a.b.1.1" in ours


@pytest.mark.parametrize(("dtype", "numpy_name"), DTYPES, ids=[n for _, n in DTYPES])
def test_every_dtype_bit_for_bit(
    everything: tuple[Path, dict, dict], dtype: torch.dtype, numpy_name: str
) -> None:
    _, ours, theirs = everything
    key = f"dtypes.{str(dtype).removeprefix('torch.')}"
    assert theirs[key].dtype == dtype
    assert ours[key].dtype.name == numpy_name
    assert_same_tensor(ours[key], theirs[key], key)


@pytest.mark.parametrize(
    "name",
    [
        "transposed",
        "step",
        "offset",
        "narrow_last",
        "expanded",
        "permuted",
        "bf16_step",
        "uint16_t",
        "base",
    ],
)
def test_views_keep_strides_and_bits(everything: tuple[Path, dict, dict], name: str) -> None:
    _, ours, theirs = everything
    assert_same_tensor(ours[f"views.{name}"], theirs[f"views.{name}"], name)


def test_views_layout_is_what_torch_saved(everything: tuple[Path, dict, dict]) -> None:
    _, ours, theirs = everything
    assert theirs["views.expanded"].stride() == (0, 1)  # torch.save keeps stride 0
    assert ours["views.expanded"].strides == (0, 4)
    assert not ours["views.transposed"].flags.c_contiguous
    assert theirs["views.offset"].storage_offset() == 2 * 10 + 4
    # The views and their base are windows onto one storage, in torch and here.
    for name in ("transposed", "step", "offset", "narrow_last"):
        assert np.shares_memory(ours[f"views.{name}"], ours["views.base"]), name
        assert (
            theirs[f"views.{name}"].untyped_storage().data_ptr()
            == theirs["views.base"].untyped_storage().data_ptr()
        )


def test_tied_weights_share_memory(everything: tuple[Path, dict, dict]) -> None:
    _, ours, theirs = everything
    enc, dec, row = ours["tied.encoder"], ours["tied.decoder"], ours["tied.row"]
    assert np.shares_memory(enc, dec)
    assert np.shares_memory(enc, row)
    t_enc, t_dec = theirs["tied.encoder"], theirs["tied.decoder"]
    assert t_enc.untyped_storage().data_ptr() == t_dec.untyped_storage().data_ptr()
    assert theirs["tied.row"].untyped_storage().data_ptr() == t_enc.untyped_storage().data_ptr()
    for key in ("tied.encoder", "tied.decoder", "tied.row"):
        assert_same_tensor(ours[key], theirs[key], key)
    # Untied tensors do not share memory.
    assert not np.shares_memory(enc, ours["param"])


def test_nested_containers(everything: tuple[Path, dict, dict]) -> None:
    _, ours, theirs = everything
    for key in ("nested.a.b.0.c", "nested.a.b.1.0", "nested.a.b.1.1"):
        assert_same_tensor(ours[key], theirs[key], key)
    np.testing.assert_array_equal(ours["nested.a.b.0.c"], [0, 1, 2])


@pytest.mark.parametrize(
    ("root", "keys"),
    [
        ({"a": {"b": [{"c": torch.ones(1)}]}}, ["a.b.0.c"]),
        ([torch.ones(1), (torch.zeros(2), {"x": torch.ones(3)})], ["0", "1.0", "1.1.x"]),
        ({3: torch.ones(1), "t": (torch.ones(2),)}, ["3", "t.0"]),
    ],
    ids=["dict", "list", "int-key"],
)
def test_dotted_keys_from_the_root(tmp_path: Path, root: object, keys: list[str]) -> None:
    ours, theirs = load_both(torch_save(root, tmp_path / "nested.pt"))
    assert list(ours) == list(theirs) == keys
    for key in keys:
        assert_same_tensor(ours[key], theirs[key], key)


def test_empty_and_zero_d(everything: tuple[Path, dict, dict]) -> None:
    _, ours, theirs = everything
    assert ours["empty"].shape == (0, 3)
    assert ours["empty"].dtype == np.float32
    assert ours["empty_int"].shape == (4, 0)
    assert ours["empty_int"].dtype == np.int32
    assert ours["scalar"].shape == ()
    assert ours["scalar"].dtype == np.float64
    assert ours["scalar"][()] == 2.5
    assert ours["scalar_int"][()] == 7
    for key in ("empty", "empty_int", "scalar", "scalar_int"):
        assert_same_tensor(ours[key], theirs[key], key)


def test_parameters_become_arrays(everything: tuple[Path, dict, dict]) -> None:
    _, ours, theirs = everything
    assert isinstance(theirs["param"], torch.nn.Parameter)
    assert_same_tensor(ours["param"], theirs["param"], "param")
    assert_same_tensor(ours["frozen_param"], theirs["frozen_param"], "frozen_param")


def test_inspect_matches_load(everything: tuple[Path, dict, dict]) -> None:
    path, ours, _ = everything
    info = torch2mlx.inspect_checkpoint(path)
    assert info.format == "torch"
    assert info.files == [str(path)]
    assert [t.name for t in info.tensors] == list(ours)
    for tensor in info.tensors:
        array = ours[tensor.name]
        assert tensor.dtype == array.dtype.name
        assert tensor.shape == array.shape
        assert tensor.nbytes == array.size * array.itemsize


# ---------------------------------------------------------------------------------------
# Real modules and training checkpoints.


def test_module_state_dict(tmp_path: Path) -> None:
    model = trained_cnn()
    state = model.state_dict()
    assert isinstance(state, OrderedDict)
    path = torch_save(state, tmp_path / "cnn.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a plain state dict has nothing to warn about
        ours = torch2mlx.load_state_dict(path)
    theirs = torch.load(path, weights_only=True)
    assert list(ours) == list(theirs) == list(state)
    for key, tensor in theirs.items():
        assert_same_tensor(ours[key], tensor, key)
    tracked = ours["features.1.num_batches_tracked"]
    assert tracked.dtype == np.int64
    assert tracked.shape == ()
    assert tracked[()] == 2
    assert not np.array_equal(ours["features.1.running_var"], np.ones(8, np.float32))


def _training_checkpoint(tmp_path: Path, first: str = "state_dict") -> tuple[Path, dict]:
    model = trained_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(1, 3, 8, 8)).sum().backward()
    optimizer.step()
    state = model.state_dict()
    parts = {"state_dict": state, "epoch": 3, "optimizer": optimizer.state_dict()}
    order = [first, *(k for k in parts if k != first)]
    path = torch_save({k: parts[k] for k in order}, tmp_path / "train.pt")
    return path, state


def test_training_checkpoint_is_unwrapped_with_a_warning(tmp_path: Path) -> None:
    path, state = _training_checkpoint(tmp_path)
    with pytest.warns(torch2mlx.CheckpointWarning, match="epoch") as caught:
        ours = torch2mlx.load_state_dict(path)
    assert list(ours) == list(state)
    message = str(caught[0].message)
    assert "epoch=3" in message
    assert "optimizer" in message
    theirs = torch.load(path, weights_only=True)["state_dict"]
    for key, tensor in theirs.items():
        assert_same_tensor(ours[key], tensor, key)


def test_training_warning_names_every_skipped_top_level_key(tmp_path: Path) -> None:
    # With the optimizer saved first, its many hyperparameters come before "epoch".
    path, state = _training_checkpoint(tmp_path, first="optimizer")
    with pytest.warns(torch2mlx.CheckpointWarning, match="epoch"):
        ours = torch2mlx.load_state_dict(path)
    assert list(ours) == list(state)


def test_training_checkpoint_explicit_key(tmp_path: Path) -> None:
    path, state = _training_checkpoint(tmp_path)
    with pytest.warns(torch2mlx.CheckpointWarning):
        ours = torch2mlx.load_state_dict(path, key="state_dict")
    assert list(ours) == list(state)
    with pytest.warns(torch2mlx.CheckpointWarning):
        everything = torch2mlx.load_state_dict(path, key="")
    assert "state_dict.features.0.weight" in everything
    assert any(k.startswith("optimizer.state.") for k in everything)


def test_training_checkpoint_unknown_key(tmp_path: Path) -> None:
    path, _ = _training_checkpoint(tmp_path)
    with pytest.raises(KeyError, match="nope") as caught:
        torch2mlx.load_state_dict(path, key="nope")
    assert "state_dict" in str(caught.value)  # lists what is there


def test_hugging_face_names_are_not_unwrapped(tmp_path: Path) -> None:
    state = {
        "model.embed_tokens.weight": random_tensor(torch.float16, (10, 4), seed=1),
        "model.layers.0.mlp.weight": random_tensor(torch.float16, (4, 4), seed=2),
        "model.norm.weight": torch.ones(4, dtype=torch.float16),
        "lm_head.weight": random_tensor(torch.float16, (10, 4), seed=3),
    }
    path = torch_save(state, tmp_path / "pytorch_model.bin")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = torch2mlx.load_state_dict(path)
    assert list(ours) == list(state)
    for key, tensor in state.items():
        assert_same_tensor(ours[key], tensor, key)


# ---------------------------------------------------------------------------------------
# Big-endian archives (as torch.save writes them on s390x).


def test_big_endian_checkpoint(tmp_path: Path) -> None:
    base = random_tensor(torch.float32, (4, 6), seed=11)
    state = {
        "f64": random_tensor(torch.float64, (3, 2), seed=1),
        "f32": base,
        "f32_view": base[1:, ::2],  # shares f32's storage: swapped once
        "f16": random_tensor(torch.float16, (5,), seed=2),
        "bf16": random_tensor(torch.bfloat16, (2, 3), seed=3),
        "i64": random_tensor(torch.int64, (4,), seed=4),
        "i32": random_tensor(torch.int32, (2, 2), seed=5),
        "i16": random_tensor(torch.int16, (3,), seed=6),
        "i8": random_tensor(torch.int8, (3,), seed=7),
        "u8": random_tensor(torch.uint8, (3,), seed=8),
        "bool": random_tensor(torch.bool, (4,), seed=9),
        "scalar": torch.tensor(1.5),
    }
    little = torch_save(state, tmp_path / "little.pt")

    # torch numbers storages "0", "1", ... in order of first use.
    itemsize_of_key: dict[str, int] = {}
    seen: dict[int, str] = {}
    for tensor in state.values():
        pointer = tensor.untyped_storage().data_ptr()
        if pointer not in seen:
            seen[pointer] = str(len(seen))
            itemsize_of_key[seen[pointer]] = tensor.element_size()

    def to_big(name: str, data: bytes) -> bytes:
        if name.endswith("/byteorder"):
            return b"big"
        folder, _, key = name.rpartition("/")
        if folder.endswith("/data"):
            size = itemsize_of_key[key]
            return np.frombuffer(data, dtype=f"<u{size}").astype(f">u{size}").tobytes()
        return data

    big = rewrite_zip(little, tmp_path / "big.pt", to_big)
    assert big.read_bytes() != little.read_bytes()

    # torch itself reads the rewritten file back to the original values...
    theirs = torch.load(big, weights_only=True)
    for key, tensor in state.items():
        assert_same_tensor(_np(theirs[key]), tensor, key)
    # ...and so does torch2mlx.
    ours = torch2mlx.load_state_dict(big)
    assert list(ours) == list(state)
    for key, tensor in state.items():
        assert_same_tensor(ours[key], tensor, key)
    assert np.shares_memory(ours["f32"], ours["f32_view"])
    assert torch2mlx.inspect_checkpoint(big).metadata == {"byteorder": "big"}


def _np(tensor: torch.Tensor) -> np.ndarray:
    """A torch tensor as a numpy array with the same strides (bfloat16 via ml_dtypes)."""
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(TORCH_TO_NUMPY[torch.bfloat16])
    return tensor.numpy()


# ---------------------------------------------------------------------------------------
# Arrays are private copies-on-write of the file.


def test_arrays_are_writable_and_the_file_is_untouched(tmp_path: Path) -> None:
    state = {
        "w": random_tensor(torch.float32, (8, 8), seed=1),
        "tied": None,
        "b": random_tensor(torch.bfloat16, (8,), seed=2),
    }
    state["tied"] = state["w"]
    path = torch_save(state, tmp_path / "w.pt")
    before = path.read_bytes()
    ours = torch2mlx.load_state_dict(path)
    for array in ours.values():
        assert array.flags.writeable
    ours["w"][:] = 0
    ours["b"][...] = 1
    assert np.all(ours["tied"] == 0)  # tied weights stay tied under writes
    assert path.read_bytes() == before
    again = torch2mlx.load_state_dict(path)
    for key, tensor in torch.load(path, weights_only=True).items():
        assert_same_tensor(again[key], tensor, key)


def test_zip64_archives_are_read(tmp_path, monkeypatch):
    """Archives over 4 GB store offsets and sizes in zip64 fields. Lowering zipfile's
    limit makes it write them for a small archive too (Debian's minizip could not read
    such offsets: the reason the core parses zips itself)."""
    import zipfile

    state = {
        "a": torch.randn(3, 4),
        "b": torch.arange(10),
        "c": torch.randn(2, dtype=torch.float16),
    }
    torch.save(state, tmp_path / "plain.pth")
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 0)
    with (
        zipfile.ZipFile(tmp_path / "plain.pth") as source,
        zipfile.ZipFile(tmp_path / "zip64.pth", "w", compression=zipfile.ZIP_STORED) as target,
    ):
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
    with zipfile.ZipFile(tmp_path / "zip64.pth") as check:
        assert any(i.extra.startswith(b"\x01\x00") for i in check.infolist())  # zip64 extras
    loaded = torch2mlx.load_state_dict(tmp_path / "zip64.pth", key="")
    for name, tensor in state.items():
        np.testing.assert_array_equal(loaded[name], tensor.numpy())


FLOAT8 = ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu"]


@pytest.mark.parametrize("dtype", FLOAT8)
def test_float8_tensor_is_refused_by_name_and_dtype(tmp_path: Path, dtype: str) -> None:
    # Was refused as "_rebuild_tensor_v3 without a dtype", naming neither.
    state = {"fc.bias": torch.ones(2), "fc.weight": torch.ones(4).to(getattr(torch, dtype))}
    path = torch_save(state, tmp_path / "fp8.pt")
    assert torch.load(path, weights_only=True)["fc.weight"].dtype == getattr(torch, dtype)
    for read in (torch2mlx.load_state_dict, torch2mlx.inspect_checkpoint):
        with pytest.raises(torch2mlx.Torch2MLXError) as caught:
            read(path)
        message = str(caught.value)
        assert message.startswith(f"[pickle] {path} (fp8/data.pkl): "), message
        assert (
            f"tensor 'fc.weight' is {dtype}, which MLX has no dtype for; cast it to bfloat16 "
            "in torch before saving"
        ) in message


def _with_version(source: Path, destination: Path, version: bytes) -> Path:
    return rewrite_zip(
        source, destination, lambda name, data: version if name.endswith("/version") else data
    )


@pytest.mark.parametrize("version", [b"11\n", b"12", b"0\n", b"-1", b"abc"])
def test_format_versions_torch_refuses_are_refused(tmp_path: Path, version: bytes) -> None:
    genuine = torch_save({"w": torch.ones(3)}, tmp_path / "genuine.pt")
    path = _with_version(genuine, tmp_path / "versioned.pt", version)
    with pytest.raises(RuntimeError, match="version"):
        torch.load(path, weights_only=True)
    with pytest.raises(torch2mlx.Torch2MLXError) as caught:
        torch2mlx.load_state_dict(path)
    message = str(caught.value)
    assert message.startswith(f"[torch] {path}: genuine/version "), message
    number = version.strip().decode()
    if number.lstrip("-").isdigit() and int(number) > 10:
        assert f"says format version {number}, but torch 2.13 reads at most version 10" in message
    elif number.lstrip("-").isdigit():
        assert f"says format version {number}, but torch reads only versions 1 to 10" in message
    else:
        assert f"holds '{number}', not a format version torch can read" in message


@pytest.mark.parametrize("version", [b"1", b"3\n", b"10\n"])
def test_format_versions_torch_reads_are_read(tmp_path: Path, version: bytes) -> None:
    genuine = torch_save({"w": torch.arange(3.0)}, tmp_path / "genuine.pt")
    path = _with_version(genuine, tmp_path / "versioned.pt", version)
    assert torch.load(path, weights_only=True)["w"].tolist() == [0.0, 1.0, 2.0]
    assert torch2mlx.load_state_dict(path)["w"].tolist() == [0.0, 1.0, 2.0]
