"""safetensors: what torch2mlx writes, the reference library and MLX read, and vice versa."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import ml_dtypes
import mlx.core as mx
import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch
from safetensors import safe_open

import torch2mlx
from conftest import DTYPES, array_bits, assert_same_tensor, random_array, random_tensor

NUMPY_DTYPES = [np.dtype(ml_dtypes.bfloat16) if n == "bfloat16" else np.dtype(n) for _, n in DTYPES]


def assert_bit_identical(got: np.ndarray, expected: np.ndarray, name: str = "") -> None:
    assert got.dtype == expected.dtype, name
    assert got.shape == expected.shape, name
    assert np.array_equal(array_bits(got), array_bits(expected)), name


def sample_arrays() -> dict[str, np.ndarray]:
    arrays = {f"t.{d.name}": random_array(d, (3, 7), seed=i) for i, d in enumerate(NUMPY_DTYPES)}
    arrays["scalar"] = np.array(1.25, dtype=np.float32)
    arrays["scalar_bf16"] = np.array(3, dtype=ml_dtypes.bfloat16)
    arrays["empty"] = np.zeros((0, 4), dtype=np.float16)
    arrays["empty_i64"] = np.zeros((2, 0, 3), dtype=np.int64)
    return arrays


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    arrays = sample_arrays()
    path = tmp_path_factory.mktemp("st") / "out.safetensors"
    torch2mlx.save_safetensors(path, arrays, metadata={"format": "pt", "note": "ünïcode ✓"})
    return path, arrays


def test_reference_library_reads_our_output(written: tuple[Path, dict]) -> None:
    path, arrays = written
    # safetensors.numpy has no bfloat16; read those through safetensors.torch.
    reference = safetensors.torch.load_file(path)
    assert set(reference) == set(arrays)
    for name, expected in arrays.items():
        tensor = reference[name]
        if expected.dtype == ml_dtypes.bfloat16:
            got = tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        else:
            got = tensor.numpy()
        assert_bit_identical(got, expected, name)


def test_numpy_reference_reads_our_output(tmp_path: Path) -> None:
    arrays = {k: v for k, v in sample_arrays().items() if v.dtype != ml_dtypes.bfloat16}
    path = tmp_path / "np.safetensors"
    torch2mlx.save_safetensors(path, arrays)
    reference = safetensors.numpy.load_file(path)
    assert set(reference) == set(arrays)
    for name, expected in arrays.items():
        assert_bit_identical(reference[name], expected, name)


def test_we_read_our_output(written: tuple[Path, dict]) -> None:
    path, arrays = written
    loaded = torch2mlx.load_state_dict(path)
    assert set(loaded) == set(arrays)
    for name, expected in arrays.items():
        assert_bit_identical(loaded[name], expected, name)
    assert loaded["t.bfloat16"].dtype == ml_dtypes.bfloat16
    assert loaded["scalar"].shape == ()
    assert loaded["empty_i64"].shape == (2, 0, 3)


def test_metadata_is_preserved(written: tuple[Path, dict]) -> None:
    path, _ = written
    with safe_open(path, framework="np") as reader:
        assert reader.metadata() == {"format": "pt", "note": "ünïcode ✓"}
    assert torch2mlx.inspect_checkpoint(path).metadata == {"format": "pt", "note": "ünïcode ✓"}


def test_header_layout(written: tuple[Path, dict]) -> None:
    path, arrays = written
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    assert length % 8 == 0  # the data buffer starts 8-aligned
    info = torch2mlx.inspect_checkpoint(path)
    assert info.format == "safetensors"
    assert len(data) == 8 + length + info.total_bytes
    assert {t.name: (t.dtype, t.shape) for t in info.tensors} == {
        name: (a.dtype.name, a.shape) for name, a in arrays.items()
    }


def test_non_contiguous_input(tmp_path: Path) -> None:
    base = random_array(np.float32, (6, 8), seed=3)
    arrays = {
        "transposed": base.T,
        "stepped": base[::2, 1::3],
        "reversed": base[::-1, ::-1],
        "fortran": np.asfortranarray(random_array(np.int16, (4, 5), seed=4)),
        "bf16_view": random_array(ml_dtypes.bfloat16, (5, 6), seed=5)[:, ::2],
        "broadcast": np.broadcast_to(np.arange(3, dtype=np.int32), (4, 3)),
    }
    path = tmp_path / "views.safetensors"
    torch2mlx.save_safetensors(path, arrays)
    loaded = torch2mlx.load_state_dict(path)
    for name, expected in arrays.items():
        assert loaded[name].flags.c_contiguous
        assert_bit_identical(loaded[name], expected, name)
    reference = safetensors.torch.load_file(path)
    np.testing.assert_array_equal(reference["reversed"].numpy(), base[::-1, ::-1])


def test_torch_written_files_are_read_bit_for_bit(tmp_path: Path) -> None:
    tensors = {f"layer.{n}": random_tensor(d, (4, 3), seed=i) for i, (d, n) in enumerate(DTYPES)}
    tensors["scalar"] = torch.tensor(0.5, dtype=torch.bfloat16)
    tensors["empty"] = torch.zeros(0, 2, dtype=torch.float32)
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(tensors, path, metadata={"format": "pt"})
    loaded = torch2mlx.load_state_dict(path)
    assert set(loaded) == set(tensors)
    for name, tensor in tensors.items():
        assert_same_tensor(loaded[name], tensor, name)
    info = torch2mlx.inspect_checkpoint(path)
    assert info.metadata == {"format": "pt"}


def test_mlx_loads_our_output(tmp_path: Path) -> None:
    # MLX reads no float64 from safetensors; every other dtype round-trips.
    arrays = {k: v for k, v in sample_arrays().items() if v.dtype != np.float64}
    assert {a.dtype.name for a in arrays.values()} >= {"float32", "float16", "bfloat16", "bool"}
    path = tmp_path / "mlx.safetensors"
    torch2mlx.save_safetensors(path, arrays, metadata={"source": "torch2mlx"})
    loaded, metadata = mx.load(str(path), return_metadata=True)
    assert metadata == {"source": "torch2mlx"}
    assert set(loaded) == set(arrays)
    for name, expected in arrays.items():
        array = loaded[name]
        assert array.shape == expected.shape, name
        if expected.dtype == ml_dtypes.bfloat16:
            assert array.dtype == mx.bfloat16
            got = np.array(array.view(mx.uint16)).view(ml_dtypes.bfloat16)
        else:
            got = np.array(array)
        assert_bit_identical(got, expected, name)


def test_arrays_are_writable_and_the_file_is_untouched(written: tuple[Path, dict]) -> None:
    path, _ = written
    before = path.read_bytes()
    loaded = torch2mlx.load_state_dict(path)
    loaded["t.float32"][...] = 0
    loaded["t.int64"][0, 0] = 42
    assert path.read_bytes() == before


# ---------------------------------------------------------------------------------------
# Writes are atomic: a failure leaves neither a partial file nor a temporary one.


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def folder_with_old_file(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes]]:
    folder = tmp_path / "out"
    folder.mkdir()
    old = folder / "model.safetensors"
    torch2mlx.save_safetensors(old, {"old": np.arange(5, dtype=np.float32)})
    return folder, old, listing(folder)


def test_bad_dtype_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "complex.safetensors"
    with pytest.raises(torch2mlx.Torch2MLXError, match=r"^\[safetensors\] .*complex64") as caught:
        torch2mlx.save_safetensors(
            path, {"ok": np.ones(3, np.float32), "z": np.ones(3, np.complex64)}
        )
    assert path.name in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_bad_dtype_keeps_the_old_file(folder_with_old_file: tuple[Path, Path, dict]) -> None:
    folder, old, before = folder_with_old_file
    with pytest.raises(torch2mlx.Torch2MLXError):
        torch2mlx.save_safetensors(old, {"s": np.array(["text"])})
    assert listing(folder) == before


def test_bad_name_keeps_the_old_file(folder_with_old_file: tuple[Path, Path, dict]) -> None:
    folder, old, before = folder_with_old_file
    with pytest.raises(torch2mlx.Torch2MLXError, match="__metadata__"):
        torch2mlx.save_safetensors(old, {"__metadata__": np.ones(2, np.float32)})
    assert listing(folder) == before


def test_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "gone" / "model.safetensors"
    with pytest.raises(torch2mlx.Torch2MLXError, match=r"^\[write\] cannot create a file in"):
        torch2mlx.save_safetensors(path, {"a": np.ones(2, np.float32)})
    assert list(tmp_path.iterdir()) == []


def test_destination_is_a_directory(tmp_path: Path) -> None:
    # Everything is written, then the final rename fails: the temporary file must go.
    target = tmp_path / "model.safetensors"
    target.mkdir()
    with pytest.raises(torch2mlx.Torch2MLXError, match=r"^\[write\] cannot move"):
        torch2mlx.save_safetensors(target, {"a": np.ones(1000, np.float32)})
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]
    assert list(target.iterdir()) == []


def test_disk_full_mid_write_keeps_the_old_file(
    folder_with_old_file: tuple[Path, Path, dict],
) -> None:
    # The directory stops accepting bytes part way through (RLIMIT_FSIZE in a child process
    # plays a full disk): writing fails after the temporary file holds 64 KiB.
    folder, old, before = folder_with_old_file
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        import numpy as np
        import torch2mlx
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, resource.RLIM_INFINITY))
        try:
            torch2mlx.save_safetensors({str(old)!r}, {{"big": np.ones(1 << 20, np.float32)}})
        except torch2mlx.Torch2MLXError as error:
            print(error)
            sys.exit(3)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout.startswith("[write] ")
    assert str(old) in result.stdout
    assert listing(folder) == before
    np.testing.assert_array_equal(torch2mlx.load_state_dict(old)["old"], np.arange(5))


def test_overwrite_replaces_the_file_whole(folder_with_old_file: tuple[Path, Path, dict]) -> None:
    folder, old, _ = folder_with_old_file
    reader = torch2mlx.load_state_dict(old)  # maps the old file
    inode = os.stat(old).st_ino
    torch2mlx.save_safetensors(old, {"new": np.full((2, 2), 7, np.int8)})
    assert os.stat(old).st_ino != inode  # renamed into place, not rewritten in place
    assert [p.name for p in folder.iterdir()] == ["model.safetensors"]
    np.testing.assert_array_equal(torch2mlx.load_state_dict(old)["new"], np.full((2, 2), 7))
    # Arrays still mapping the replaced file keep its old content.
    np.testing.assert_array_equal(reader["old"], np.arange(5, dtype=np.float32))
    assert (os.stat(old).st_mode & 0o777) == 0o644


def test_a_header_of_a_hundred_thousand_tensors_is_read(tmp_path: Path) -> None:
    """Regression: the header parser was quadratic; 100k tensors took minutes."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    count = 100_000
    path = tmp_path / "many.safetensors"
    save_file(
        {f"layers.{i}.weight": np.full(1, i, np.float32) for i in range(count)},
        str(path),
        metadata={"format": "np"},
    )
    info = torch2mlx.inspect_checkpoint(path)
    with safe_open(str(path), framework="numpy") as reference:
        assert sorted(t.name for t in info.tensors) == sorted(reference.keys())
    assert {(t.dtype, t.shape, t.nbytes) for t in info.tensors} == {("float32", (1,), 4)}
    assert info.metadata == {"format": "np"}
    arrays = torch2mlx.load_state_dict(path)
    assert len(arrays) == count
    assert all(arrays[f"layers.{i}.weight"][0] == i for i in (0, 1, 4242, count - 1))
