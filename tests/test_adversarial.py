"""The adversarial corpus: hostile files, generated here (nothing binary is committed).

Each file is read by torch2mlx.load_state_dict in a child process limited to 4 GB of address
space and 20 seconds. It must be refused with a Torch2MLXError that starts with
"[component]" and names the file: no crash, no hang, no MemoryError, no code run.
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import warnings
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

import torch2mlx
from conftest import reduce_ops, write_safetensors_by_hand

ADDRESS_SPACE = 4 << 30
TIMEOUT = 20

# The child reports one line: REFUSED <message>, or what went wrong instead.
CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
import torch2mlx
try:
    torch2mlx.load_state_dict(sys.argv[1])
except torch2mlx.Torch2MLXError as error:
    print("REFUSED", error)
except MemoryError as error:
    print("MEMORYERROR", repr(error))
except BaseException as error:
    print("RAISED", type(error).__name__, error)
else:
    print("ACCEPTED")
"""


# ---------------------------------------------------------------------------------------
# Pickle programs, packaged as torch.save archives.

PROTO = b"\x80\x02"


def text(value: str) -> bytes:
    """BINUNICODE."""
    encoded = value.encode()
    return b"X" + struct.pack("<I", len(encoded)) + encoded


def integer(value: int) -> bytes:
    """LONG1, little-endian two's complement, as Python writes ints beyond 32 bits."""
    length = (value.bit_length() + 8) // 8  # room for the sign bit
    return b"\x8a" + bytes([length]) + value.to_bytes(length, "little", signed=True)


