"""Hostile and damaged files: torch2mlx runs no code from them and says clearly what is wrong."""

from __future__ import annotations

import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

import torch2mlx
from conftest import (
    reduce_ops,
    replace_data_pkl,
    rewrite_zip,
    torch_save,
    write_safetensors_by_hand,
)
from torch2mlx import cli


def pickle_program(ops: bytes) -> bytes:
    """A protocol-2 pickle that runs `ops` (which leave one value) and stops."""
    return b"\x80\x02" + ops + b"."


def data_pkl(path: Path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        return archive.read(name)


def run_python(source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=60, check=False
    )


def prove_live(program: bytes, marker: Path) -> None:
    """Plain pickle.loads of `program` in a child process creates `marker`; then remove it."""
    assert not marker.exists()
    run_python(
        "import pickle\n"
        f"result = pickle.loads({program!r})\n"
        "getattr(result, 'wait', lambda: None)()\n"  # subprocess.Popen: let the child finish
    )
    assert marker.exists(), "the payload did not run: the fixture proves nothing"
    marker.unlink()


def assert_refused(path: Path, marker: Path, capsys: pytest.CaptureFixture[str], *names: str):
    """load_state_dict, inspect_checkpoint and `torch2mlx inspect` refuse, naming `names`."""
    for read in (torch2mlx.load_state_dict, torch2mlx.inspect_checkpoint):
        with pytest.raises(torch2mlx.Torch2MLXError) as caught:
            read(path)
        message = str(caught.value)
        assert message.startswith("[pickle] ")
        assert path.name in message
        for name in names:
            assert name in message
    capsys.readouterr()
    assert cli.main(["inspect", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("torch2mlx: error: [pickle] ")
    for name in names:
        assert name in captured.err
    assert not marker.exists(), "torch2mlx ran code from the checkpoint"


@pytest.fixture
def genuine(tmp_path: Path) -> Path:
    """A real torch.save archive; its layout (storages, version, byteorder) is reused."""
    return torch_save({"w": torch.arange(6.0).reshape(2, 3)}, tmp_path / "genuine.pt")


def _payloads(marker: Path) -> dict[str, tuple[bytes, str]]:
    touch = f"touch {marker}"
    return {
        "os.system": (reduce_ops("os", "system", touch), "os.system"),
        "posix.system": (reduce_ops("posix", "system", touch), "posix.system"),
        "builtins.eval": (
            reduce_ops("builtins", "eval", f"__import__('os').system({touch!r})"),
            "builtins.eval",
        ),
        "builtins.exec": (
            reduce_ops("builtins", "exec", f"import os; os.system({touch!r})"),
            "builtins.exec",
        ),
        "__builtin__.eval": (  # the Python 2 spelling, which pickle maps to builtins
            reduce_ops("__builtin__", "eval", f"__import__('os').system({touch!r})"),
            "builtins.eval",
        ),
        "subprocess.Popen": (
            reduce_ops("subprocess", "Popen", ["touch", str(marker)]),
            "subprocess.Popen",
        ),
    }


PAYLOADS = [
    "os.system",
    "posix.system",
    "builtins.eval",
    "builtins.exec",
    "__builtin__.eval",
    "subprocess.Popen",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_code_execution_is_refused(
    tmp_path: Path, genuine: Path, capsys: pytest.CaptureFixture[str], payload: str
) -> None:
    marker = tmp_path / "pwned"
    ops, global_name = _payloads(marker)[payload]
    program = pickle_program(ops)
    prove_live(program, marker)
    path = replace_data_pkl(genuine, tmp_path / "evil.pt", program)
    assert_refused(path, marker, capsys, global_name, "not allowed")


def test_payload_hidden_after_real_tensors(
    tmp_path: Path, genuine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real checkpoint whose dict gains one more item: the os.system call's result."""
    marker = tmp_path / "pwned"
    real = data_pkl(genuine)
    assert real.endswith(b".")
    program = real[:-1] + b"X\x04\x00\x00\x00evil" + reduce_ops("os", "system", f"touch {marker}")
    program += b"s."
    path = replace_data_pkl(genuine, tmp_path / "trojan.pt", program)
    # torch.load without weights_only runs it: the fixture is live.
    run_python(f"import torch; torch.load({str(path)!r}, weights_only=False)")
    assert marker.exists()
    marker.unlink()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert_refused(path, marker, capsys, "os.system")


@pytest.mark.parametrize(
    ("name", "ops", "opcode"),
    [
        # Protocol 4's way to name a global, from two strings on the stack.
        ("STACK_GLOBAL", b"X\x02\x00\x00\x00osX\x06\x00\x00\x00system\x93", "STACK_GLOBAL"),
        # Protocol 0's INST: import, call with the args above the mark, in one opcode.
        ("INST", b"(X{cmd}ios\nsystem\n", "INST"),
    ],
)
def test_other_routes_to_a_callable_are_refused(
    tmp_path: Path,
    genuine: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    ops: bytes,
    opcode: str,
) -> None:
    marker = tmp_path / "pwned"
    command = f"touch {marker}".encode()
    unicode_command = b"X" + struct.pack("<I", len(command)) + command
    if name == "STACK_GLOBAL":
        program = b"\x80\x04" + ops + unicode_command + b"\x85R."
    else:
        program = b"\x80\x02" + ops.replace(b"X{cmd}", unicode_command) + b"."
    prove_live(program, marker)
    path = replace_data_pkl(genuine, tmp_path / "evil.pt", program)
    assert_refused(path, marker, capsys, opcode)


def test_reduce_on_an_allowed_but_not_callable_global(
    tmp_path: Path, genuine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # torch.float32 may be named (tensors carry dtypes) but is not a function to call.
    program = pickle_program(reduce_ops("torch", "float32", 1))
    path = replace_data_pkl(genuine, tmp_path / "call_dtype.pt", program)
    with pytest.raises((pickle.UnpicklingError, TypeError)):
        torch.load(path, weights_only=True)
    assert_refused(path, tmp_path / "unused", capsys, "torch.float32", "cannot be called")


def test_allowlist_holds_only_data_globals() -> None:
    allowed = set(torch2mlx.checkpoint._core.allowed_globals())
    assert "torch._utils._rebuild_tensor_v2" in allowed
    assert "collections.OrderedDict" in allowed
    for dangerous in (
        "os.system",
        "posix.system",
        "builtins.eval",
        "builtins.exec",
        "builtins.getattr",
        "builtins.__import__",
        "subprocess.Popen",
    ):
        assert dangerous not in allowed
    assert all(
        name.split(".", 1)[0] in {"torch", "collections", "builtins", "_codecs"} for name in allowed
    )


# ---------------------------------------------------------------------------------------
# Damaged files: a Torch2MLXError reading "[component] <file>: what, and what to do".


def assert_clear_error(path: Path, component: str, *fragments: str) -> str:
    with pytest.raises(torch2mlx.Torch2MLXError) as caught:
        torch2mlx.load_state_dict(path)
    message = str(caught.value)
    assert message.startswith(f"[{component}] "), message
    assert path.name in message, message
    for fragment in fragments:
        assert fragment in message, message
    # Reading headers only stops at the same problem.
    with pytest.raises(torch2mlx.Torch2MLXError, match=r"^\[" + component + r"\] "):
        torch2mlx.inspect_checkpoint(path)
    return message


def test_truncated_zip(tmp_path: Path) -> None:
    whole = torch_save({"w": torch.randn(64, 64)}, tmp_path / "whole.pt").read_bytes()
    path = tmp_path / "half.pt"
    path.write_bytes(whole[: len(whole) // 2])
    assert_clear_error(path, "zip", "truncated")


def test_zip_missing_a_storage(tmp_path: Path, genuine: Path) -> None:
    path = rewrite_zip(
        genuine, tmp_path / "no_storage.pt", lambda n, d: None if n.endswith("/data/0") else d
    )
    assert_clear_error(path, "torch", "storage '0'", "missing")


def test_zip_storage_shorter_than_declared(tmp_path: Path, genuine: Path) -> None:
    path = rewrite_zip(
        genuine, tmp_path / "short.pt", lambda n, d: d[:8] if n.endswith("/data/0") else d
    )
    assert_clear_error(path, "pickle", "storage '0'", "holds 8 bytes")


def test_safetensors_header_length_past_end(tmp_path: Path) -> None:
    save_file({"a": np.arange(4, dtype=np.float32)}, str(tmp_path / "ok.safetensors"))
    data = (tmp_path / "ok.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    path = tmp_path / "bad_length.safetensors"
    path.write_bytes(struct.pack("<Q", length + 4096) + data[8:])
    assert_clear_error(path, "safetensors", "header length", "exceeds file size")


def test_safetensors_truncated_data(tmp_path: Path) -> None:
    save_file({"a": np.arange(64, dtype=np.float32)}, str(tmp_path / "ok.safetensors"))
    data = (tmp_path / "ok.safetensors").read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[:-100])
    assert_clear_error(path, "safetensors", "truncated")


def test_safetensors_unknown_dtype(tmp_path: Path) -> None:
    header = {"x": {"dtype": "C64", "shape": [4], "data_offsets": [0, 32]}}
    path = write_safetensors_by_hand(tmp_path / "complex.safetensors", header, bytes(32))
    assert_clear_error(path, "safetensors", "'x'", "C64", "supported")


@pytest.mark.parametrize(
    ("dtype", "torch_name"),
    [
        ("F8_E4M3", "float8_e4m3fn"),
        ("F8_E5M2", "float8_e5m2"),
        ("F8_E4M3FNUZ", "float8_e4m3fnuz"),
        ("F8_E5M2FNUZ", "float8_e5m2fnuz"),
    ],
)
def test_safetensors_float8_names_tensor_dtype_and_what_to_do(
    tmp_path: Path, dtype: str, torch_name: str
) -> None:
    # Written by the safetensors package itself, as a real fp8 checkpoint is.
    from safetensors.torch import save_file

    path = tmp_path / "fp8.safetensors"
    save_file({"w": torch.zeros(4).to(getattr(torch, torch_name))}, str(path))
    message = assert_clear_error(path, "safetensors", "'w'", f"'{dtype}'", torch_name)
    assert "MLX has no dtype for" in message
    assert "cast it to bfloat16 in torch before saving" in message


def test_unknown_pickle_opcode(tmp_path: Path, genuine: Path) -> None:
    program = b"\x80\x02}\xff."
    path = replace_data_pkl(genuine, tmp_path / "opcode.pt", program)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert_clear_error(path, "pickle", "opcode 0xff")


def test_legacy_torch_save(tmp_path: Path) -> None:
    path = torch_save(
        {"w": torch.ones(3)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False
    )
    assert not zipfile.is_zipfile(path)
    message = assert_clear_error(path, "checkpoint", "legacy")
    assert "torch.save" in message  # says how to convert it


def test_bare_pickle_is_not_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    program = pickle_program(reduce_ops("os", "system", f"touch {marker}"))
    prove_live(program, marker)
    path = tmp_path / "model.pkl"
    path.write_bytes(program)
    assert_clear_error(path, "checkpoint", "bare pickle")
    assert not marker.exists()
