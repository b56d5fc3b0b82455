"""`pose-train to-bag`: one split of a dataset folder as a ROS 2 bag, to replay to the node.

The bag holds what `pose-train synth --bag` writes (`pose_regressor.bagio.RigBagWriter`): one
``sensor_msgs/Image`` (rgb8) per camera on ``/<camera>/image_raw`` and the ground truth
``T_map_base`` on ``/ground_truth/pose``, all stamped with the frame's ``stamp_ns``, so a user's
imported folder can be scored by ``pose-regressor eval-node`` like a synthetic one. Images are read
one set at a time (no split held in memory); the bag is written beside its path and moved into
place only when complete.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from pose_regressor.bagio import RigBagWriter
from pose_regressor.dataset_folder import image_path, read_metadata, read_rgb, rig_from_metadata, split_frames
from pose_regressor.files import overlapping, publish, remove_path, staged_bag


@dataclass(frozen=True)
class ToBagConfig:
    data: Path
    out: Path
    split: str = "test"
    storage: str = "mcap"
    overwrite: bool = False


@dataclass(frozen=True)
class ToBagSummary:
    sets: int
    messages: int
    cameras: list[str]
    seconds: float


def folder_to_bag(cfg: ToBagConfig) -> ToBagSummary:
    """Writes the split's camera sets and ground truth into the bag `cfg.out` (see the module doc)."""
    started = time.perf_counter()
    frames = split_frames(cfg.data, cfg.split)
    rig = rig_from_metadata(cfg.data, read_metadata(cfg.data))
    if cfg.out.exists() and not cfg.overwrite:
        raise FileExistsError(f"bag {cfg.out} exists; use --overwrite to replace it")
    if overlapping(cfg.data, cfg.out):  # --overwrite would replace the dataset being read
        raise ValueError(
            f"--out {cfg.out} and the dataset folder {cfg.data} overlap (one is, or holds, the other); "
            "write the bag elsewhere"
        )
    previous = None
    for f in frames:  # a bag is one time line: the node's synchronizer and the GT track need it
        if previous is not None and f.stamp_ns <= previous.stamp_ns:
            raise ValueError(
                f"{cfg.data}/frames.csv: the {cfg.split} split's stamps do not increase at index {f.index} "
                f"(stamp_ns {f.stamp_ns} after {previous.stamp_ns} of index {previous.index}); a bag needs "
                "one increasing time line"
            )
        previous = f
    holder, staging = staged_bag(cfg.out)
    remove_path(holder)
    try:
        holder.mkdir(parents=True)  # an --out in a folder yet to be made, as synth and import allow
        with RigBagWriter(staging, rig.names, storage=cfg.storage) as bag:
            for f in frames:
                bag.write_set(
                    f.stamp_ns, [read_rgb(image_path(cfg.data, name, f.index)) for name in rig.names]
                )
                bag.write_ground_truth(f.stamp_ns, f.translation, f.quat_xyzw)
            messages = bag.message_count
        publish(staging, cfg.out)
    finally:  # Ctrl-C and errors alike: no half-written bag is left behind
        remove_path(holder)
    return ToBagSummary(len(frames), messages, rig.names, time.perf_counter() - started)
