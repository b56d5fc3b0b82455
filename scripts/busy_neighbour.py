"""A stand-in for another program on the machine: keeps one core busy a share of the time, until
stopped (Ctrl-C or kill). What docs/results.md's time-budget run trained beside.

    .venv/bin/python scripts/busy_neighbour.py [--busy 0.6] &

Busy for `busy` x 100 ms, idle for the rest, in a loop (0.6: 60% of one core).
"""

from __future__ import annotations

import argparse
import contextlib
import time

PERIOD_S = 0.1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--busy", type=float, default=0.6, help="share of each 100 ms spent busy (0-1)")
    args = parser.parse_args()
    if not 0.0 <= args.busy <= 1.0:
        parser.error(f"--busy must be in [0, 1], got {args.busy}")
    busy_s = args.busy * PERIOD_S
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            start = time.perf_counter()
            while time.perf_counter() - start < busy_s:
                pass
            time.sleep(PERIOD_S - busy_s)


if __name__ == "__main__":
    main()
