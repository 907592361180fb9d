"""Inventory of the core's throw sites, and which of them some test drives.

    .venv/bin/python scripts/throw_sites.py                 # totals per file
    .venv/bin/python scripts/throw_sites.py --undriven      # every site no test names
    .venv/bin/python scripts/throw_sites.py --tests OTHER   # the tests of another checkout

A site is a call that throws in cpp/src and cpp/include: fail(), the readers' reject() and
refuse(), the graph reader's bad(), the unpickler's error_at() and over_limit(), an op's
unsupported(), codegen's collected errors and a bare throw (the wrappers' own bodies are not
sites: their callers are). A site counts as driven when a test names its message: a fixed
fragment of its text (10+ characters between format fields) appears in tests/ or cpp/tests/,
or a string literal of a test (6+ characters; quoted values and numbers read as format
fields) appears in its text and in at most three sites' texts (so "is not a list" alone
names none). This reads text, it runs nothing: a test
that drives a site without naming its message is not counted, so the count is a lower
bound, and a generic fragment can count a site that no test reaches. Coverage of a
sanitizer build would be exact; this takes a second.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CALL = re.compile(
    r"(?<![\w.>])(?:call\.)?(fail|reject|refuse|bad|error|error_at|over_limit|refuse_dtype"
    r"|unsupported)\(|errors_\.(?:push_back|emplace_back)\(|\bthrow\s+\w"
)
WRAPPER = re.compile(r"\bvoid (fail|reject|refuse|bad|error|unsupported)\(")
LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"')
# Python and C++ string literals, either quote, scanned left to right so that a quote of one
# kind inside a literal of the other does not pair with anything.
TEST_LITERAL = re.compile(r""""((?:[^"\\\n]|\\.)*)"|'((?:[^'\\\n]|\\.)*)'""")


def tests_text(root: Path) -> str:
    files = [
        *root.glob("tests/**/*.py"),
        *root.glob("cpp/tests/*.cpp"),
        *root.glob("cpp/tests/*.h"),
    ]
    return "\n".join(path.read_text(errors="replace") for path in sorted(files)).replace(
        "\\\\", "\\"
    )


def call_text(lines: list[str], start: int, call: str) -> str:
    """The call's source, from `call` to the end of its statement (a line ending in ';')."""
    chunk = []
    for line in lines[start : start + 9]:
        chunk.append(line)
        if line.rstrip().endswith(";"):
            break
    text = "\n".join(chunk)
    return text[text.find(call) :]


def sites(root: Path) -> list[dict]:
    found = []
    sources = [*root.glob("cpp/src/**/*.cpp"), *root.glob("cpp/src/**/*.h")]
    for path in sorted([*sources, *root.glob("cpp/include/torch2mlx/*.h")]):
        lines = path.read_text().splitlines()
        for index, line in enumerate(lines):
            wrapper_body = index >= 1 and "[[noreturn]]" in lines[index - 1]
            if wrapper_body or path.name == "error.cpp" or line.strip().startswith("//"):
                continue
            if "[[noreturn]]" in line or WRAPPER.search(line):
                continue
            for match in CALL.finditer(line):
                literals = LITERAL.findall(call_text(lines, index, match.group(0)))
                fragments = [
                    part.strip(" :;,.'")
                    for literal in literals
                    for part in re.split(r"\{[^}]*\}", literal)
                ]
                found.append(
                    {
                        "site": f"{path.relative_to(root)}:{index + 1}",
                        "text": " ".join(literals),
                        "fragments": [f for f in fragments if len(f) >= 10 and f[0] != "["],
                    }
                )
    return found


def mark_driven(found: list[dict], tests: str) -> None:
    literals = {
        (double or single).replace("\\", "") for double, single in TEST_LITERAL.findall(tests)
    }
    literals = {text for text in literals if len(text) >= 6}
    # A test quotes the message as formatted ("pad mode 'mirror'", "is 100 bytes"): its
    # quoted values and numbers stand for the format fields of the site's text.
    literals |= {re.sub(r"\d+", "{}", re.sub(r"'[^']*'", "'{}'", text)) for text in literals}
    literals = {
        text for text in literals if not text.startswith(("[", "{", "/", "torch.", "aten."))
    }
    for site in found:
        site["hits"] = {text for text in literals if text in site["text"]}
    spread = Counter(text for site in found for text in site["hits"])
    for site in found:
        named = any(fragment in tests for fragment in site["fragments"])
        site["driven"] = named or any(spread[text] <= 3 for text in site["hits"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=Path, default=ROOT, help="checkout whose tests to read")
    parser.add_argument("--undriven", action="store_true", help="list the sites no test names")
    args = parser.parse_args()
    found = sites(ROOT)
    mark_driven(found, tests_text(args.tests))
    driven = sum(site["driven"] for site in found)
    print(f"{len(found)} throw sites, {driven} named by a test")
    per_file = Counter(site["site"].split(":")[0] for site in found)
    named = Counter(site["site"].split(":")[0] for site in found if site["driven"])
    for file in sorted(per_file):
        print(f"  {file}: {named[file]}/{per_file[file]}")
    if args.undriven:
        for site in found:
            if not site["driven"]:
                print(f"{site['site']}: {site['text'][:110]}")


if __name__ == "__main__":
    main()
