"""Error style: one test per error class.

Every refusal is a Torch2MLXError whose message starts with "[component]", names the file (or
the node or module) at fault and the part of it that is wrong, and ends by saying what to do.
Fixtures are built here from torch's own output or by hand; nothing binary is committed.
"""

from __future__ import annotations

import io
import json
import os
import random
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import torch2mlx
from conftest import reduce_ops, rewrite_zip, torch_save, write_safetensors_by_hand
from test_adversarial import PICKLE_BOMBS, PROTO, patched, rebuild_tensor, state_dict, torch_zip


def refusal(call: Callable[[], Any]) -> str:
    with pytest.raises(torch2mlx.Torch2MLXError) as caught:
        call()
    return str(caught.value)


def check(message: str, component: str, at_fault: list[str], what_to_do: str) -> None:
    """The message is "[component] ...", names every part of `at_fault`, then says what to do."""
    assert message.startswith(f"[{component}] "), message
    for part in at_fault:
        assert part in message, (part, message)
    assert what_to_do in message, (what_to_do, message)
    # What to do comes after what is wrong.
    assert message.rindex(what_to_do) > max(message.index(part) for part in at_fault), message


def read(path: Path) -> str:
    """The message of load_state_dict, checked to be the one inspect_checkpoint gives too."""
    message = refusal(lambda: torch2mlx.load_state_dict(path))
    assert refusal(lambda: torch2mlx.inspect_checkpoint(path)) == message
    return message


@pytest.fixture
def genuine(tmp_path: Path) -> Path:
    return torch_save({"w": torch.arange(6.0).reshape(2, 3)}, tmp_path / "genuine.pt")


# ---------------------------------------------------------------------------------------
# Checkpoint readers.


def test_safetensors_header(tmp_path: Path) -> None:
    entry = {"dtype": "F32", "shape": [2]}
    path = write_safetensors_by_hand(
        tmp_path / "overlap.safetensors",
        {"a": {**entry, "data_offsets": [0, 8]}, "b": {**entry, "data_offsets": [4, 12]}},
        bytes(12),
    )
    check(read(path), "safetensors", [str(path), "tensor 'b'", "overlap"], "save it again")


def test_safetensors_header_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "list.safetensors"
    path.write_bytes(struct.pack("<Q", 8) + b"[1, 2]  ")
    check(
        read(path),
        "safetensors",
        [str(path), "header does not start with '{'"],
        "download or save it again",
    )


def test_safetensors_tensor_with_more_than_64_dims(tmp_path: Path) -> None:
    path = write_safetensors_by_hand(
        tmp_path / "dims.safetensors",
        {"deep": {"dtype": "F32", "shape": [1] * 65, "data_offsets": [0, 4]}},
        bytes(4),
    )
    check(
        read(path),
        "safetensors",
        [str(path), "tensor 'deep' has 65 dims"],
        "reshape it to at most 64 dims",
    )


def test_pickled_tensor_with_more_than_64_dims(tmp_path: Path) -> None:
    path = torch_zip(tmp_path / "dims.pt", state_dict(rebuild_tensor((1,) * 65, (1,) * 65)))
    check(
        read(path),
        "pickle",
        [str(path), "archive/data.pkl", "tensor 'w' has 65 dims"],
        "reshape it to at most 64 dims",
    )


def test_zip_structure(genuine: Path, tmp_path: Path) -> None:
    # The end record survives; the local header of the last storage does not.
    data = genuine.read_bytes()
    directory = data.index(b"PK\x01\x02")
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: directory - 200] + bytes(200) + data[directory:])
    check(read(path), "zip", [str(path), "local header of entry"], "download or save it again")


def _end_record(data: bytearray) -> int:
    return data.rindex(b"PK\x05\x06")


def _last_central_entry(data: bytearray) -> int:
    return data.rindex(b"PK\x01\x02")


def _zip64_announced(data: bytearray) -> bytearray:
    struct.pack_into("<H", data, _end_record(data) + 10, 0xFFFF)  # entries: see the zip64 record
    return data


def _zip64_locator_to_byte_0(data: bytearray) -> bytearray:
    end = _end_record(data)
    locator = b"PK\x06\x07" + struct.pack("<IQI", 0, 0, 1)  # zip64 end record "at byte 0"
    return _zip64_announced(bytearray(data[:end] + locator + data[end:]))


def _directory_past_the_end(data: bytearray) -> bytearray:
    struct.pack_into("<I", data, _end_record(data) + 16, len(data) + 1000)
    return data


def _entry_past_the_directory(data: bytearray) -> bytearray:
    struct.pack_into("<H", data, _last_central_entry(data) + 32, 0xFFFF)  # comment length
    return data


