"""torch.export archives (.pt2): the graph and the weights, read without running anything.

Programs are exported and saved by torch at test time; weights must come back bit for bit
as ep.state_dict and ep.constants hold them, and the graph as ep.graph has it. Damaged and
lying archives are made by rewriting torch's own output.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import torch2mlx
from conftest import assert_same_tensor, rewrite_zip, trained_cnn
from torch2mlx import _core, cli

Torch2MLXError = torch2mlx.Torch2MLXError


# ---------------------------------------------------------------------------------------
# Models.


class WithConstants(torch.nn.Module):
    """A lifted tensor constant, a non-persistent buffer, an int64 buffer, a bfloat16 weight."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.randn(4, dtype=torch.bfloat16))
        self.register_buffer("offset", torch.linspace(-1, 1, 4), persistent=False)
        self.register_buffer("steps", torch.tensor([3, 1, 4, 1], dtype=torch.int64))
        self.table = torch.tensor([0.5, -0.25, 2.0, 8.0])  # a plain attribute: lifted constant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.scale.float() + self.offset + self.table
        return y * self.steps.float()


class Tied(torch.nn.Module):
    """A language-model head sharing the embedding's weight."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(10, 6)
        self.head = torch.nn.Linear(6, 10, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens))


class Mlp(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(5, 7), torch.nn.GELU(), torch.nn.Linear(7, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).softmax(-1)


def _export(model: torch.nn.Module, args: tuple[Any, ...], **kwargs: Any) -> Any:
    torch.manual_seed(0)
    return torch.export.export(model.eval(), args, **kwargs)


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Path]]:
    """name -> (ExportedProgram, saved .pt2 path), exported once for the module."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("pt2")
    batch = torch.export.Dim("batch", min=2, max=64)
    exported = {
        "cnn": _export(trained_cnn(), (torch.randn(2, 3, 8, 8),)),
        "constants": _export(WithConstants(), (torch.randn(2, 4),)),
        "tied": _export(Tied(), (torch.tensor([[1, 2, 3]]),)),
        "dynamic": _export(Mlp(), (torch.randn(4, 5),), dynamic_shapes={"x": {0: batch}}),
    }
    found = {}
    for name, ep in exported.items():
        path = folder / f"{name}.pt2"
        torch.export.save(ep, path)
        found[name] = (ep, path)
    return found


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """The layout torch 2.1 to 2.7 wrote, made from torch's own serializer as 2.7 used it."""
    from torch._export.serde.schema import SCHEMA_VERSION
    from torch._export.serde.serialize import serialize

    ep = _export(WithConstants(), (torch.randn(2, 4),))
    artifact = serialize(ep)
    path = tmp_path_factory.mktemp("legacy") / "legacy.pt2"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("serialized_exported_program.json", artifact.exported_program)
        archive.writestr("serialized_state_dict.pt", artifact.state_dict)
        archive.writestr("serialized_constants.pt", artifact.constants)
        archive.writestr("serialized_example_inputs.pt", artifact.example_inputs)
        archive.writestr("version", ".".join(map(str, SCHEMA_VERSION)))
    return ep, path


# ---------------------------------------------------------------------------------------
# Helpers.


def arrays_of(raw: dict[str, Any]) -> dict[str, np.ndarray]:
    """The weights of a read_pt2 result as numpy arrays, the way load_state_dict builds them."""
    from torch2mlx.checkpoint import _view

    storages = raw["storages"]
    return {
        name: _view(storages[storage], dtype, shape, strides, offset)
        for name, dtype, shape, strides, offset, storage, _nbytes in raw["weights"]
    }


def expected_tensors(ep: Any) -> dict[str, torch.Tensor]:
    return {**ep.state_dict, **ep.constants}


def target_name(target: Any) -> str:
    """How the serializer names a call_function target, without the torch.ops. prefix."""
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    return f"{target.__module__}.{target.__qualname__}"


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rewritten(
    source: Path, destination: Path, change: Callable[[str, bytes], bytes | None]
) -> Path:
    return rewrite_zip(source, destination, change)


def with_member(source: Path, destination: Path, name: str, data: bytes) -> Path:
    rewrite_zip(source, destination, lambda _n, d: d)
    with zipfile.ZipFile(destination, "a") as archive:
        archive.writestr(name, data)
    return destination


def edit_json(suffix: str, edit: Callable[[Any], None]) -> Callable[[str, bytes], bytes]:
    """A rewrite_zip change that edits the JSON member ending with `suffix`."""

    def change(name: str, data: bytes) -> bytes:
        if not name.endswith(suffix):
            return data
        value = json.loads(data)
        edit(value)
        return json.dumps(value).encode()

    return change


