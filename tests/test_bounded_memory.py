"""Small files that stand for huge tensors are refused by name, never materialised."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import torch2mlx
from conftest import torch_save
from torch2mlx import cli

EXPANDED = 2**38  # elements: 1 TiB of float32 from one stored element


def test_expanded_view_in_a_checkpoint_is_refused_by_name(tmp_path: Path, capsys) -> None:
    path = torch_save({"w": torch.zeros(1).expand(EXPANDED)}, tmp_path / "tiny.pth")
    assert path.stat().st_size < 2048
    out = tmp_path / "out" / "model.safetensors"
    assert cli.main(["convert-weights", str(path), "-o", str(out)]) == 1
    message = capsys.readouterr().err
    assert "[tensor]" in message and "'w'" in message and "expanded view" in message, message
    assert str(4 * EXPANDED) in message
    assert not out.exists() and not out.parent.exists()


def test_expanded_view_costs_no_memory(tmp_path: Path) -> None:
    """Refused in a child process whose address space is capped at 4 GB."""
    path = torch_save({"w": torch.zeros(1).expand(EXPANDED)}, tmp_path / "tiny.pth")
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        "import torch2mlx\n"
        "try:\n"
        f"    torch2mlx.convert_weights({str(path)!r}, {str(tmp_path / 'o.safetensors')!r})\n"
        "except torch2mlx.Torch2MLXError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert "expanded view" in result.stdout, result.stdout + result.stderr


def test_small_expanded_views_are_written_out(tmp_path: Path) -> None:
    base = torch.arange(3, dtype=torch.float32)
    path = torch_save({"w": base.expand(4, 3)}, tmp_path / "small.pth")
    out = tmp_path / "small.safetensors"
    torch2mlx.convert_weights(path, out)
    np.testing.assert_array_equal(torch2mlx.load_state_dict(out)["w"], base.expand(4, 3).numpy())


def test_broadcast_array_is_not_saved_in_full(tmp_path: Path) -> None:
    array = np.broadcast_to(np.zeros(1, np.float32), (EXPANDED,))
    with pytest.raises(torch2mlx.Torch2MLXError, match=r"tensor 'w'.*expanded view"):
        torch2mlx.save_safetensors(tmp_path / "x.safetensors", {"w": array})
    assert not (tmp_path / "x.safetensors").exists()
