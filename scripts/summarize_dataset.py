"""Prints a dataset folder's (and optionally a bag's) contents and writes a preview image."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import Reader

from pose_regressor_training.data.folder import image_path, read_frames, read_metadata


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--bag", type=Path)
    parser.add_argument("--preview", type=Path, help="PNG with a few camera sets, one row each")
    args = parser.parse_args()

    meta = read_metadata(args.dataset)
    frames = read_frames(args.dataset)
    cams = [c["name"] for c in meta["rig"]["cameras"]]
    positions = np.stack([f.translation for f in frames])
    print(
        f"dataset {args.dataset}: {len(frames)} frames x {len(cams)} cameras ({', '.join(cams)}), "
        f"{meta['fps']:g} Hz"
    )
    for split, count in meta["splits"].items():
        print(f"  {split:5s}: {count} frames")
    lo, hi = positions.min(axis=0), positions.max(axis=0)
    spans = ", ".join(f"{axis} {a:.2f}..{b:.2f} m" for axis, a, b in zip("xyz", lo, hi, strict=True))
    print(f"  positions span {spans}")
    if args.bag is not None:
        with Reader(args.bag) as reader:
            print(f"bag {args.bag}: {reader.message_count} messages, {reader.duration / 1e9:.1f} s")
            for conn in sorted(reader.connections, key=lambda c: c.topic):
                print(f"  {conn.topic:24s} {conn.msgtype:32s} {conn.msgcount} messages")
    if args.preview is not None:
        picks = np.linspace(0, len(frames) - 1, 4).astype(int)
        rows = [
            np.concatenate(
                [cv2.imread(str(image_path(args.dataset, c, frames[i].index))) for c in cams], axis=1
            )
            for i in picks
        ]
        cv2.imwrite(str(args.preview), np.concatenate(rows, axis=0))
        print(
            f"preview: {args.preview} (rows: frames {', '.join(str(frames[i].index) for i in picks)}; "
            f"columns: {', '.join(cams)})"
        )


if __name__ == "__main__":
    main()
