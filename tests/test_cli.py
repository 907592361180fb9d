"""The torch2mlx command, in-process and as the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

import torch2mlx
from conftest import random_tensor, torch_save
from torch2mlx import cli

SCRIPT = Path(sys.executable).parent / "torch2mlx"


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    return torch_save(
        {
            "encoder": {
                "weight": random_tensor(torch.float32, (3, 5), seed=1),
                "bias": random_tensor(torch.bfloat16, (5,), seed=2),
            },
            "steps": torch.tensor(7),
            "empty": torch.empty(0, 3),
            "epoch": 3,
            "name": "tiny",
        },
        tmp_path / "tiny.pt",
    )


# name, dtype, shape column, bytes
EXPECTED_ROWS = [
    ["encoder.weight", "float32", "3x5", "60"],
    ["encoder.bias", "bfloat16", "5", "10"],
    ["steps", "int64", "scalar", "8"],
    ["empty", "float32", "0x3", "0"],
]


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def check_table(out: str) -> None:
    lines = out.splitlines()
    assert lines[0].split() == ["name", "dtype", "shape", "bytes"]
    assert [line.split() for line in lines[1:5]] == EXPECTED_ROWS
    assert lines[5] == ""
    assert "format:   torch" in lines
    assert "tensors:  4, 21 elements, 78 B" in lines
    assert "other values (2, not tensors):" in lines
    assert "  epoch: int = 3" in lines
    assert "  name: str = 'tiny'" in lines
    assert "files:" not in out  # one file: no list of shards


def test_inspect_table(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "inspect", str(checkpoint))
    assert code == 0
    assert err == ""
    check_table(out)


def test_inspect_json_matches_the_api(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "inspect", "--json", str(checkpoint))
    assert code == 0
    parsed = json.loads(out)
    assert parsed == torch2mlx.inspect_checkpoint(checkpoint).to_dict()
    assert parsed["format"] == "torch"
    assert parsed["total_bytes"] == 78
    assert parsed["total_elements"] == 21
    assert [[t["name"], t["dtype"], t["shape"], t["nbytes"]] for t in parsed["tensors"]] == [
        ["encoder.weight", "float32", [3, 5], 60],
        ["encoder.bias", "bfloat16", [5], 10],
        ["steps", "int64", [], 8],
        ["empty", "float32", [0, 3], 0],
    ]
    assert parsed["others"] == [
        {"path": "epoch", "type": "int", "value": "3"},
        {"path": "name", "type": "str", "value": "'tiny'"},
    ]


def test_inspect_sharded_folder_lists_files_and_metadata(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "hf"
    folder.mkdir()
    safetensors.torch.save_file({"a": torch.ones(2, 2)}, folder / "one.safetensors")
    safetensors.torch.save_file({"b": torch.zeros(3, dtype=torch.int8)}, folder / "two.safetensors")
    (folder / "model.safetensors.index.json").write_text(
        json.dumps(
            {
                "metadata": {"total_size": 19},
                "weight_map": {"a": "one.safetensors", "b": "two.safetensors"},
            }
        )
    )
    code, out, _ = run_main(capsys, "inspect", str(folder))
    assert code == 0
    assert "format:   hf-sharded-safetensors" in out
    assert "files:    3 (" in out
    assert "metadata: total_size = 19" in out
    assert "tensors:  2, 7 elements, 19 B" in out


def test_bad_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "junk.pt"
    data = torch_save({"w": torch.randn(32, 32)}, path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    code, out, err = run_main(capsys, "inspect", str(path))
    assert code == 1
    assert out == ""
    assert err.startswith(f"torch2mlx: error: [zip] {path}: ")
    assert err.count("\n") == 1  # one line, no traceback


def test_missing_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nowhere.safetensors"
    code, out, err = run_main(capsys, "inspect", str(path))
    assert code == 1
    assert out == ""
    assert err == f"torch2mlx: error: [checkpoint] {path}: no such file or folder\n"


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["inspect"])
    assert caught.value.code == 2
    assert "path" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        cli.main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == f"torch2mlx {torch2mlx.__version__}"


# ---------------------------------------------------------------------------------------
# The installed console script.


def run_script(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *argv], capture_output=True, text=True, timeout=60, check=False
    )


def test_console_script_inspect(checkpoint: Path) -> None:
    result = run_script("inspect", str(checkpoint))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    check_table(result.stdout)
    as_json = run_script("inspect", "--json", str(checkpoint))
    assert json.loads(as_json.stdout) == torch2mlx.inspect_checkpoint(checkpoint).to_dict()


def test_console_script_errors(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    result = run_script("inspect", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"torch2mlx: error: [safetensors] {path}: ")
    assert "Traceback" not in result.stderr
    missing = run_script("inspect", str(tmp_path / "absent.pt"))
    assert missing.returncode != 0
    assert "no such file or folder" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_python_dash_m(checkpoint: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "torch2mlx", "inspect", "--json", str(checkpoint)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["format"] == "torch"