def refusal(path: Path, *parts: str) -> str:
    """The message of reading `path`, through read_pt2 and through load_state_dict."""
    with pytest.raises(Torch2MLXError) as caught:
        _core.read_pt2(str(path))
    message = str(caught.value)
    assert message.startswith(("[pt2] ", "[graph] ")), message
    assert str(path) in message, message
    for part in parts:
        assert part in message, message
    with pytest.raises(Torch2MLXError) as again:
        torch2mlx.load_state_dict(path)
    assert str(again.value) == message
    return message


# ---------------------------------------------------------------------------------------
# What torch writes.


@pytest.mark.parametrize("name", ["cnn", "constants", "tied", "dynamic"])
def test_weights_are_bit_identical(programs: dict[str, tuple[Any, Path]], name: str) -> None:
    ep, path = programs[name]
    raw = _core.read_pt2(str(path))
    arrays = arrays_of(raw)
    expected = expected_tensors(ep)
    assert list(arrays) == list(expected)
    for key, tensor in expected.items():
        assert_same_tensor(arrays[key], tensor, key)
    loaded = torch2mlx.load_state_dict(path)
    assert list(loaded) == list(expected)
    for key, tensor in expected.items():
        assert_same_tensor(loaded[key], tensor, key)


@pytest.mark.parametrize("name", ["cnn", "constants", "tied", "dynamic"])
def test_graph_matches_ep_graph(programs: dict[str, tuple[Any, Path]], name: str) -> None:
    ep, path = programs[name]
    raw = _core.read_pt2(str(path))
    calls = [n for n in ep.graph.nodes if n.op == "call_function"]
    assert [(n["name"], n["target"]) for n in raw["nodes"]] == [
        (n.name, target_name(n.target)) for n in calls
    ]
    for node, call in zip(raw["nodes"], calls, strict=True):
        stack = call.meta.get("nn_module_stack", {})
        assert node["module_stack"] == [
            (key, path_, kind) for key, (path_, kind) in stack.items() if path_
        ], node["name"]
        assert set(node["inputs"]) == {a.name for a in call.all_input_nodes}, node["name"]
    signature = ep.graph_signature
    assert [(i["name"], i["target"] or None) for i in raw["inputs"]] == [
        (spec.arg.name, spec.target) for spec in signature.input_specs
    ]
    assert raw["schema_version"][0] == 8
    assert raw["torch_version"] == torch.__version__
    assert raw["in_spec"] and raw["out_spec"]


def test_input_kinds_name_parameters_buffers_and_constants(
    programs: dict[str, tuple[Any, Path]],
) -> None:
    _ep, path = programs["constants"]
    inputs = {i["target"]: i for i in _core.read_pt2(str(path))["inputs"] if i["target"]}
    assert inputs["scale"]["kind"] == "parameter"
    assert inputs["steps"]["kind"] == "buffer"
    assert inputs["offset"]["kind"] == "buffer"
    assert inputs["offset"]["persistent"] is False
    assert inputs["table"]["kind"] == "constant"


def test_tied_weights_share_memory(programs: dict[str, tuple[Any, Path]]) -> None:
    ep, path = programs["tied"]
    names = list(ep.state_dict)
    assert {"embed.weight", "head.weight"} <= set(names)
    raw = _core.read_pt2(str(path))
    storage_of = {w[0]: w[5] for w in raw["weights"]}
    assert storage_of["embed.weight"] == storage_of["head.weight"]
    loaded = torch2mlx.load_state_dict(path)
    assert np.shares_memory(loaded["embed.weight"], loaded["head.weight"])


def test_dynamic_shape_ranges(programs: dict[str, tuple[Any, Path]]) -> None:
    ep, path = programs["dynamic"]
    raw = _core.read_pt2(str(path))
    expected = {
        str(symbol): (int(r.lower), int(r.upper)) for symbol, r in ep.range_constraints.items()
    }
    assert raw["ranges"] == expected
    assert (2, 64) in raw["ranges"].values()


def test_headers_only_reads_no_weights(programs: dict[str, tuple[Any, Path]]) -> None:
    ep, path = programs["cnn"]
    raw = _core.read_pt2(str(path), headers_only=True)
    assert all(storage is None for storage in raw["storages"])
    shapes = {w[0]: tuple(w[2]) for w in raw["weights"]}
    assert shapes == {k: tuple(t.shape) for k, t in expected_tensors(ep).items()}


