"""Milliseconds per training batch spent in augmentation (`Augmenter`) with a config's `augment`
section, on this machine's CPU: the part of a `pose-train fit` step that happens before the model.

    .venv/bin/python scripts/bench_augment.py [--config training/configs/synth_quad.yaml] [--batches 200]

Batches of 32 random quad-rig sets at the config's model input size (64x48 for synth_quad.yaml),
as `Trainer.prepare` hands them to the augmenter, timed with torch's 1 and 2 intra-op threads.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time

import torch

from pose_regressor.rig import preset_rig
from pose_regressor_training.augment import Augmenter
from pose_regressor_training.train_config import load_train_config

BATCH = 32


def milliseconds_per_batch(augmenter: Augmenter, images: torch.Tensor, batches: int) -> float:
    t = torch.zeros(images.shape[0], 3)
    q = torch.tensor([[0.0, 0.0, 0.0, 1.0]]).repeat(images.shape[0], 1)
    for _ in range(5):  # first calls allocate and load kernels
        augmenter(images, t, q)
    start = time.perf_counter()
    for _ in range(batches):
        augmenter(images, t, q)
    return (time.perf_counter() - start) / batches * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="training/configs/synth_quad.yaml")
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    if args.batches < 1:
        parser.error("--batches must be at least 1")
    config = load_train_config(args.config)
    rig = preset_rig("quad")
    images = torch.rand(BATCH, len(rig.cameras), 3, config.model.image_height, config.model.image_width)
    print(
        f"augmentation of {args.config}, batch of {BATCH} quad-rig sets at "
        f"{config.model.image_width}x{config.model.image_height}\n"
    )
    print("| torch threads | ms per batch |\n|---|---|")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        augmenter = Augmenter(config.augment, rig, torch.Generator().manual_seed(0))
        print(f"| {threads} | {milliseconds_per_batch(augmenter, images, args.batches):.2f} |")


if __name__ == "__main__":
    main()