def _short_zip64_field(data: bytearray) -> bytearray:
    # The last entry (given an empty zip64 extra field below) says its size is in it.
    struct.pack_into("<I", data, _last_central_entry(data) + 24, 0xFFFFFFFF)
    return data


# A structural lie in the zip container: (zip extra field of the last entry, change, what the
# message names). Each is refused before any member is read.
ZIP_LIES = {
    "zip64 without its locator": (b"", _zip64_announced, "zip64 end record is announced"),
    "zip64 locator to nothing": (b"", _zip64_locator_to_byte_0, "no zip64 end record at byte 0"),
    "directory past the end": (b"", _directory_past_the_end, "lies outside the"),
    "entry past the directory": (b"", _entry_past_the_directory, "runs past the directory"),
    "extra field longer than it is": (
        struct.pack("<HH", 0x9999, 16) + bytes(4),
        lambda data: data,
        "has a damaged extra field",
    ),
    "zip64 field too short": (struct.pack("<HH", 1, 0), _short_zip64_field, "short zip64 field"),
}


@pytest.mark.parametrize("lie", sorted(ZIP_LIES))
def test_zip_container_lies(lie: str, tmp_path: Path) -> None:
    extra, change, named = ZIP_LIES[lie]
    path = tmp_path / "lying.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", state_dict(b"N"))
        last = zipfile.ZipInfo("archive/data/0")
        last.extra = extra
        archive.writestr(last, bytes(8))
    path.write_bytes(change(bytearray(path.read_bytes())))
    check(read(path), "zip", [str(path), named], "download or save it again")


def test_checkpoint_tensor_that_does_not_fit_its_layer(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    state = {"0.weight": torch.zeros(4, 27), "0.bias": torch.zeros(4)}  # a flattened kernel
    source = torch_save(state, tmp_path / "flat.pt")
    message = refusal(
        lambda: torch2mlx.convert_weights(source, tmp_path / "out.safetensors", model=model)
    )
    check(
        message,
        "convert",
        ["tensor '0.weight' (shape 4x27)", "torch.nn.modules.conv.Conv2d", "3 or more dims"],
        "pass the model the checkpoint was saved from",
    )


# Weight norm whose g does not fit v, as a damaged or hand-edited checkpoint has it.
WEIGHT_NORM_GAINS = {
    "g and v ranks differ": torch.ones(4, 1),
    "g keeps more than one axis": torch.ones(4, 3, 1, 1),
    "g shape does not fit v": torch.ones(5, 1, 1, 1),
}


@pytest.mark.parametrize("problem", sorted(WEIGHT_NORM_GAINS))
def test_weight_norm_that_does_not_fit(problem: str, tmp_path: Path) -> None:
    conv = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv2d(3, 4, 3))
    model = torch.nn.Sequential(conv)
    v = torch.randn(4, 3, 3, 3)
    state = {
        "0.parametrizations.weight.original0": WEIGHT_NORM_GAINS[problem],
        "0.parametrizations.weight.original1": v,
        "0.bias": torch.zeros(4),
    }
    source = torch_save(state, tmp_path / "normed.pt")
    message = refusal(
        lambda: torch2mlx.convert_weights(source, tmp_path / "out.safetensors", model=model)
    )
    check(
        message,
        "convert",
        [f"weight norm '0': {problem}", "v 4x3x3x3"],
        "call torch.nn.utils.remove_weight_norm before saving",
    )
    assert not (tmp_path / "out.safetensors").exists()


def test_torch_zip_with_two_roots(tmp_path: Path) -> None:
    path = tmp_path / "two.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("one/data.pkl", state_dict(b"N"))
        archive.writestr("two/data.pkl", state_dict(b"N"))
    check(
        read(path),
        "torch",
        [str(path), "more than one data.pkl", "one/data.pkl and two/data.pkl"],
        "save the state_dict() again with torch.save",
    )


@pytest.mark.parametrize(
    ("version", "named"),
    [(b"3" * 100, "is 100 bytes"), (b"three", "holds 'three', not a format version")],
)
def test_torch_zip_version_record(version: bytes, named: str, tmp_path: Path) -> None:
    path = tmp_path / "versioned.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", state_dict(b"N"))
        archive.writestr("archive/.data/version", version)
    check(read(path), "torch", [str(path), "archive/.data/version", named], "save it again")


def test_zip_hostile_name(tmp_path: Path) -> None:
    path = tmp_path / "climb.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", state_dict(b"N"))
        archive.writestr("archive/../../evil", b"x")
    check(read(path), "zip", [str(path), "'archive/../../evil'"], "do not use the file")


