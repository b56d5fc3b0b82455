"""argparse types shared by the command lines of both packages (`pose-regressor`, `pose-train`)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def bounded_float(
    low: float, high: float, *, low_open: bool = False, unit: str = ""
) -> Callable[[str], float]:
    """An argparse type: a finite number in [low, high] (or (low, high] with `low_open`)."""
    shown = (
        f"{'>' if low_open else 'from'} {low:g}{unit} {'and at most' if low_open else 'to'} {high:g}{unit}"
    )

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number {shown}, got {text!r}") from None
        above_low = value > low if low_open else value >= low
        if not (math.isfinite(value) and above_low and value <= high):
            raise argparse.ArgumentTypeError(f"must be {shown}, got {text}")
        return value

    return parse
