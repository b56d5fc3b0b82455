"""Writes requirements/constraints.txt from the packages installed in the current venv.

The ROS 2 wheels also install egg-info metadata for their inner Python packages
(e.g. `rclpy`, `action_msgs`) next to the real distribution (`ros-rclpy`); those are
not installable names on PyPI, so they are left out of the lock.

The lock is the CPU development venv's (what CI and `make setup` install); a venv with the GPU
layer of `make setup-gpu` (requirements/gpu.txt) would lock onnxruntime-gpu instead of onnxruntime,
so it is refused.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HEADER = (
    "# Full lock of every transitive dependency (pip freeze of a working .venv). Update with: make lock\n"
)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> None:
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    pins = [line for line in frozen if "==" in line]
    names = {normalize(line.split("==")[0]) for line in pins}
    if "onnxruntime-gpu" in names:
        sys.exit("lock: this venv has the GPU layer of `make setup-gpu`; lock from a CPU-only venv")
    kept = [line for line in pins if "ros-" + normalize(line.split("==")[0]) not in names]
    out = Path(__file__).resolve().parents[1] / "requirements" / "constraints.txt"
    out.write_text(HEADER + "\n".join(sorted(kept, key=str.lower)) + "\n")
    print(f"lock: {len(kept)} pins written to {out}")


if __name__ == "__main__":
    main()
