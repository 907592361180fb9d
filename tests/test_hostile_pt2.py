""".pt2 archives with hostile strings in every field: nothing in them ever runs.

A string from a graph reaches model.py only as a string literal, a comment or a checked
identifier; strings that torch's own loader would evaluate (size expressions through
sympy, op targets through attribute lookup) or unpickle (sample inputs) are refused before
torch sees them.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import torch2mlx
from conftest import reduce_ops, replace_data_pkl, rewrite_zip, torch_save

# Each payload creates the file named MARKER in the working directory if it ever runs.
MARKER = "pwned"
CODE = f"__import__('os').system('touch {MARKER}')"
# Every line break Python or an editor honours, each followed by code.
BREAKS = ["\n", "\r", "\r\n", "\f", "\v", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


class Hostile(nn.Module):
    """Has a string argument of every kind the registry writes: conv padding, einsum, reduce."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding="same")
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.conv(x).mean((2, 3))
        z = torch.einsum("ij,jk->ik", y, self.fc.weight)
        s = torch.zeros(2, 4).scatter_reduce(0, index, z, reduce="sum")
        return {"out": s, "feat": y}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = Hostile().eval()
    inputs = (torch.randn(2, 3, 5, 5), torch.tensor([[0, 1, 0, 1], [1, 0, 1, 0]]))
    path = tmp_path_factory.mktemp("hostile") / "model.pt2"
    torch.export.save(torch.export.export(model, inputs), path)
    return path


