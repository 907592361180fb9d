"""Every refusal of a damaged or crafted torch.export program, site by site.

A small program with one argument of each kind is exported by torch; each case changes one
field of its JSON and names the message the core must give. Malformed JSON is a [graph]
error naming the file, the node, the op and the field; a well-formed program whose
arguments an op cannot take is a [codegen] error naming the node, the op, the module path
and the source line (issue 13: no exception reaches the user without them).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import torch2mlx
from torch2mlx import _core


class EveryArgumentKind(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)  # the source line [codegen] errors quote
        y = nn.functional.pad(self.norm(y), (1, 1, 1, 1), mode="reflect").squeeze()
        y = nn.functional.gelu(y, approximate="tanh")
        y = torch.cat([y, y], 1).sum(dim=[2, 3], keepdim=True)
        y = y.to(torch.float16).float().flatten(1)
        y = y.reshape(x.shape[0], -1)
        return torch.nan_to_num(torch.clamp(y, min=0.5), nan=0.0) * 2.0


@pytest.fixture(scope="module")
def program() -> dict:
    from torch._export.serde.serialize import serialize

    exported = torch.export.export(
        EveryArgumentKind().eval(),
        (torch.randn(2, 3, 8, 8),),
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    return json.loads(serialize(exported).exported_program.decode())


def node(document: dict, name: str) -> dict:
    (found,) = [n for n in document["graph_module"]["graph"]["nodes"] if n.get("name") == name]
    return found


def argument(document: dict, name: str, input_name: str) -> dict:
    (found,) = [i for i in node(document, name)["inputs"] if i["name"] == input_name]
    return found


def set_argument(name: str, input_name: str, value: Any) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        argument(document, name, input_name)["arg"] = value

    return change


def set_node(name: str, field: str, value: Any) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        node(document, name)[field] = value

    return change


def set_graph(field: str, key: str, value: Any) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        document["graph_module"]["graph"][field][key] = value

    return change


def set_signature(field: str, index: int, value: Any) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        document["graph_module"]["signature"][field][index] = value

    return change


def delete(name: str, field: str) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        del node(document, name)[field]

    return change


def size_name(document: dict) -> str:
    (sym,) = [n for n in document["graph_module"]["graph"]["nodes"] if "sym_size" in n["target"]]
    return sym["outputs"][0]["as_sym_int"]["as_name"]


def generate(document: dict) -> str:
    with pytest.raises(torch2mlx.Torch2MLXError) as caught:
        _core.generate_model(json.dumps(document), "crafted.pt2")
    return str(caught.value)


# Damaged JSON: (change, what the [graph] message names).
GRAPH_CASES = {
    "node without a target": (delete("conv2d", "target"), "node 1 has no 'target'"),
    "inputs not a list": (set_node("conv2d", "inputs", {}), "inputs are not a list"),
    "outputs not a list": (set_node("conv2d", "outputs", 1), "outputs are not a list"),
    "argument of two kinds": (
        set_argument("cat", "dim", {"as_int": 1, "as_float": 1.0}),
        "input 'dim' is not an argument",
    ),
    "int that is a string": (set_argument("cat", "dim", {"as_int": "1"}), "is not an integer"),
    "float that is a word": (set_argument("clamp", "min", {"as_float": "x"}), "is not a number"),
    "sym int of neither kind": (
        set_argument("cat", "dim", {"as_sym_int": {}}),
        "is neither a literal nor a symbol",
    ),
    "tensors not a list": (set_argument("cat", "tensors", {"as_tensors": 3}), "is not a list"),
    "optional tensors not a list": (
        set_argument("cat", "tensors", {"as_optional_tensors": 3}),
        "is not a list",
    ),
    "ints not a list": (set_argument("sum_1", "dim", {"as_ints": 2}), "is not a list"),
    "floats not a list": (set_argument("clamp", "min", {"as_floats": 0.5}), "is not a list"),
    "bool that is a number": (
        set_argument("sum_1", "keepdim", {"as_bool": 1}),
        "input 'keepdim' is not a bool",
    ),
    "bools not a list": (set_argument("sum_1", "keepdim", {"as_bools": True}), "is not a list"),
    "bools holding a number": (
        set_argument("sum_1", "keepdim", {"as_bools": [True, 2]}),
        "holds a non-bool",
    ),
    "strings not a list": (
        set_argument("gelu", "approximate", {"as_strings": "tanh"}),
        "is not a list",
    ),
    "unknown scalar type of an argument": (
        set_argument("to", "dtype", {"as_scalar_type": 999}),
        "input 'dtype' has unknown scalar type code 999",
    ),
    "unknown scalar type of a tensor": (
        set_graph("tensor_values", "gelu", {"dtype": 999, "sizes": []}),
        "tensor 'gelu' has unknown scalar type code 999",
    ),
    "tensor sizes not a list": (
        set_graph("tensor_values", "gelu", {"dtype": 7, "sizes": 4}),
        "tensor 'gelu' sizes are not a list",
    ),
    "tensor size of no kind": (
        set_graph("tensor_values", "gelu", {"dtype": 7, "sizes": [{"as_float": 2.0}]}),
        "has a size that is neither an int nor an expression",
    ),
    "input spec of two kinds": (
        set_signature("input_specs", 0, {"parameter": {}, "buffer": {}}),
        "input spec 0 is not a one-key object",
    ),
    "input spec of an unknown kind": (
        set_signature("input_specs", 0, {"weights": {}}),
        "input spec 0 has unknown kind 'weights'",
    ),
    "output spec of two kinds": (
        set_signature("output_specs", 0, []),
        "output spec 0 is not a one-key object",
    ),
}


@pytest.mark.parametrize("case", sorted(GRAPH_CASES))
def test_a_damaged_program_is_refused_naming_the_field(case, program):
    change, expected = GRAPH_CASES[case]
    document = copy.deepcopy(program)
    change(document)
    message = generate(document)
    assert message.startswith("[graph] crafted.pt2: "), message
    assert expected in message, message
    assert message.endswith("re-export the model with torch.export.save"), message


# Well-formed JSON whose arguments the op's translation cannot take: (change, node, reason).
CODEGEN_CASES = {
    "tensor of unknown rank": (
        set_argument("conv2d", "input", {"as_int": 1}),
        "conv2d",
        "the rank of 'input' is unknown",
    ),
    "tensor that is a number": (
        set_argument("gelu", "self", {"as_int": 1}),
        "gelu",
        "argument 'self' is not a tensor",
    ),
    "tensor list that is one tensor": (
        set_argument("cat", "tensors", {"as_tensor": {"name": "gelu"}}),
        "cat",
        "argument 'tensors' is not a list of tensors",
    ),
    "integer that is a string": (
        set_argument("flatten", "start_dim", {"as_string": "1"}),
        "flatten",
        "argument 'start_dim' is not an integer",
    ),
    "integer that is a symbolic size": (
        lambda d: set_argument("flatten", "start_dim", {"as_sym_int": {"as_name": size_name(d)}})(
            d
        ),
        "flatten",
        "argument 'start_dim' is a symbolic size where a constant is needed",
    ),
    "integer list that is a string": (
        set_argument("sum_1", "dim", {"as_string": "2"}),
        "sum_1",
        "argument 'dim' is not a list of integers",
    ),
    "integer list holding a symbolic size": (
        lambda d: set_argument(
            "sum_1", "dim", {"as_sym_ints": [{"as_int": 2}, {"as_name": size_name(d)}]}
        )(d),
        "sum_1",
        "argument 'dim' holds a symbolic size where a constant is needed",
    ),
    "axis past the rank": (
        set_argument("cat", "dim", {"as_int": 7}),
        "cat",
        "axis 7 is out of range for rank 4",
    ),
    "number that is a string": (
        set_argument("nan_to_num", "nan", {"as_string": "0"}),
        "nan_to_num",
        "argument 'nan' is not a number",
    ),
    "bool that is a string": (
        set_argument("sum_1", "keepdim", {"as_string": "yes"}),
        "sum_1",
        "argument 'keepdim' is not a bool",
    ),
    "string that is a number": (
        set_argument("gelu", "approximate", {"as_int": 1}),
        "gelu",
        "argument 'approximate' is not a string",
    ),
    "dtype MLX lacks": (
        set_argument("to", "dtype", {"as_scalar_type": 11}),  # complex128
        "to",
        "MLX has no dtype complex128",
    ),
    "argument of a kind no literal has": (
        set_argument("clamp", "min", {"as_device": {"type": "cpu", "index": None}}),
        "clamp",
        "argument 'min' has a kind the code generator cannot write",
    ),
    "convolution of four spatial dims": (
        set_graph("tensor_values", "p_conv_weight", {"dtype": 7, "sizes": [{"as_int": 3}] * 6}),
        "conv2d",
        "a 4-d convolution",
    ),
    "normalisation without channels": (
        set_graph("tensor_values", "conv2d", {"dtype": 7, "sizes": [{"as_int": 4}]}),
        "batch_norm",
        "a normalisation over channels needs (N, C, ...)",
    ),
    "squeeze of a value whose shape is unknown": (
        lambda d: d["graph_module"]["graph"]["tensor_values"].pop("pad"),
        "squeeze",
        "the input shape is unknown",
    ),
    "padding mode torch lacks": (
        set_argument("pad", "mode", {"as_string": "mirror"}),
        "pad",
        "pad mode 'mirror'",
    ),
    "gelu approximation torch lacks": (
        set_argument("gelu", "approximate", {"as_string": "sigmoid"}),
        "gelu",
        "gelu approximate='sigmoid'",
    ),
}


@pytest.mark.parametrize("case", sorted(CODEGEN_CASES))
def test_an_argument_the_op_cannot_take_names_node_op_module_and_line(case, program):
    change, name, reason = CODEGEN_CASES[case]
    document = copy.deepcopy(program)
    change(document)
    target = node(document, name)["target"].removeprefix("torch.ops.")
    message = generate(document)
    assert message.startswith("[codegen] "), message
    assert f"node '{name}' ({target}) in " in message, message
    assert reason in message, message
    # The module path and the user's line, for every node inside a module call.
    line = node(document, name)["metadata"].get("stack_trace", "")
    if "nn_module_stack" in node(document, name)["metadata"]:
        assert "(EveryArgumentKind)" not in message  # the root is "the model", not a path
    assert "test_graph_errors.py:" in message and "test_graph_errors.py" in line, message
    assert "rewrite those lines" in message, message


def test_a_node_inside_a_module_names_its_path_and_type(program):
    document = copy.deepcopy(program)
    set_argument("conv2d", "input", {"as_int": 1})(document)
    message = generate(document)
    assert "in conv (torch.nn.modules.conv.Conv2d) at test_graph_errors.py:" in message, message
    assert "y = self.conv(x)  # the source line [codegen] errors quote" in message, message


def test_a_custom_object_input_is_refused_by_name(program):
    # A TorchBind object (a C++ class torch scripts call into) has no MLX equivalent.
    document = copy.deepcopy(program)
    document["graph_module"]["signature"]["input_specs"].append(
        {"custom_obj": {"arg": {"name": "obj"}, "custom_obj_name": "tokenizer"}}
    )
    message = generate(document)
    assert message.startswith("[codegen] "), message
    assert "input 'tokenizer' is a custom object (a TorchBind class)" in message, message
    assert "rewrite those lines" in message, message


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("conv2d", "in conv (torch.nn.modules.conv.Conv2d) at test_graph_errors.py:"),
        ("cat", "in the model at test_graph_errors.py:"),
    ],
)
def test_a_damaged_node_names_its_module_and_line(name, where, program):
    document = copy.deepcopy(program)
    set_node(name, "outputs", 1)(document)
    message = generate(document)
    assert f"node '{name}' (aten." in message and "outputs are not a list" in message, message
    assert where in message, message