def global_(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def int_tuple(values: tuple[int, ...]) -> bytes:
    return b"(" + b"".join(map(integer, values)) + b"t"


def rebuild_tensor(size: tuple[int, ...], stride: tuple[int, ...], numel: int = 16) -> bytes:
    """_rebuild_tensor_v2(<FloatStorage '0' of numel>, 0, size, stride, False, OrderedDict())."""
    storage = b"(" + text("storage") + global_("torch", "FloatStorage") + text("0")
    storage += text("cpu") + integer(numel) + b"tQ"
    args = storage + integer(0) + int_tuple(size) + int_tuple(stride) + b"\x89"
    args += global_("collections", "OrderedDict") + b")R"
    return global_("torch._utils", "_rebuild_tensor_v2") + b"(" + args + b"tR"


def state_dict(value_ops: bytes) -> bytes:
    """{'w': <value>}."""
    return PROTO + b"}" + text("w") + value_ops + b"s."


def torch_zip(path: Path, program: bytes) -> Path:
    """A torch.save-style archive: archive/data.pkl, archive/byteorder, one 64-byte storage."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", program)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/data/0", bytes(64))
        archive.writestr("archive/version", "3\n")
    return path


def shared_lists(levels: int) -> bytes:
    """l0 = [None]; l(k) = [l(k-1), l(k-1)]: a few bytes a level, 2**levels paths."""
    ops = b"]Na" + b"q\x00"
    ops += b"](h\x00h\x00eq\x00" * levels
    return PROTO + ops + b"."


def copies(module: str, name: str, argument: bytes, calls: int) -> bytes:
    """module.name(argument) called `calls` times on one memoized argument."""
    ops = argument + b"q\x00" + global_(module, name) + b"q\x01h\x00\x85q\x02"
    return PROTO + ops + b"](" + b"h\x01h\x02R" * calls + b"e."


def nested_rebuild_from_type(levels: int) -> bytes:
    """f(f, None, (f, None, (... levels deep ...), None), None), f = _rebuild_from_type_v2."""
    ops = global_("torch._tensor", "_rebuild_from_type_v2") + b"q\x01)"
    ops += b"q\x02(h\x01Nh\x02Nt" * levels
    return PROTO + ops + b"q\x03h\x01h\x03R."


PICKLE_BOMBS: dict[str, tuple[bytes, str]] = {
    "nested_marks": (PROTO + b"(" * 100_000 + b".", "marks nest deeper"),
    "tuple1_nesting": (PROTO + b"N" + b"\x85" * 100_000 + b".", "nests deeper"),
    "memo_index_0xffffffff": (PROTO + b"}r\xff\xff\xff\xff.", "memo index 4294967295"),
    "binunicode_4gb": (PROTO + b"X\xff\xff\xff\xffabc.", "ends in the middle"),
    "storage_numel_2_62": (state_dict(rebuild_tensor((4,), (1,), numel=2**62)), "declares"),
    "size_2_31_cubed": (state_dict(rebuild_tensor((2**31,) * 3, (1, 1, 1))), "overflowing dim"),
    "list_contains_itself": (PROTO + b"]q\x00h\x00a.", "contains itself"),
    "empty_tensor_overflowing_dims": (
        state_dict(rebuild_tensor((0, 2**62, 2**62), (1, 1, 1))),
        "overflowing dim",
    ),
    "size_one_dim_stride_2_62": (state_dict(rebuild_tensor((1, 4), (2**62, 1))), "overflow"),
    "shared_lists_2_60_paths": (shared_lists(60), "expands to more than"),
    "value_flood": (PROTO + b"N" * 5_000_000 + b".", "creates more than"),
    "torch_size_copies": (
        copies("torch", "Size", b"](" + b"N" * 20_000 + b"e", 20_000),
        "creates more than",
    ),
    "bytearray_copies": (
        copies("builtins", "bytearray", text("x" * 1_000_000), 1_000),
        "copy more text",
    ),
    "rebuild_from_type_nesting": (nested_rebuild_from_type(100_000), "wraps another"),
}

# Globals that run code, read files or reach the network, none of them in the allowlist.
DANGEROUS_GLOBALS = [
    "os.system",
    "posix.system",
    "nt.system",
    "os.execv",
    "subprocess.Popen",
    "subprocess.check_output",
    "builtins.eval",
    "builtins.exec",
    "builtins.getattr",
    "builtins.setattr",
    "builtins.__import__",
    "builtins.open",
    "builtins.compile",
    "builtins.globals",
    "__builtin__.eval",
    "shutil.rmtree",
    "pickle.loads",
    "marshal.loads",
    "importlib.import_module",
    "runpy.run_path",
    "sys.exit",
    "socket.socket",
    "ctypes.CDLL",
    "webbrowser.open",
    "torch.load",
    "torch.hub.load",
    "torch.jit.load",
    "torch.nn.Module",
    "torch.storage._load_from_bytes",
    "numpy.load",
    "numpy.core.multiarray._reconstruct",
]


# ---------------------------------------------------------------------------------------
# Safetensors headers.


def safetensors_cases(folder: Path) -> dict[str, tuple[Path, str]]:
    def entry(begin: int, end: int, shape: list[int]) -> dict:
        return {"dtype": "F32", "shape": shape, "data_offsets": [begin, end]}

    huge_length = folder / "header_length_2_63.safetensors"
    huge_length.write_bytes(struct.pack("<Q", 2**63) + b'{"a": {}}   ')
    return {
        "overlapping_offsets": (
            write_safetensors_by_hand(
                folder / "overlapping.safetensors",
                {"a": entry(0, 8, [2]), "b": entry(4, 12, [2])},
                bytes(12),
            ),
            "overlap",
        ),
        "offsets_past_the_end": (
            write_safetensors_by_hand(
                folder / "past_end.safetensors", {"a": entry(0, 1 << 40, [1 << 38])}, bytes(16)
            ),
            "truncated",
        ),
        "offsets_near_2_64": (
            write_safetensors_by_hand(
                folder / "wrapping.safetensors",
                {"a": entry(0, 4, [1]), "b": entry(2**64 - 4, 2**64 - 4, [0])},
                bytes(4),
            ),
            "starts at byte",
        ),
        "offsets_reversed": (
            write_safetensors_by_hand(
                folder / "reversed.safetensors", {"a": entry(8, 0, [2])}, bytes(8)
            ),
            "end before they begin",
        ),
        "header_length_2_63": (huge_length, "exceeds file size"),
    }


# ---------------------------------------------------------------------------------------
# Zip archives whose directories lie.


def patched(path: Path, name: str, patch: Callable[[bytearray, int, int], None]) -> Path:
    """Calls patch(data, local_header_offset, central_header_offset) for member `name`."""
    data = bytearray(path.read_bytes())
    start = data.find(b"PK\x01\x02")
    while start >= 0:
        name_length = struct.unpack_from("<H", data, start + 28)[0]
        if data[start + 46 : start + 46 + name_length] == name.encode():
            local = struct.unpack_from("<I", data, start + 42)[0]
            patch(data, local, start)
            path.write_bytes(bytes(data))
            return path
        start = data.find(b"PK\x01\x02", start + 4)
    raise AssertionError(f"{name} not in {path}")


def claimed_sizes(ratio: int) -> Callable[[bytearray, int, int], None]:
    """A patch for `patched`: the member claims to inflate to `ratio` times its compressed size."""

    def patch(data: bytearray, local: int, central: int) -> None:
        compressed = struct.unpack_from("<I", data, central + 20)[0]
        struct.pack_into("<I", data, central + 24, compressed * ratio)
        struct.pack_into("<I", data, local + 22, compressed * ratio)

    return patch


def claims_more_than_it_holds(path: Path) -> Path:
    """A torch.save archive whose one storage holds 1 MB deflated but claims 1000 times more."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", state_dict(rebuild_tensor((16,), (1,))))
        archive.writestr("archive/byteorder", "little")
        archive.writestr(
            "archive/data/0", random.randbytes(1 << 20), compress_type=zipfile.ZIP_DEFLATED
        )
        archive.writestr("archive/version", "3\n")
    return patched(path, "archive/data/0", claimed_sizes(1000))


