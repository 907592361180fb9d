"""Writes the seed corpora of the fuzz targets: small valid inputs, made by torch and the
safetensors library at test time, so that no binary file is ever committed.

    .venv/bin/python cpp/fuzz/make_seeds.py [build/fuzz-seeds]

writes <out>/<target>/<name> for the targets safetensors, zip, pickle, torch_zip, index,
pt2 and codegen, and a libFuzzer dictionary <out>/<target>.dict of the tokens each format
is built from.
"""

from __future__ import annotations

import io
import json
import pickle
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save as save_safetensors
from safetensors.torch import save as save_torch_safetensors

import torch2mlx

TARGETS = ("safetensors", "zip", "pickle", "torch_zip", "index", "pt2", "codegen")


def torch_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def rewritten(source: bytes, change) -> bytes:
    """A copy of a zip, entry by entry (stored); `change(name, data)` gives the new data."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(source)) as old, zipfile.ZipFile(out, "w") as new:
        for info in old.infolist():
            new.writestr(info.filename, change(info.filename, old.read(info.filename)))
    return out.getvalue()


def torch_checkpoints() -> dict[str, bytes]:
    """torch.save archives: every dtype, views, tied weights, training checkpoints."""
    torch.manual_seed(0)
    dtypes = [
        torch.float64,
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
        torch.bool,
        torch.uint16,
        torch.uint32,
        torch.uint64,
    ]
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    linear = torch.nn.Linear(3, 2)
    shared = torch.ones(4)
    objects: dict[str, object] = {
        "one_tensor": {"w": torch.arange(6.0).reshape(2, 3)},
        "dtypes": {str(d).removeprefix("torch."): torch.ones(2, dtype=d) for d in dtypes},
        "views": {
            "transposed": base.t(),
            "sliced": base[1:, 2:],
            "strided": base[:, ::2],
            "expanded": torch.ones(1, 3).expand(4, 3),
            "scalar": torch.tensor(7.5),
            "empty": torch.empty(0, 3),
        },
        "tied": {"a": shared, "b": shared, "c": shared[1:3]},
        "module": linear.state_dict(),
        "parameter": {"p": torch.nn.Parameter(torch.ones(2))},
        "training": {
            "state_dict": OrderedDict(w=torch.ones(2, 2)),
            "epoch": 3,
            "lr": 1e-3,
            "name": "run-1",
            "flags": [True, None, (1, 2)],
            "big": 2**70,
            "raw": b"\x00\x01",
        },
    }
    found = {name: torch_bytes(obj) for name, obj in objects.items()}
    # The same bytes read as a big-endian archive.
    found["big_endian"] = rewritten(
        found["one_tensor"], lambda n, d: b"big" if n.endswith("/byteorder") else d
    )
    # float8 tensors (_rebuild_tensor_v3 over an untyped storage), refused by name.
    found["float8"] = torch_bytes(
        {"w": torch.ones(4).to(torch.float8_e4m3fn), "v": torch.ones(2).to(torch.float8_e5m2)}
    )
    # Format versions torch refuses (outside 1..10), and the .data/version torch reads first.
    for name, version in (("version_11", b"11\n"), ("version_0", b"0\n"), ("version_text", b"x")):
        found[name] = rewritten(
            found["one_tensor"], lambda n, d, v=version: v if n.endswith("/version") else d
        )
    with zipfile.ZipFile(io.BytesIO(found["one_tensor"])) as zipped:
        root = zipped.namelist()[0].split("/")[0]
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(found["one_tensor"])) as old, zipfile.ZipFile(out, "w") as new:
        for info in old.infolist():
            new.writestr(info.filename, old.read(info.filename))
        new.writestr(f"{root}/.data/version", "12\n")
    found["data_version_12"] = out.getvalue()
    return found


def data_pkl(archive: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        (name,) = [n for n in zipped.namelist() if n.endswith("/data.pkl")]
        return zipped.read(name)


def plain_pickles() -> dict[str, bytes]:
    """Protocol-2 pickles of plain containers, the way torch.save pickles non-tensor values."""
    values = {
        "containers": {"a": [1, 300, 70000, -5, 2**40], "b": (1.5, "x", None), "c": {}},
        "nested": [[[]], ((),), {"k": {"k": [True, False]}}],
        "strings": ["", "é", "long" * 20, b"bytes"],
    }
    return {name: pickle.dumps(value, protocol=2) for name, value in values.items()}


def safetensors_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    files = {
        "one": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)},
        "dtypes": {
            name: rng.integers(0, 2, size=3).astype(name)
            for name in [
                "float64",
                "float32",
                "float16",
                "int64",
                "int32",
                "int16",
                "int8",
                "uint8",
                "uint16",
                "uint32",
                "uint64",
                "bool",
            ]
        },
        "shapes": {
            "scalar": np.array(1.0, dtype=np.float32),
            "empty": np.zeros((0, 4), dtype=np.float32),
            "cube": np.zeros((2, 2, 2), dtype=np.int8),
        },
    }
    found = {name: save_safetensors(tensors) for name, tensors in files.items()}
    found["metadata"] = save_safetensors(
        {"a": np.ones(2, dtype=np.float16)}, metadata={"format": "pt", "note": "seed"}
    )
    found["bfloat16"] = save_torch_safetensors({"b": torch.ones(2, dtype=torch.bfloat16)})
    # A header of many members, read in one pass (the old parser was quadratic).
    found["many_tensors"] = save_safetensors(
        {f"layers.{i}.weight": np.ones(1, dtype=np.float32) for i in range(500)}
    )
    found["float8"] = save_torch_safetensors(
        {"a": torch.ones(2).to(torch.float8_e4m3fn), "b": torch.ones(2).to(torch.float8_e5m2)}
    )
    # Members the format does not define (skipped) and nesting near the depth limit (512).
    header = (
        '{"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"extra":'
        + "[" * 500
        + "]" * 500
        + '},"__metadata__":{"k":"v"}}'
    ).encode()
    header += b" " * (-len(header) % 8)
    found["unknown_members"] = len(header).to_bytes(8, "little") + header + b"\x01\x02"
    return found


def zips(checkpoints: dict[str, bytes]) -> dict[str, bytes]:
    """torch.save archives, plus archives with deflated and zip64 members."""
    found = {f"torch_{name}": data for name, data in checkpoints.items()}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("a/stored", b"stored bytes", compress_type=zipfile.ZIP_STORED)
        archive.writestr("a/deflated", b"abc" * 100, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("a/empty", b"")
    found["mixed"] = out.getvalue()
    out = io.BytesIO()
    with (
        zipfile.ZipFile(out, "w", allowZip64=True) as archive,
        archive.open("big/entry", "w", force_zip64=True) as entry,
    ):
        entry.write(b"zip64 member")
    found["zip64"] = out.getvalue()
    # A deflated member whose directory claims 1000 times what it holds: refused once its
    # data runs out, having cost only what it held.
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(
            "a/claims", np.random.default_rng(0).bytes(1024), compress_type=zipfile.ZIP_DEFLATED
        )
    found["claims_more"] = claimed_sizes(out.getvalue(), 1000)
    # A member that inflates far beyond its compressed size, so the buffer grows on the way.
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("a/grows", bytes(256 << 10), compress_type=zipfile.ZIP_DEFLATED)
    found["grows"] = out.getvalue()
    return found


def claimed_sizes(archive: bytes, ratio: int) -> bytes:
    """The archive, its first member claiming `ratio` times its compressed size in both headers."""
    data = bytearray(archive)
    central = data.find(b"PK\x01\x02")
    compressed = int.from_bytes(data[central + 20 : central + 24], "little")
    claim = (compressed * ratio).to_bytes(4, "little")
    data[central + 24 : central + 28] = claim
    local = int.from_bytes(data[central + 42 : central + 46], "little")
    data[local + 22 : local + 26] = claim
    return bytes(data)


def indexes() -> dict[str, bytes]:
    weight_map = {
        "model.embed.weight": "model-00001-of-00002.safetensors",
        "model.layers.0.weight": "model-00001-of-00002.safetensors",
        "lm_head.weight": "model-00002-of-00002.safetensors",
    }
    return {
        "safetensors": json.dumps(
            {"metadata": {"total_size": 4096}, "weight_map": weight_map}, indent=2
        ).encode(),
        "torch": json.dumps(
            {
                "metadata": {"total_size": 10, "format": "pt", "nested": {"a": [1, 2.5]}},
                "weight_map": {"w": "pytorch_model-00001-of-00001.bin"},
            }
        ).encode(),
        "empty": b'{"weight_map": {}}',
        # Many entries (the old parser was quadratic) and metadata nested near the limit.
        "many_entries": json.dumps(
            {
                "weight_map": {
                    f"layers.{i}.weight": f"model-{i % 3:05d}.safetensors" for i in range(500)
                }
            }
        ).encode(),
        "deep_metadata": b'{"weight_map": {}, "metadata": {"a": ' + b"[" * 500 + b"]" * 500 + b"}}",
    }


class _Pt2Model(torch.nn.Module):
    """A parameter, a buffer, a non-persistent buffer, a lifted constant and a tied weight."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)
        self.tied = self.linear.weight
        self.register_buffer("steps", torch.tensor([1, 2], dtype=torch.int64))
        self.register_buffer("offset", torch.ones(2, dtype=torch.float16), persistent=False)
        self.table = torch.tensor([0.5, 2.0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x) + self.offset.float() + self.table * self.steps
        return y + self.tied.sum()


def pt2_archives() -> dict[str, bytes]:
    """torch.export archives: current layout (static and dynamic shapes), the legacy layout
    (torch 2.1 to 2.7, from torch's own serializer), and the program JSON on its own."""
    from torch._export.serde.schema import SCHEMA_VERSION
    from torch._export.serde.serialize import serialize

    torch.manual_seed(0)
    model = _Pt2Model().eval()
    x = torch.randn(4, 3)
    programs = {
        "static": torch.export.export(model, (x,)),
        "dynamic": torch.export.export(
            model, (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch", min=2, max=8)}}
        ),
    }
    found = {}
    for name, program in programs.items():
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        found[name] = buffer.getvalue()
    artifact = serialize(programs["static"])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("serialized_exported_program.json", artifact.exported_program)
        archive.writestr("serialized_state_dict.pt", artifact.state_dict)
        archive.writestr("serialized_constants.pt", artifact.constants)
        archive.writestr("version", ".".join(map(str, SCHEMA_VERSION)))
    found["legacy"] = out.getvalue()
    found["program_json"] = artifact.exported_program
    return found


class _StringArgs(torch.nn.Module):
    """A conv with padding="same", an einsum equation and a scatter reduce: the graph's
    string arguments, which the code generator writes into model.py."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding="same")
        self.norm = torch.nn.LayerNorm(4)

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.norm(self.conv(x).mean((2, 3)))
        z = torch.einsum("ij,jk->ik", y, y.t())
        return {"out": torch.zeros(2, 2).scatter_reduce(0, index, z, reduce="sum"), "y": y}


def codegen_programs() -> dict[str, bytes]:
    """Program JSON for the parser and the code generator together: as torch writes it,
    and with hostile strings where graphs hold strings (module types, stack traces, string
    arguments) for the fuzzer to mutate from."""
    from torch._export.serde.serialize import serialize

    torch.manual_seed(0)
    programs = {
        "pt2_model": torch.export.export(_Pt2Model().eval(), (torch.randn(4, 3),)),
        "string_args": torch.export.export(
            _StringArgs().eval(), (torch.randn(2, 3, 5, 5), torch.tensor([[0, 1], [1, 0]]))
        ),
    }
    found = {name: serialize(program).exported_program for name, program in programs.items()}
    hostile = json.loads(found["string_args"])
    for node in hostile["graph_module"]["graph"]["nodes"]:
        metadata = node.setdefault("metadata", {})
        metadata["stack_trace"] = 'File "m.py", line 1, in f\n    x\rimport os\u2028y'
        if metadata.get("nn_module_stack"):
            metadata["nn_module_stack"] = metadata["nn_module_stack"] + '\nimport os;"'
        for item in node["inputs"]:
            if "as_string" in item["arg"]:
                item["arg"]["as_string"] += '"\\\r'
    found["hostile"] = json.dumps(hostile).encode()
    return found


def dictionary_line(token: bytes) -> str:
    """One libFuzzer dictionary entry: printable ASCII as is, everything else as \\xNN."""
    return (
        '"'
        + "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\x{b:02x}" for b in token)
        + '"'
    )


def dictionaries() -> dict[str, list[bytes]]:
    """Tokens the mutator splices in: opcodes with their arguments, JSON keys, zip magics."""
    allowed = torch2mlx.checkpoint._core.allowed_globals()  # the allowlist, as the core has it
    pickle_tokens = [b"c" + "\n".join(g.rsplit(".", 1)).encode() + b"\n" for g in allowed]
    pickle_tokens += [b"X\x07\x00\x00\x00storage", b"X\x03\x00\x00\x00cpu", b"\x80\x02"]
    zip_tokens = [b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07"]
    names = [b"archive/data.pkl", b"archive/byteorder", b"archive/data/0", b"little", b"big"]
    names += [b"archive/version", b"archive/.data/version"]
    dtypes = [b"F64", b"F32", b"F16", b"BF16", b"I64", b"I32", b"I16", b"I8", b"U8", b"BOOL"]
    dtypes += [b"F8_E4M3", b"F8_E5M2", b"F8_E8M0", b"F8_E4M3FNUZ", b"F8_E5M2FNUZ"]
    return {
        "pickle": pickle_tokens,
        "torch_zip": zip_tokens + names + pickle_tokens,
        "zip": zip_tokens + names,
        "safetensors": [b'"dtype"', b'"shape"', b'"data_offsets"', b'"__metadata__"']
        + [b'"' + d + b'"' for d in dtypes],
        "index": [b'"weight_map"', b'"metadata"', b'"total_size"', b".safetensors", b".json"],
        "pt2": [
            *zip_tokens,
            b"archive_format",
            b"archive_version",
            b"byteorder",
            b"pt2",
            b"models/model.json",
            b"data/weights/model_weights_config.json",
            b"data/constants/model_constants_config.json",
            b"data/weights/weight_0",
            b"data/constants/tensor_0",
            b"serialized_exported_program.json",
            b"serialized_state_dict.pt",
            b"version",
            b'"config"',
            b'"path_name"',
            b'"use_pickle"',
            b'"tensor_meta"',
            b'"sizes"',
            b'"strides"',
            b'"storage_offset"',
            b'"as_int"',
            b'"as_tensor"',
            b'"dtype"',
            b'"layout"',
            b'"schema_version"',
            b'"input_specs"',
            b'"parameter"',
            b'"tensor_constant"',
        ],
        "codegen": [
            b'"nn_module_stack"',
            b'"stack_trace"',
            b'"as_string"',
            b'"as_expr"',
            b'"expr_str"',
            b'"torch_version"',
            b'"out_spec"',
            b"\\r",
            b"\\u2028",
            b"\\u0085",
            b'\\"',
            b"\\\\",
            b"Symbol('s0', positive=True, integer=True)",
        ],
    }


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "build/fuzz-seeds")
    checkpoints = torch_checkpoints()
    corpora = {
        "torch_zip": checkpoints,
        "pickle": {
            **{name: data_pkl(data) for name, data in checkpoints.items()},
            **plain_pickles(),
        },
        "zip": zips(checkpoints),
        "safetensors": safetensors_files(),
        "index": indexes(),
        "pt2": pt2_archives(),
        "codegen": codegen_programs(),
    }
    assert set(corpora) == set(TARGETS)
    for target, seeds in corpora.items():
        folder = out / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for name, data in seeds.items():
            (folder / name).write_bytes(data)
    for target, tokens in dictionaries().items():
        lines = (dictionary_line(token) for token in tokens)
        (out / f"{target}.dict").write_text("\n".join(lines) + "\n")
    total = sum(len(seeds) for seeds in corpora.values())
    print(f"make_seeds: {total} seeds for {len(corpora)} targets in {out}")


if __name__ == "__main__":
    main()
