"""A SIGINT sent to a console script while it imports its modules, at a moment the test sees.

A fixed delay lands anywhere on a loaded machine: before Python's own SIGINT handler exists, or
after the imports end. With PYTHONPROFILEIMPORTTIME Python reports each import as it finishes;
the signal goes out when numpy has finished, well inside the command line's own imports.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


def interrupt_while_importing(
    argv: Sequence[str | Path], env: Mapping[str, str] | None = None, after: str = "numpy"
) -> tuple[int, list[str]]:
    """Exit status and stderr lines (without the import-time report) of `argv` sent a SIGINT as
    soon as the top-level import of module `after` has finished."""
    report = {**(env if env is not None else os.environ), "PYTHONPROFILEIMPORTTIME": "1"}
    process = subprocess.Popen(argv, env=report, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stderr is not None
    finished = re.compile(rb"\|\s+" + re.escape(after.encode()) + rb"\n")
    seen = b""
    while not finished.search(seen):
        chunk = process.stderr.read1(65536)  # type: ignore[attr-defined]
        assert chunk, f"{argv[0]} ended before importing {after}: {seen.decode()[-2000:]}"
        seen += chunk
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=60)
    lines = (seen + rest).decode().splitlines()
    return process.returncode, [line for line in lines if not line.startswith("import time:")]
