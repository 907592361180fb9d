"""docs/ops.md is generated from the registry and the tests, and every op has a test."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("gen_ops_doc", ROOT / "scripts/gen_ops_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_registered_op_has_a_numerical_test():
    from torch2mlx import _core

    counts = _generator().collect_test_counts()
    untested = [name for name in _core.supported_ops() if not counts[name]]
    assert untested == [], f"ops without a test in tests/ops: {untested}"


def test_ops_doc_is_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/gen_ops_doc.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