def edited(source: Path, destination: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    def change(name: str, data: bytes) -> bytes:
        if not name.endswith("models/model.json"):
            return data
        program = json.loads(data)
        edit(program)
        return json.dumps(program).encode()

    return rewrite_zip(source, destination, change)


def nodes(program: dict[str, Any]) -> list[dict[str, Any]]:
    return program["graph_module"]["graph"]["nodes"]


def string_arg(program: dict[str, Any], name: str, value: str) -> None:
    for node in nodes(program):
        for item in node["inputs"]:
            if item["name"] == name and "as_string" in item["arg"]:
                item["arg"]["as_string"] = value


def module_types(program: dict[str, Any], value: str) -> None:
    for node in nodes(program):
        stack = node["metadata"].get("nn_module_stack")
        if stack:
            entries = [entry.rsplit(",", 1)[0] + "," + value for entry in stack.split(";")]
            node["metadata"]["nn_module_stack"] = ";".join(entries)


def stack_traces(program: dict[str, Any], breaker: str) -> None:
    for node in nodes(program):
        node["metadata"]["stack_trace"] = (
            f'File "/home/user/model.py", line 3, in forward\n    y = x{breaker}{CODE}\n'
        )


def output_keys(program: dict[str, Any], key: str) -> None:
    call = program["graph_module"]["module_call_graph"][0]["signature"]
    version, spec = json.loads(call["out_spec"])
    spec["context"] = json.dumps([key, "feat"])
    call["out_spec"] = json.dumps([version, spec])


# Accepted archives: the strings reach model.py, escaped.
ESCAPED: dict[str, Callable[[dict[str, Any]], None]] = {
    "module type with a newline": lambda p: module_types(p, f"pkg.Evil\n{CODE}\n"),
    "module type with a quote": lambda p: module_types(p, f'pkg.E"vil{CODE}'),
    "module type that is a keyword": lambda p: module_types(p, "pkg.None"),
    "module type that shadows mx": lambda p: module_types(p, "pkg.mx"),
    "einsum equation with quotes": lambda p: string_arg(p, "equation", f'ij",{CODE},"'),
    "scatter reduce with quotes": lambda p: string_arg(p, "reduce", f'sum"){CODE}#'),
    "conv padding with a backslash": lambda p: string_arg(p, "padding", f'same\\"{CODE}'),
    "output key with quotes": lambda p: output_keys(p, f'out"]:{CODE},"'),
    "torch version with a newline": lambda p: p.update(torch_version=f"2.13\n{CODE}"),
    **{
        f"stack trace with {breaker!r}": (lambda b: lambda p: stack_traces(p, b))(breaker)
        for breaker in BREAKS
    },
}


def run_in(directory: Path, source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", source],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("case", sorted(ESCAPED))
def test_hostile_strings_stay_strings_and_comments(archive: Path, tmp_path: Path, case: str):
    hostile = edited(archive, tmp_path / "hostile.pt2", ESCAPED[case])
    out = tmp_path / "out"
    torch2mlx.convert(hostile, out_dir=out, verify=False, quiet=True)
    source = (out / "model.py").read_text(encoding="utf-8")
    tree = ast.parse(source)  # still Python
    # Nothing the payload holds became code: no call anywhere of os, system or __import__.
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert "__import__" not in names and "system" not in attributes, source
    # Every comment is one line: none of the line breaks survived into a comment.
    for line in source.splitlines():
        assert line.isprintable() or not line.strip().startswith("#"), repr(line)
    # Importing the package and building the model runs none of it.
    result = run_in(
        tmp_path, f"import torch2mlx.runtime as r; r.load({str(out)!r}); print('loaded')"
    )
    assert "loaded" in result.stdout, result.stderr
    assert not (tmp_path / MARKER).exists(), f"{case}: the payload ran"


# Refused archives: torch's loader would evaluate or call these strings.
REFUSED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "value name that is code": (
        lambda p: nodes(p)[0]["outputs"][0]["as_tensor"].update(name=f"x = {CODE}"),
        "not an identifier",
    ),
    "size expression that sympify would evaluate": (
        lambda p: next(iter(p["graph_module"]["graph"]["tensor_values"].values()))["sizes"][
            0
        ].update(as_expr={"expr_str": CODE, "hint": {"as_int": 2}}),
        "size expression",
    ),
    "size expression hidden where we read none": (
        lambda p: p["graph_module"]["graph"].update(
            sym_int_values={"s9": {"as_expr": {"expr_str": f"Max(1, {CODE})"}}}
        ),
        "size expression",
    ),
    "range constraint that sympify would evaluate": (
        lambda p: p.update(range_constraints={CODE: {"min_val": 1, "max_val": 4}}),
        "size expression",
    ),
    "op target that resolves to os.system": (
        lambda p: nodes(p)[1].update(target="torch.os.system"),
        "torch.os.system",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_strings_torch_would_evaluate_are_refused(archive: Path, tmp_path: Path, case: str):
    edit, expected = REFUSED[case]
    hostile = edited(archive, tmp_path / "hostile.pt2", edit)
    out = tmp_path / "out"
    with pytest.raises(torch2mlx.Torch2MLXError) as caught:
        torch2mlx.convert(hostile, out_dir=out, quiet=True)
    message = str(caught.value)
    assert expected in message
    # The reader names the file; the code generator names the node, module and line.
    assert str(hostile) in message or "test_hostile_pt2.py:" in message, message
    assert not out.exists()
    assert not (tmp_path / MARKER).exists()


def sample_inputs_member(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith("data/sample_inputs/model.pt")]
    return name


def test_pickled_sample_inputs_never_run(archive: Path, tmp_path: Path) -> None:
    """torch.export.load runs this archive's code; convert (verifying) refuses it."""
    valid = torch_save(((torch.zeros(1),), {}), tmp_path / "inputs.pt")
    evil = replace_data_pkl(
        valid,
        tmp_path / "evil_inputs.pt",
        b"\x80\x02" + reduce_ops("os", "system", f"touch {MARKER}") + b".",
    )
    member = sample_inputs_member(archive)
    hostile = rewrite_zip(
        archive,
        tmp_path / "hostile.pt2",
        lambda name, data: evil.read_bytes() if name == member else data,
    )
    # The fixture is live: torch's own loader runs the payload (its weights_only=False retry).
    run_in(tmp_path, f"import torch; torch.export.load({str(hostile)!r})")
    assert (tmp_path / MARKER).exists(), "torch.export.load did not run it: the test is moot"
    (tmp_path / MARKER).unlink()

    out = tmp_path / "out"
    result = run_in(
        tmp_path,
        "import torch2mlx\n"
        f"torch2mlx.convert({str(hostile)!r}, out_dir={str(out)!r}, quiet=True)\n",
    )
    assert result.returncode != 0
    assert "[pickle]" in result.stderr and "os.system" in result.stderr, result.stderr
    assert not (tmp_path / MARKER).exists(), "convert ran the archive's code"
    assert not out.exists()


def test_verification_of_an_archive_uses_its_sample_inputs_safely(
    archive: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = torch2mlx.convert(archive, out_dir=out, quiet=True)
    assert result.passed is True
    assert {item["path"] for item in result.report["outputs"]} == {"out['out']", "out['feat']"}


def test_torch_never_unpickles_while_the_reference_is_built() -> None:
    """The guard around torch's deserializer: any unpickling attempt raises."""
    import pickle

    from torch2mlx.pt2_reference import UnsafeLoadError, refuse_unpickling

    with refuse_unpickling():
        for attempt in (
            lambda: torch.load("any.pt", weights_only=True),
            lambda: pickle.loads(b"\x80\x02N."),
            lambda: torch._C._pickle_load_obj(b""),
        ):
            with pytest.raises(UnsafeLoadError):
                attempt()
    assert pickle.loads(b"\x80\x02N.") is None  # restored afterwards
