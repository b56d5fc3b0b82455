"""The `pose-train` console script.

`cli.main` answers a Ctrl-C with one line and exit 130, but only once its module is imported: a
Ctrl-C in the ~0.8 s Python spends importing it printed Python's traceback. This module imports
nothing of ours at its top, so it can catch that one too.
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from pose_regressor_training.cli import main as run
    except KeyboardInterrupt:
        print("pose-train: interrupted (SIGINT)", file=sys.stderr)
        return 130
    return run()
