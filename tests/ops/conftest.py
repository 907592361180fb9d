"""Fixtures the op tests share."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def global_rng_kept():
    """For tests that seed and draw from torch's global generator: the op tests after them
    draw unseeded inputs from it (some at float16 tolerances that depend on the draw), so it
    is left as it was."""
    with torch.random.fork_rng():
        yield
