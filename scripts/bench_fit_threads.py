"""Training steps per second of the default model under each CPU thread setting, alone or beside
other trainings: the measurement behind pose_regressor_training/cpu_threads.py.

    .venv/bin/python scripts/bench_fit_threads.py [--seconds 10] [--competitors 1]

Each setting runs in its own process (libgomp reads OMP_WAIT_POLICY when torch loads) doing real
training steps of training/configs/synth_quad.yaml's model on random batches of 32 quad-rig sets.
With --competitors N, N more processes run the same steps with torch's defaults for the whole time,
as another `pose-train fit` on the same machine would. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

# (label, OMP_WAIT_POLICY or None for libgomp's default, torch intra-op threads or 0 for the default)
SETTINGS = (
    ("torch defaults (libgomp spins)", None, 0),
    ("1 thread", None, 1),
    ("OMP_WAIT_POLICY=PASSIVE (pose-train's default)", "PASSIVE", 0),
)

STEPS = """
import sys, time
import torch
from pose_regressor_training.models import build_model
from pose_regressor_training.models.config import ModelConfig
threads, seconds = int(sys.argv[1]), float(sys.argv[2])
if threads > 0:
    torch.set_num_threads(threads)
config = ModelConfig(backbone="small_cnn", small_cnn_width=32, fusion="input", num_cameras=4,
                     image_width=64, image_height=48, hidden_dim=256, dropout=0.2, rotation="rot6d")
model = build_model(config)
optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
images = torch.rand(32, 4, 3, 48, 64)
steps, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    out = model(images, model.random_masks(32, 1))
    loss = out.t.pow(2).mean() + out.q.pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    steps += 1
print(f"{steps / (time.perf_counter() - start):.3f} {torch.get_num_threads()}")
"""


def environment(policy: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    return env


def measure(policy: str | None, threads: int, seconds: float) -> tuple[float, int]:
    out = subprocess.run(
        [sys.executable, "-c", STEPS, str(threads), str(seconds)],
        env=environment(policy),
        capture_output=True,
        text=True,
        check=True,
    )
    rate, used = out.stdout.split()
    return float(rate), int(used)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per setting")
    parser.add_argument("--competitors", type=int, default=0, help="other trainings running meanwhile")
    args = parser.parse_args()
    total = (args.seconds + 8.0) * len(SETTINGS) + 5.0  # model build and torch import per setting
    competitors = [
        subprocess.Popen(
            [sys.executable, "-c", STEPS, "0", str(total)], env=environment(None), stdout=subprocess.DEVNULL
        )
        for _ in range(args.competitors)
    ]
    try:
        time.sleep(3.0 if competitors else 0.0)  # let them reach their loops
        load = os.getloadavg()[0]
        print(f"{args.competitors} competing training(s), load average {load:.1f}, {os.cpu_count()} cores\n")
        print("| setting | torch threads | training steps/s |")
        print("|---|---|---|")
        for label, policy, threads in SETTINGS:
            rate, used = measure(policy, threads, args.seconds)
            print(f"| {label} | {used} | {rate:.2f} |", flush=True)
    finally:
        for process in competitors:
            process.kill()


if __name__ == "__main__":
    main()