def test_zip_inflation_budget(tmp_path: Path) -> None:
    path = tmp_path / "budget.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", state_dict(b"N"))
        for index in range(3):
            # Random bytes do not compress: 1 GiB is within deflate's 1032:1 of each.
            data = random.randbytes(1_100_000)
            archive.writestr(f"archive/data/{index}", data, zipfile.ZIP_DEFLATED)

    def claims_a_gigabyte(data: bytearray, local: int, central: int) -> None:
        compressed = struct.unpack_from("<I", data, central + 20)[0]
        assert compressed * 1032 >= 1 << 30
        struct.pack_into("<I", data, central + 24, 1 << 30)
        struct.pack_into("<I", data, local + 22, 1 << 30)

    for index in range(3):
        patched(path, f"archive/data/{index}", claims_a_gigabyte)
    check(
        read(path),
        "zip",
        [str(path), "inflate to more than the limit of 2147483648 bytes", "'archive/data/2'"],
        "re-save a genuine one with torch.save",
    )


def test_pickle_global(genuine: Path, tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    rewrite_zip(
        genuine,
        path,
        lambda name, data: (
            PROTO + reduce_ops("os", "system", "true") + b"." if name.endswith("data.pkl") else data
        ),
    )
    check(
        read(path),
        "pickle",
        [str(path), "genuine/data.pkl", "global 'os.system' is not allowed"],
        "load it in torch and save its state_dict() instead",
    )


def test_pickle_limits(tmp_path: Path) -> None:
    program, _fragment = PICKLE_BOMBS["memo_index_0xffffffff"]
    path = torch_zip(tmp_path / "memo.pt", program)
    check(
        read(path),
        "pickle",
        [str(path), "archive/data.pkl", "memo index 4294967295 is past the limit"],
        "save its state_dict() again",
    )


def test_torch_zip_storage(genuine: Path, tmp_path: Path) -> None:
    path = rewrite_zip(
        genuine, tmp_path / "incomplete.pt", lambda name, data: None if "/data/" in name else data
    )
    check(
        read(path),
        "torch",
        [str(path), "storage '0'", "genuine/data/0 is missing"],
        "download or save it again",
    )


def test_shard_index(tmp_path: Path) -> None:
    one = write_safetensors_by_hand(
        tmp_path / "model-00001-of-00002.safetensors",
        {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
        bytes(4),
    )
    index = tmp_path / "model.safetensors.index.json"
    weight_map = {"a": one.name, "b": "model-00002-of-00002.safetensors"}
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    for path in (index, tmp_path):
        check(
            read(path),
            "checkpoint",
            [str(index), "shard 'model-00002-of-00002.safetensors'", "missing"],
            f"download it into {tmp_path}",
        )


def test_shard_index_naming_a_number(tmp_path: Path) -> None:
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": 3}}))
    check(
        read(index),
        "checkpoint",
        [str(index), "weight_map['a'] is not a file name"],
        "download it again",
    )


# ---------------------------------------------------------------------------------------
# torch.export archives.


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    program = torch.export.export(torch.nn.Linear(3, 2).eval(), (torch.randn(1, 3),))
    path = tmp_path_factory.mktemp("pt2") / "linear.pt2"
    torch.export.save(program, path)
    return path


def test_pt2_archive(exported: Path, tmp_path: Path) -> None:
    path = rewrite_zip(
        exported,
        tmp_path / "missing.pt2",
        lambda name, data: None if name.endswith("/weight_0") else data,
    )
    check(
        read(path),
        "pt2",
        [str(path), "'weight'", "weight_0", "missing"],
        "export and save the model again",
    )


def _saved(value: Any) -> bytes:
    """The bytes torch.save writes for `value`."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _pickled_weight(payload: bytes) -> Callable[[str, bytes], bytes | None]:
    """An edit of a .pt2 whose weight 'weight' is stored pickled (use_pickle) as `payload`."""

    def change(name: str, data: bytes) -> bytes | None:
        if name.endswith("/model_weights_config.json"):
            config = json.loads(data)
            config["config"]["weight"]["use_pickle"] = True
            return json.dumps(config).encode()
        return payload if name.endswith("/weight_0") else data

    return change


# The payload parts of a .pt2 that a crafted archive can get wrong: the edit, what the refusal
# names, and what it says to do.
PT2_PAYLOADS = {
    "no weights config": (
        lambda name, data: None if name.endswith("/model_weights_config.json") else data,
        ["model_weights_config.json is missing", "data/weights/model.pt"],
        "export and save the model again",
    ),
    "pickled weight of two tensors": (
        _pickled_weight(_saved({"a": torch.zeros(2), "b": torch.zeros(2)})),
        ["'weight'", "weight_0 holds 2 tensors", "expected the one tensor"],
        "export and save the model again",
    ),
    "pickled weight that is not a torch.save archive": (
        _pickled_weight(b"not a zip archive at all"),
        ["weight_0 is not a readable torch.save archive", "not a zip archive"],
        "save it again",
    ),
}


@pytest.mark.parametrize("case", sorted(PT2_PAYLOADS))
def test_pt2_payloads(case: str, exported: Path, tmp_path: Path) -> None:
    change, named, what_to_do = PT2_PAYLOADS[case]
    path = rewrite_zip(exported, tmp_path / "crafted.pt2", change)
    check(read(path), "pt2", [str(path), *named], what_to_do)


def test_pt2_torch28_weights_holding_a_non_tensor(exported: Path, tmp_path: Path) -> None:
    """torch 2.8 saved all weights as one torch.save dict, data/weights/model.pt: a value in it
    that is not a tensor is named."""
    folder = next(n for n in zipfile.ZipFile(exported).namelist() if n.endswith("/weight_0"))
    root = folder.rsplit("/data/", 1)[0]

    dropped = ("/model_weights_config.json", "/weight_0", "/weight_1")
    path = rewrite_zip(
        exported, tmp_path / "old.pt2", lambda name, data: None if name.endswith(dropped) else data
    )
    with zipfile.ZipFile(path, "a", zipfile.ZIP_STORED) as archive:
        archive.writestr(
            f"{root}/data/weights/model.pt",
            _saved({"weight": torch.zeros(2, 3), "bias": torch.zeros(2), "step": 3}),
        )
    message = read(path)
    assert message.startswith("[pt2] "), message
    assert "holds a non-tensor int 'step'" in message and "only tensors can be" in message


def test_graph_json(exported: Path, tmp_path: Path) -> None:
    def ghost(name: str, data: bytes) -> bytes:
        if not name.endswith("models/model.json"):
            return data
        program = json.loads(data)
        node = program["graph_module"]["graph"]["nodes"][-1]
        node["inputs"][0]["arg"] = {"as_tensor": {"name": "ghost"}}
        return json.dumps(program).encode()

    path = rewrite_zip(exported, tmp_path / "ghost.pt2", ghost)
    check(
        read(path),
        "graph",
        [str(path), "'ghost'"],
        "re-export the model with torch.export.save",
    )


# ---------------------------------------------------------------------------------------
# Conversion and loading.


class NonZero(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nonzero(x > 0)


def test_codegen_unsupported_op(tmp_path: Path) -> None:
    message = refusal(lambda: torch2mlx.convert(NonZero(), (torch.randn(4),), tmp_path / "out"))
    assert message.startswith("[codegen] "), message
    for part in [
        "node 'nonzero'",
        "aten.nonzero.default",
        "test_errors.py:",
        "depends on the data",
    ]:
        assert part in message, (part, message)
    assert not (tmp_path / "out").exists()


def test_codegen_unsupported_op_says_what_to_do(tmp_path: Path) -> None:
    message = refusal(lambda: torch2mlx.convert(NonZero(), (torch.randn(4),), tmp_path / "out"))
    assert any(verb in message for verb in ("rewrite", "replace", "avoid", "remove")), message


def test_convert_destination_refused(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    message = refusal(
        lambda: torch2mlx.convert(torch.nn.Linear(3, 2), (torch.randn(1, 3),), mine, quiet=True)
    )
    check(message, "convert", [str(mine), "not a torch2mlx package"], "choose an empty or new")
    assert (mine / "notes.txt").read_text() == "keep"


def test_load_of_a_folder_that_is_not_a_package(tmp_path: Path) -> None:
    message = refusal(lambda: torch2mlx.load(tmp_path))
    check(message, "load", [str(tmp_path), "no model.py"], "pass the folder that")
    (tmp_path / "model.py").write_text("class Model:\n    pass\n")
    message = refusal(lambda: torch2mlx.load(tmp_path))
    check(message, "load", [str(tmp_path), "no model.safetensors"], "pass the folder that")


LOAD_CHILD = """
import sys
import torch2mlx
try:
    torch2mlx.load(sys.argv[1])
except torch2mlx.Torch2MLXError as error:
    print("REFUSED", error)
"""


@pytest.mark.parametrize("fifo", ["model.py", "model.safetensors", "model.safetensors.index.json"])
def test_load_refuses_a_fifo_in_a_package_at_once(tmp_path: Path, fifo: str) -> None:
    # Found reviewing the readers: reading a FIFO waits for a writer, forever.
    folder = tmp_path / "package"
    folder.mkdir()
    if fifo != "model.py":
        (folder / "model.py").write_text(
            "import mlx.nn as nn\n\n\nclass Model(nn.Module):\n    pass\n"
        )
    os.mkfifo(folder / fifo)
    child = subprocess.run(
        [sys.executable, "-c", LOAD_CHILD, str(folder)],
        capture_output=True,
        text=True,
        timeout=60,  # a regression fails here instead of hanging the suite
        check=True,
    )
    assert child.stdout.startswith(
        f"REFUSED [load] {folder / fifo}: is not a regular file (a FIFO, a device or a folder)"
    ), child.stdout + child.stderr
