"""Small helpers shared by the templates."""

from __future__ import annotations

from collections.abc import Sequence


def ntuple(value: int | float | Sequence, n: int, name: str = "argument") -> tuple:
    """`value` repeated `n` times, or `value` itself as a tuple if it already has `n` items
    (torch's `_pair`/`_triple`)."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n:
            raise ValueError(f"{name} must have {n} values, got {tuple(value)}")
        return tuple(value)
    return (value,) * n