def zip_cases(folder: Path) -> dict[str, tuple[Path, str]]:
    program = state_dict(b"N")

    def genuine(name: str) -> Path:
        return torch_zip(folder / name, program)

    def central_sizes(compressed: int, size: int):
        return lambda data, _local, central: struct.pack_into(
            "<II", data, central + 20, compressed, size
        )

    def local_sizes(data: bytearray, local: int, _central: int) -> None:
        struct.pack_into("<II", data, local + 18, 10**9, 10**9)

    def all_sizes(data: bytearray, local: int, central: int) -> None:
        local_sizes(data, local, central)
        struct.pack_into("<II", data, central + 20, 10**9, 10**9)

    def local_extra(data: bytearray, local: int, _central: int) -> None:
        struct.pack_into("<H", data, local + 28, 0xFFFF)

    member = "archive/data.pkl"
    bomb = folder / "deflate_bomb.pt"
    with zipfile.ZipFile(bomb, "w") as archive:
        archive.writestr(member, program, compress_type=zipfile.ZIP_DEFLATED)
    compressed = len(zlib.compress(program)) - 6  # raw deflate: no zlib header and checksum
    duplicate = folder / "duplicate.pt"
    with zipfile.ZipFile(duplicate, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate, as it should
        archive.writestr(member, program)
        archive.writestr(member, state_dict(b"\x88"))

    def traversal(name: str, member_name: str) -> Path:
        path = folder / name
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(member, program)
            archive.writestr(member_name, b"x")
        return path

    # Each storage claims 1000 times its compressed size (deflate allows 1032): every entry
    # is plausible alone, but together they would inflate 3 MB to 3 GB.
    storages = [f"archive/data/{i}" for i in range(3)]
    budget = folder / "inflation_budget.pt"
    with zipfile.ZipFile(budget, "w") as archive:
        archive.writestr(member, program)
        for name in storages:
            archive.writestr(name, random.randbytes(1 << 20), compress_type=zipfile.ZIP_DEFLATED)
    for name in storages:
        patched(budget, name, claimed_sizes(1000))

    return {
        "claims_1000x_what_it_holds": (
            claims_more_than_it_holds(folder / "claims_more.pt"),
            "is corrupt: its data inflates to 1048576 bytes",
        ),
        "inflation_budget_3gb": (budget, "deflated entries inflate to more than the limit"),
        "stored_size_lies": (
            patched(genuine("stored_lies.pt"), member, central_sizes(len(program) + 5, 7)),
            "claims",
        ),
        "sizes_past_the_end": (
            patched(genuine("sizes_past_end.pt"), member, all_sizes),
            "past the end",
        ),
        "local_sizes_lie": (patched(genuine("local_lies.pt"), member, local_sizes), "damaged"),
        "local_header_past_the_end": (
            patched(genuine("local_extra.pt"), member, local_extra),
            "past the end",
        ),
        "deflate_ratio_1000000": (
            patched(bomb, member, central_sizes(compressed, compressed * 1_000_000)),
            "zip bomb",
        ),
        "duplicate_names": (duplicate, "appears twice"),
        "dot_dot_name": (traversal("dot_dot.pt", "../x"), "'../x'"),
        "absolute_name": (traversal("absolute.pt", "/abs"), "'/abs'"),
        "nested_dot_dot_name": (traversal("nested_dot_dot.pt", "archive/../../x"), "climbs out"),
    }


# ---------------------------------------------------------------------------------------
# The corpus, read once per session by parallel children.


@dataclass(frozen=True)
class Outcome:
    path: Path
    fragment: str
    returncode: int | None  # None: killed after the timeout
    output: str


def read_in_child(path: Path) -> tuple[int | None, str]:
    try:
        child = subprocess.run(
            [sys.executable, "-c", CHILD.format(limit=ADDRESS_SPACE), str(path)],
            cwd=path.parent,  # where the payloads' "touch pwned" would leave its mark
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, ""
    return child.returncode, child.stdout.strip() + child.stderr.strip()[-2000:]


def build_corpus(folder: Path) -> dict[str, tuple[Path, str]]:
    corpus: dict[str, tuple[Path, str]] = {}
    for name, (program, fragment) in PICKLE_BOMBS.items():
        corpus[f"pickle:{name}"] = (torch_zip(folder / f"{name}.pt", program), fragment)
    for name in DANGEROUS_GLOBALS:
        module, function = name.rsplit(".", 1)
        program = PROTO + reduce_ops(module, function, "touch pwned") + b"."
        expected = name.replace("__builtin__", "builtins")
        corpus[f"global:{name}"] = (
            torch_zip(folder / f"global_{name.replace('.', '_')}.pt", program),
            f"'{expected}' is not allowed",
        )
    for name, case in safetensors_cases(folder).items():
        corpus[f"safetensors:{name}"] = case
    for name, case in zip_cases(folder).items():
        corpus[f"zip:{name}"] = case
    deep = folder / "model.safetensors.index.json"
    deep.write_text(
        '{"weight_map": {}, "metadata": {"a": ' + "[" * 1_000_000 + "]" * 1_000_000 + "}}"
    )
    corpus["index:deep_metadata"] = (deep, "nests deeper")
    for name, case in fifo_cases(folder).items():
        corpus[f"fifo:{name}"] = case
    return corpus


def fifo_cases(folder: Path) -> dict[str, tuple[Path, str]]:
    """FIFOs where files belong: opening one for reading waited for a writer, forever."""
    single = folder / "fifo.safetensors"
    os.mkfifo(single)
    sharded = folder / "fifo_shard"
    sharded.mkdir()
    safetensors.numpy.save_file({"a": np.ones(2, np.float32)}, str(sharded / "one.safetensors"))
    os.mkfifo(sharded / "two.safetensors")
    weight_map = {"a": "one.safetensors", "b": "two.safetensors"}
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    index = folder / "fifo_index"
    index.mkdir()
    os.mkfifo(index / "model.safetensors.index.json")
    fragment = "is not a regular file (a FIFO)"
    return {
        "single_file": (single, fragment),
        "shard": (sharded, fragment),
        "index": (index, fragment),
    }


SAFETENSORS_CASES = [
    "overlapping_offsets",
    "offsets_past_the_end",
    "offsets_near_2_64",
    "offsets_reversed",
    "header_length_2_63",
]
ZIP_CASES = [
    "claims_1000x_what_it_holds",
    "inflation_budget_3gb",
    "stored_size_lies",
    "sizes_past_the_end",
    "local_sizes_lie",
    "local_header_past_the_end",
    "deflate_ratio_1000000",
    "duplicate_names",
    "dot_dot_name",
    "absolute_name",
    "nested_dot_dot_name",
]
CASES = [
    *(f"pickle:{name}" for name in PICKLE_BOMBS),
    *(f"global:{name}" for name in DANGEROUS_GLOBALS),
    *(f"safetensors:{name}" for name in SAFETENSORS_CASES),
    *(f"zip:{name}" for name in ZIP_CASES),
    "index:deep_metadata",
    "fifo:single_file",
    "fifo:shard",
    "fifo:index",
]


@pytest.fixture(scope="session")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    folder = tmp_path_factory.mktemp("adversarial")
    corpus = build_corpus(folder)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(
            zip(corpus, pool.map(read_in_child, [p for p, _ in corpus.values()]), strict=True)
        )
    return {
        name: Outcome(path, fragment, *results[name]) for name, (path, fragment) in corpus.items()
    }


def test_every_dangerous_global_is_outside_the_allowlist() -> None:
    allowed = set(torch2mlx.checkpoint._core.allowed_globals())
    assert len(DANGEROUS_GLOBALS) >= 15
    for name in DANGEROUS_GLOBALS:
        assert name.replace("__builtin__", "builtins") not in allowed, name


@pytest.mark.parametrize("case", CASES)
def test_refused_cleanly(outcomes: dict[str, Outcome], case: str) -> None:
    outcome = outcomes[case]
    assert outcome.returncode is not None, f"{case}: still running after {TIMEOUT} s (a hang)"
    assert outcome.returncode >= 0, f"{case}: killed by signal {-outcome.returncode} (a crash)"
    assert outcome.returncode == 0, f"{case}: exit {outcome.returncode}: {outcome.output}"
    verdict, _, message = outcome.output.partition(" ")
    assert verdict == "REFUSED", f"{case}: {outcome.output}"
    assert message.startswith("["), message
    assert outcome.path.name in message, message
    assert outcome.fragment in message, message
    assert not (outcome.path.parent / "pwned").exists(), "torch2mlx ran code from a file"


def test_the_corpus_is_complete(outcomes: dict[str, Outcome]) -> None:
    assert sorted(outcomes) == sorted(CASES)


def test_an_empty_deflated_storage_is_read(tmp_path: Path) -> None:
    """Regression: Python's zipfile deflates an empty member to 2 bytes, which was refused."""
    import torch

    path = tmp_path / "empty_deflated.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", state_dict(rebuild_tensor((0,), (1,), numel=0)))
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/data/0", b"")
        archive.writestr("archive/version", "3\n")
    info = zipfile.ZipFile(path).getinfo("archive/data/0")
    assert (info.compress_type, info.compress_size, info.file_size) == (zipfile.ZIP_DEFLATED, 2, 0)
    assert torch.load(path, weights_only=True)["w"].shape == (0,)
    (array,) = torch2mlx.load_state_dict(path).values()
    assert array.shape == (0,) and array.dtype == "float32"


PEAK_RSS_CHILD = """
import sys
import torch2mlx
try:
    torch2mlx.load_state_dict(sys.argv[1])
except torch2mlx.Torch2MLXError as error:
    print("REFUSED", error)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the forking process.
print(next(int(line.split()[1]) for line in open("/proc/self/status") if "VmHWM" in line))
"""


def test_a_member_claiming_more_than_it_holds_costs_what_it_holds(tmp_path: Path) -> None:
    """Regression: the claimed 1 GB was allocated and zero-filled before the refusal."""
    path = claims_more_than_it_holds(tmp_path / "claims_more.pt")
    child = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    refusal, peak_kb = child.stdout.strip().splitlines()
    assert refusal.startswith(f"REFUSED [zip] {path}: entry 'archive/data/0' is corrupt"), refusal
    declared = int(refusal.split("where the directory declares ")[1].split(";")[0])
    assert declared > 10**9, refusal
    assert int(peak_kb) < 200 << 10, f"peak RSS {int(peak_kb) >> 10} MB"