def test_inspect_and_cli(
    programs: dict[str, tuple[Any, Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    ep, path = programs["constants"]
    info = torch2mlx.inspect_checkpoint(path)
    assert info.format == "pt2"
    assert info.metadata["torch_version"] == torch.__version__
    assert [t.name for t in info.tensors] == list(expected_tensors(ep))
    assert cli.main(["inspect", "--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "pt2"


def test_legacy_layout(legacy: tuple[Any, Path]) -> None:
    ep, path = legacy
    assert _core.detect_format(str(path)) == "pt2"
    raw = _core.read_pt2(str(path))
    arrays = arrays_of(raw)
    for key, tensor in expected_tensors(ep).items():
        assert_same_tensor(arrays[key], tensor, key)
    assert [n["target"] for n in raw["nodes"]] == [
        target_name(n.target) for n in ep.graph.nodes if n.op == "call_function"
    ]


def test_torch_2_8_layout_with_one_saved_state_dict(
    programs: dict[str, tuple[Any, Path]], tmp_path: Path
) -> None:
    """torch 2.8 saved data/weights/model.pt and data/constants/model.pt instead of configs."""
    ep, path = programs["constants"]

    def saved(obj: dict[str, torch.Tensor]) -> bytes:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return buffer.getvalue()

    def change(name: str, data: bytes) -> bytes | None:
        if "/data/weights/" in name or "/data/constants/" in name:
            return None
        return data

    copy = rewritten(path, tmp_path / "a.pt2", change)
    root = next(iter(members(path))).split("/")[0]
    with zipfile.ZipFile(copy, "a") as archive:
        archive.writestr(f"{root}/data/weights/model.pt", saved(dict(ep.state_dict)))
        archive.writestr(f"{root}/data/constants/model.pt", saved(dict(ep.constants)))
    loaded = torch2mlx.load_state_dict(copy)
    for key, tensor in expected_tensors(ep).items():
        assert_same_tensor(loaded[key], tensor, key)


# ---------------------------------------------------------------------------------------
# Refusals.


def test_refuses_a_missing_weight_storage(
    programs: dict[str, tuple[Any, Path]], tmp_path: Path
) -> None:
    _ep, path = programs["cnn"]
    bad = rewritten(path, tmp_path / "bad.pt2", lambda n, d: None if n.endswith("/weight_0") else d)
    refusal(bad, "data/weights/weight_0", "missing")


def test_refuses_a_truncated_storage(programs: dict[str, tuple[Any, Path]], tmp_path: Path) -> None:
    _ep, path = programs["cnn"]
    bad = rewritten(
        path, tmp_path / "bad.pt2", lambda n, d: d[:-4] if n.endswith("/weight_0") else d
    )
    refusal(bad, "weight 'features.0.weight'", "storage holds")


def test_refuses_a_view_past_the_end_of_its_storage(
    programs: dict[str, tuple[Any, Path]], tmp_path: Path
) -> None:
    _ep, path = programs["cnn"]

    def move(config: Any) -> None:
        config["config"]["head.bias"]["tensor_meta"]["storage_offset"] = {"as_int": 1 << 40}

    bad = rewritten(path, tmp_path / "bad.pt2", edit_json("model_weights_config.json", move))
    refusal(bad, "weight 'head.bias'", "storage holds")


def test_refuses_an_overflowing_size(programs: dict[str, tuple[Any, Path]], tmp_path: Path) -> None:
    _ep, path = programs["cnn"]

    def grow(config: Any) -> None:
        meta = config["config"]["head.weight"]["tensor_meta"]
        meta["sizes"] = [{"as_int": 1 << 62}, {"as_int": 1 << 62}]

    bad = rewritten(path, tmp_path / "bad.pt2", edit_json("model_weights_config.json", grow))
    refusal(bad, "weight 'head.weight'")


def test_refuses_a_complex_weight_naming_it(
    programs: dict[str, tuple[Any, Path]], tmp_path: Path
) -> None:
    _ep, path = programs["cnn"]

    def complexify(config: Any) -> None:
        config["config"]["head.bias"]["tensor_meta"]["dtype"] = 10  # ScalarType.COMPLEXFLOAT

    bad = rewritten(path, tmp_path / "bad.pt2", edit_json("model_weights_config.json", complexify))
    refusal(bad, "weight 'head.bias'", "complex64")


def test_refuses_a_weight_the_graph_needs_but_the_archive_lacks(
    programs: dict[str, tuple[Any, Path]], tmp_path: Path
) -> None:
    _ep, path = programs["cnn"]
    bad = rewritten(
        path,
        tmp_path / "bad.pt2",
        edit_json("model_weights_config.json", lambda c: c["config"].pop("head.weight")),
    )
    refusal(bad, "parameter 'head.weight'", "p_head_weight")


def test_refuses_a_weight_whose_shape_disagrees_with_the_graph(
    programs: dict[str, tuple[Any, Path]], tmp_path: Path
) -> None:
    _ep, path = programs["cnn"]

    def flip(config: Any) -> None:
        meta = config["config"]["head.weight"]["tensor_meta"]
        meta["sizes"].reverse()
        meta["strides"] = [{"as_int": meta["sizes"][1]["as_int"]}, {"as_int": 1}]

    bad = rewritten(path, tmp_path / "bad.pt2", edit_json("model_weights_config.json", flip))
    refusal(bad, "'head.weight' is stored as float32[36, 5]", "[5, 36]")


@pytest.mark.parametrize("member", ["models/model.json", "model_weights_config.json"])
def test_refuses_bad_json(
    programs: dict[str, tuple[Any, Path]], tmp_path: Path, member: str
) -> None:
    _ep, path = programs["cnn"]
    bad = rewritten(path, tmp_path / "bad.pt2", lambda n, d: d[:-7] if n.endswith(member) else d)
    refusal(bad, member, "JSON")


def test_refuses_an_unknown_archive_version(
    programs: dict[str, tuple[Any, Path]], tmp_path: Path
) -> None:
    _ep, path = programs["cnn"]
    bad = rewritten(
        path, tmp_path / "bad.pt2", lambda n, d: b"7" if n.endswith("/archive_version") else d
    )
    message = refusal(bad, "archive version 7, this reader supports archive version 0")
    assert message.startswith(f"[pt2] {bad}: ")


def test_refuses_an_unknown_legacy_version(legacy: tuple[Any, Path], tmp_path: Path) -> None:
    _ep, path = legacy
    bad = rewritten(path, tmp_path / "bad.pt2", lambda n, d: b"99.1" if n == "version" else d)
    refusal(bad, "archive version 99.1")


def test_refuses_a_node_reading_an_undefined_tensor(
    programs: dict[str, tuple[Any, Path]], tmp_path: Path
) -> None:
    _ep, path = programs["dynamic"]

    def ghost(program: Any) -> None:
        node = program["graph_module"]["graph"]["nodes"][-1]
        node["inputs"][0]["arg"] = {"as_tensor": {"name": "ghost"}}

    bad = rewritten(path, tmp_path / "bad.pt2", edit_json("models/model.json", ghost))
    message = refusal(bad, "'ghost'")
    assert message.startswith("[graph] ")


def test_refuses_a_cycle(programs: dict[str, tuple[Any, Path]], tmp_path: Path) -> None:
    _ep, path = programs["dynamic"]

    def cycle(program: Any) -> None:
        nodes = program["graph_module"]["graph"]["nodes"]
        # The first node now reads the last node's output, which needs the first one.
        last = nodes[-1]["outputs"][0]["as_tensor"]["name"]
        nodes[0]["inputs"][0]["arg"] = {"as_tensor": {"name": last}}

    bad = rewritten(path, tmp_path / "bad.pt2", edit_json("models/model.json", cycle))
    refusal(bad, "cycle")


def test_refuses_a_script_object_constant(
    programs: dict[str, tuple[Any, Path]], tmp_path: Path
) -> None:
    _ep, path = programs["constants"]

    def script(config: Any) -> None:
        config["config"]["table"] = {
            "path_name": "custom_obj_0",
            "is_param": False,
            "use_pickle": True,
            "tensor_meta": None,
        }

    bad = rewritten(path, tmp_path / "bad.pt2", edit_json("model_constants_config.json", script))
    root = next(iter(members(bad))).split("/")[0]
    bad = with_member(bad, tmp_path / "bad2.pt2", f"{root}/data/constants/custom_obj_0", b"x")
    refusal(bad, "constant 'table'", "script object")


def test_refuses_a_pickled_weight_that_runs_code(
    programs: dict[str, tuple[Any, Path]], tmp_path: Path
) -> None:
    """use_pickle members go through the restricted unpickler, like any torch.save file."""
    _ep, path = programs["constants"]

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (print, ("pwned",))

    buffer = io.BytesIO()
    torch.save(Evil(), buffer)
    root = next(iter(members(path))).split("/")[0]

    def pickled(config: Any) -> None:
        config["config"]["scale"]["use_pickle"] = True
        config["config"]["scale"]["path_name"] = "weight_99"

    bad = rewritten(path, tmp_path / "bad.pt2", edit_json("model_weights_config.json", pickled))
    bad = with_member(
        bad, tmp_path / "bad2.pt2", f"{root}/data/weights/weight_99", buffer.getvalue()
    )
    message = refusal(bad, "weight_99", "[pickle]")
    assert "builtins.print" in message


def test_refuses_a_zip_that_is_not_an_export_archive(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt2"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", b"hello")
    with pytest.raises(Torch2MLXError, match=r"^\[pt2\] .*not a torch.export archive"):
        _core.read_pt2(str(path))
