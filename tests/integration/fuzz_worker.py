"""Runs fuzz cases of `pose-regressor` and `pose-train` in this one process, so that the imports
(rclpy, torch, ONNX Runtime) are paid once and hundreds of cases fit in CI's budget.

    python fuzz_worker.py CASES.json RESULTS.json

Each case ({"tool", "argv", "bound_s"}) calls the tool's real `main(argv)` with file descriptor 2
redirected to a file (C-level writers such as rcl's logger land there too) and a wall-clock bound
(SIGALRM). The result records the exit code, everything written to stderr, the duration, and a
traceback if `main` raised instead of returning.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any


class CaseTimeoutError(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise CaseTimeoutError


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    from pose_regressor import cli as robot_cli
    from pose_regressor_training import cli as train_cli

    main = robot_cli.main if case["tool"] == "pose-regressor" else train_cli.main
    code: Any = None
    raised = ""
    with tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(err.fileno(), 2)
        start = time.monotonic()
        signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, float(case["bound_s"]))
        try:
            code = main(case["argv"])
        except SystemExit as exc:  # argparse's own exit
            code = exc.code
        except CaseTimeoutError:
            raised = f"timeout after {case['bound_s']} s"
        except BaseException:
            raised = traceback.format_exc()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            seconds = time.monotonic() - start
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        err.seek(0)
        stderr = err.read().decode("utf-8", errors="replace")
    return {**case, "code": code, "stderr": stderr, "raised": raised, "seconds": seconds}


def main() -> None:
    cases = json.loads(Path(sys.argv[1]).read_text())
    results = [run_case(case) for case in cases]
    Path(sys.argv[2]).write_text(json.dumps(results))


if __name__ == "__main__":
    main()
