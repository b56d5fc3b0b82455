"""Numeric ranges and the one check of a config value against its range.

Shared by the training config (`pose_regressor_training.typed_config`) and the node's parameters
(`pose_regressor.params`), so both say "must be in [lo, hi], got x" the same way.
"""

from __future__ import annotations

import math
import reprlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Bound:
    """The documented range of a numeric value: ``lo <= x <= hi`` (``<`` where open).

    NaN and infinities are outside every range. For a list value every element must be in the
    range, and there may be at most ``max_items`` elements.
    """

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False
    max_items: int = 64

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def __str__(self) -> str:
        opening, closing = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
        return f"{opening}{_number(self.lo)}, {_number(self.hi)}{closing}"


# A hand-edited file's value goes into the error that refuses it; a 100 KB string made a 100 KB line.
_SHORT_REPR = reprlib.Repr()  # keyword arguments only from Python 3.12 (Jazzy's); this venv is 3.11
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 60
_SHORT_REPR.maxlevel = 2


def shown(value: object) -> str:
    """`repr(value)`, shortened with "..." where long, for error messages."""
    return _SHORT_REPR.repr(value)


def _number(value: float) -> str:
    # Floats print as written ("0.0", "0.05") unless long (2 pi -> "6.28319"); ints stay ints.
    if isinstance(value, int):
        return str(value)
    text = repr(value)
    return text if len(text) <= 8 else f"{value:g}"


def out_of_range(value: int | float, bound: Bound) -> str | None:
    """``"must be in [lo, hi], got x"`` when the number `value` is outside `bound`, else None."""
    if isinstance(value, int) and abs(value) > 2**63:  # beyond any bound; float() would overflow
        return f"must be in {bound}, got an integer of {len(str(abs(value)))} digits"
    if not bound.contains(float(value)):
        return f"must be in {bound}, got {value!r}"
    return None


def is_number(value: Any) -> bool:
    """An int or float, not a bool (YAML and ROS parameters give bools where numbers are expected)."""
    return isinstance(value, int | float) and not isinstance(value, bool)
