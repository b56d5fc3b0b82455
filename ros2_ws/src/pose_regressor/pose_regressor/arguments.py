"""argparse types shared by the command lines of both packages (`pose-regressor`, `pose-train`)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path


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


def output_folder(text: str) -> Path:
    """An argparse type: a folder a command writes into (`--out`), refused at once when it, or a
    folder it would sit in, is a file: the command would otherwise fail at its first write, after
    the work (an evaluation, a render) was done. A path with ``..`` is resolved."""
    if not text:
        raise argparse.ArgumentTypeError("must name a folder, got ''")
    path = Path(text)
    if ".." in path.parts:  # OUT/x/.. is OUT: replacing it by renaming OUT/x/.. fails (EBUSY) after the work
        path = path.resolve()
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            where = "" if part == path else f", so {text} cannot be a folder"
            raise argparse.ArgumentTypeError(f"{part} is a file{where}; name a folder")
    return path
