"""`pose-train from-bag`: turn a ROS 2 bag of camera images and ground truth into a dataset folder.

Conventions:

* Camera topic ``k`` (in the order given) is rig camera ``k``; camera 0 is the reference, and a
  synchronized set carries its header stamp (integer nanoseconds).
* Frames are grouped by their **header** stamps, in bag order, with
  :class:`pose_regressor.sync.FrameSynchronizer` (a set spans at most ``slop_ns``).
* Ground truth is ``T_map_base`` (metres, xyzw quaternion, ``w >= 0``) from `PoseStamped`,
  `PoseWithCovarianceStamped`, `Odometry` (``pose.pose``) or `TransformStamped`
  (``header.frame_id`` -> ``child_frame_id``), also by header stamp.  At a set's stamp it is
  interpolated between the two bracketing messages: linearly in translation and by slerp (the
  shorter arc) in rotation.  Sets before the first or after the last ground-truth message, or
  whose bracketing messages are more than ``max_gt_gap_ns`` apart, are dropped and counted.
* The rig describes the images as recorded (its width x height must match the bag's images);
  with ``size`` the images are resized and the written rig's intrinsics scaled to match.
* Split ``blocks`` (the default) cuts the sets, in the order they were recorded, into the
  contiguous blocks of `SplitPolicy` (`data/block_split.py`, as `pose-train import` does: 20
  blocks, every 5th test, the one after it val), each block a sequence; so one recording gives a
  folder to fit, calibrate and test on. ``train``, ``val`` or ``test`` puts every set in that
  split as sequence 0 (a bag per split). ``dataset.yaml`` records the bag, the topics, the split
  and the drop counts under ``provenance``.  It is written into a hidden staging
  folder beside ``out`` and renamed to ``out`` only when complete: a failed conversion leaves
  no output behind, and a folder being replaced (``overwrite``) untouched.

Damaged bags: a bag whose metadata, header or index cannot be read is one error, ``cannot read
bag X: <reason>``. A record that does not deserialize is skipped and counted
(``corrupt_records``), and so are the messages of a damaged chunk that the index promised but
that cannot be read (``unreadable_records``); both counts go into ``dataset.yaml``'s provenance
when either is non-zero.
A ground-truth topic none of whose messages can be read is an error.

Ranges: ``slop_ns`` from 0 to :data:`MAX_SLOP_MS` ms, ``max_gt_gap_ns`` above 0 and at most
:data:`MAX_GT_GAP_MS` ms, each side of ``size`` from 1 to :data:`MAX_SIZE_SIDE` px (the largest
image the node accepts).

The core is :func:`convert_bag`; errors a user can fix raise :class:`BagConversionError` (a
``ValueError``) with a one-line message.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader
from tqdm import tqdm

from pose_regressor.bagio import (
    TYPESTORE,
    BagReadError,
    ReadStats,
    failure_reason,
    nothing_readable,
    open_bag,
    read_messages,
)
from pose_regressor.files import publish, staging_sibling
from pose_regressor.ground_truth import GT_TYPES, DropReason, GroundTruthTrack, gt_pose_fields, stamp_ns
from pose_regressor.image_decode import MAX_DIMENSION, ImageDecodeError, decode_message, resize_to
from pose_regressor.pose import (
    normalize_quaternion,
)
from pose_regressor.rig import Rig
from pose_regressor.sync import FrameSynchronizer, SyncedSet
from pose_regressor_training.data.block_split import SplitPolicy, block_splits
from pose_regressor_training.data.folder import (
    SPLITS,
    FrameRecord,
    check_position_reach,
    image_path,
    write_frames,
    write_metadata,
)

__all__ = [
    "GT_TYPES",
    "IMAGE_TYPES",
    "BagConversionError",
    "DropReason",
    "FromBagConfig",
    "FromBagSummary",
    "GroundTruthTrack",
    "convert_bag",
]

FloatArray = NDArray[np.float64]

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
BLOCKS = "blocks"  # the split that cuts one recording into train, val and test stretches
SPLIT_CHOICES = (BLOCKS, *SPLITS)
# Ranges of the settings (`pose-train from-bag --help` and its argument checks use the same).
MAX_SLOP_MS = 60_000.0  # a minute
MAX_GT_GAP_MS = 3_600_000.0  # an hour
MAX_SIZE_SIDE = MAX_DIMENSION  # px, each of width and height


class BagConversionError(ValueError):
    """The bag or the arguments cannot be turned into a dataset; the message says why."""


@dataclass(frozen=True)
class FromBagConfig:
    bag: Path
    camera_topics: tuple[str, ...]  # one per rig camera, rig order
    gt_topic: str
    rig: Rig  # the cameras as recorded
    out: Path
    slop_ns: int = 5_000_000
    max_gt_gap_ns: int = 200_000_000
    split: str = BLOCKS  # or one of SPLITS for every set
    blocks: SplitPolicy = field(default_factory=SplitPolicy)  # with split BLOCKS
    size: tuple[int, int] | None = None  # (width, height) of the written images; None: as recorded
    overwrite: bool = False
    progress: bool = True


@dataclass(frozen=True)
class FromBagSummary:
    sets_written: int
    dropped_outside_gt: int
    dropped_gt_gap: int
    unsynchronized_frames: int  # camera frames not in any synchronized set
    camera_frames: int
    gt_messages: int
    stamp_resets: int  # times the camera stamps went backwards (the synchronizer restarted)
    seconds: float
    corrupt_records: int = 0  # records skipped because they did not deserialize
    unreadable_records: int = 0  # records the index promised that could not be read (damaged chunk)
    read_error: str | None = None  # why reading a topic stopped early, if it did
    frames_per_split: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- ground truth


# --------------------------------------------------------------------------- bag access


class _Damage:
    """Records of the bag skipped as corrupt or unreadable (see the module docstring)."""

    def __init__(self) -> None:
        self.corrupt = 0
        self.read = ReadStats()

    def deserialize(self, raw: bytes | memoryview, msgtype: str) -> Any | None:
        """The message, or None (counted) when the record is corrupt."""
        try:
            return TYPESTORE.deserialize_cdr(raw, msgtype)
        except Exception:  # corrupt data can fail anywhere in the CDR decoder
            self.corrupt += 1
            return None


def _topic_connections(reader: Reader, topic: str, allowed: Sequence[str], role: str) -> list[Connection]:
    topics = reader.topics
    if topic not in topics:
        listing = ", ".join(f"{name} ({info.msgtype})" for name, info in sorted(topics.items())) or "none"
        raise BagConversionError(f"{role} topic {topic} is not in the bag; its topics: {listing}")
    msgtype = topics[topic].msgtype
    if msgtype not in allowed:
        raise BagConversionError(
            f"{role} topic {topic} has type {msgtype or 'mixed types'}; expected one of {', '.join(allowed)}"
        )
    return list(topics[topic].connections)


def _read_ground_truth(
    reader: Reader, connections: list[Connection], bag: Path, damage: _Damage
) -> tuple[GroundTruthTrack, dict[str, str]]:
    stamps: list[int] = []
    positions: list[list[float]] = []
    orientations: list[list[float]] = []
    frames: dict[str, str] = {}
    corrupt_before, read = damage.corrupt, ReadStats()
    for number, (conn, _, raw) in enumerate(read_messages(reader, connections, read)):
        msg = damage.deserialize(raw, conn.msgtype)
        if msg is None:
            continue
        p, o = gt_pose_fields(msg, conn.msgtype)
        position = [float(p.x), float(p.y), float(p.z)]
        orientation = [float(o.x), float(o.y), float(o.z), float(o.w)]
        try:
            if not np.all(np.isfinite(position)):
                raise ValueError("the position is not finite")
            check_position_reach(position)  # what the dataset folder would refuse
            normalize_quaternion(orientation)
        except ValueError as exc:
            raise BagConversionError(
                f"ground-truth message {number} on {conn.topic} is invalid: {exc}"
            ) from None
        stamps.append(stamp_ns(msg.header))
        positions.append(position)
        orientations.append(orientation)
        if not frames:
            frames["frame_id"] = str(msg.header.frame_id)
            if hasattr(msg, "child_frame_id"):
                frames["child_frame_id"] = str(msg.child_frame_id)
    damage.read.unreadable += read.unreadable
    damage.read.error = damage.read.error or read.error
    if not stamps:
        corrupt = damage.corrupt - corrupt_before
        if corrupt or read.damaged:
            raise BagConversionError(nothing_readable(bag, connections[0].topic, corrupt, read))
        raise BagConversionError(f"ground-truth topic {connections[0].topic} has no messages")
    track = GroundTruthTrack(stamps, np.array(positions), np.array(orientations))
    return track, frames


# --------------------------------------------------------------------------- conversion


def _validate(cfg: FromBagConfig) -> None:
    if not cfg.camera_topics:
        raise BagConversionError("give at least one camera topic")
    if len(set(cfg.camera_topics)) != len(cfg.camera_topics):
        raise BagConversionError(f"camera topics must be distinct, got {' '.join(cfg.camera_topics)}")
    if cfg.gt_topic in cfg.camera_topics:
        raise BagConversionError(f"{cfg.gt_topic} is given both as a camera and as the ground-truth topic")
    if len(cfg.rig.cameras) != len(cfg.camera_topics):
        raise BagConversionError(
            f"the rig has {len(cfg.rig.cameras)} camera(s) ({', '.join(cfg.rig.names)}) but "
            f"{len(cfg.camera_topics)} camera topic(s) were given; give one topic per rig camera in rig order"
        )
    if cfg.split not in SPLIT_CHOICES:
        raise BagConversionError(f"split must be one of {', '.join(SPLIT_CHOICES)}, got {cfg.split!r}")
    if not 0 <= cfg.slop_ns <= MAX_SLOP_MS * 1e6:
        raise BagConversionError(f"slop must be from 0 to {MAX_SLOP_MS:.0f} ms, got {cfg.slop_ns / 1e6:g} ms")
    if not 0 < cfg.max_gt_gap_ns <= MAX_GT_GAP_MS * 1e6:
        raise BagConversionError(
            f"maximum ground-truth gap must be > 0 and at most {MAX_GT_GAP_MS:.0f} ms, "
            f"got {cfg.max_gt_gap_ns / 1e6:g} ms"
        )
    if cfg.size is not None and not all(1 <= side <= MAX_SIZE_SIDE for side in cfg.size):
        raise BagConversionError(
            f"image size must be from 1 to {MAX_SIZE_SIDE} px a side, got {cfg.size[0]}x{cfg.size[1]}"
        )
    if not cfg.bag.exists():
        raise BagConversionError(f"bag {cfg.bag} does not exist")
    bag, out = cfg.bag.resolve(), cfg.out.resolve()
    if bag == out or out in bag.parents:
        raise BagConversionError(f"the output folder {cfg.out} must not contain the bag {cfg.bag}")
    if cfg.out.exists() and not cfg.overwrite and (not cfg.out.is_dir() or any(cfg.out.iterdir())):
        raise FileExistsError(f"{cfg.out} exists and is not empty; use --overwrite to replace it")


def _staging_folder(out: Path) -> Path:
    """A fresh hidden folder beside `out` to write into; renamed to `out` only once complete, so a
    failed conversion never leaves a half-written dataset (nor destroys the one being replaced)."""
    staging = staging_sibling(out)
    if staging.exists():  # left by an earlier killed run of a process with the same id
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def _prepare_output(cfg: FromBagConfig) -> None:
    for name in cfg.rig.names:
        (cfg.out / "images" / name).mkdir(parents=True, exist_ok=True)


def _output_rig(cfg: FromBagConfig) -> Rig:
    if cfg.size is None:
        return cfg.rig
    width, height = cfg.size
    return Rig(tuple(replace(c, intrinsics=c.intrinsics.resized(width, height)) for c in cfg.rig.cameras))


class _SetWriter:
    """Decodes, checks, resizes and writes the images of each synchronized set."""

    def __init__(self, cfg: FromBagConfig) -> None:
        self.cfg = cfg
        self.records: list[FrameRecord] = []

    def write(self, synced: SyncedSet[Any], t: FloatArray, q: FloatArray) -> None:
        index = len(self.records)
        for cam, topic, msg, stamp in zip(
            self.cfg.rig.cameras, self.cfg.camera_topics, synced.frames, synced.stamps, strict=True
        ):
            try:
                rgb = decode_message(msg)
            except ImageDecodeError as exc:
                raise BagConversionError(f"image on {topic} stamped {stamp} ns: {exc}") from None
            want = (cam.intrinsics.width, cam.intrinsics.height)
            if (rgb.shape[1], rgb.shape[0]) != want:
                raise BagConversionError(
                    f"image on {topic} stamped {stamp} ns is {rgb.shape[1]}x{rgb.shape[0]} but the rig gives "
                    f"{want[0]}x{want[1]} for camera {cam.name!r}; the rig must describe the images as "
                    "recorded (use --size to resize the output)"
                )
            if self.cfg.size is not None:
                rgb = resize_to(rgb, *self.cfg.size)
            path = image_path(self.cfg.out, cam.name, index)
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            if not cv2.imwrite(str(path), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
                raise OSError(f"could not write {path}")
        split = "train" if self.cfg.split == BLOCKS else self.cfg.split  # blocks: settled at the end
        self.records.append(FrameRecord(index, 0, split, synced.stamp_ns, t, q))


def _camera_messages(
    reader: Reader, connections: list[list[Connection]], damage: _Damage
) -> Iterator[tuple[int, str, int, Any]]:
    """(camera index, topic, header stamp, message) for every readable camera message, in bag order."""
    camera_of = {id(conn): k for k, conns in enumerate(connections) for conn in conns}
    flat = [conn for conns in connections for conn in conns]
    for conn, _, raw in read_messages(reader, flat, damage.read):
        msg = damage.deserialize(raw, conn.msgtype)
        if msg is not None:
            yield camera_of[id(conn)], conn.topic, stamp_ns(msg.header), msg


def convert_bag(cfg: FromBagConfig) -> FromBagSummary:
    """Write the dataset folder `cfg.out` from the bag `cfg.bag`; returns the counts.

    Raises:
        BagConversionError: missing bag, unknown topic, wrong message type, no ground truth,
            rig/topic mismatch, undecodable image, or no set with ground truth at all (then the
            message says why: a silent camera topic, cameras that never synchronize within the
            slop, ground truth outside the images' time range, gaps), with the counts.
        FileExistsError: `cfg.out` is not empty and `cfg.overwrite` is false.
    """
    started = time.perf_counter()
    _validate(cfg)
    try:
        reader = open_bag(cfg.bag)
    except BagReadError as exc:  # metadata, header or index unreadable: one line with the reason
        raise BagConversionError(str(exc)) from None
    out = cfg.out.absolute()  # a name to put the staging folder beside, even for "."
    staging: Path | None = None
    try:
        staging = _staging_folder(out)
        summary = _convert(replace(cfg, out=staging), reader, started)
        publish(staging, out)
        return summary
    except (BagConversionError, OSError):
        raise
    except Exception as exc:  # anything else the bag's damaged bytes make the readers raise
        raise BagConversionError(f"cannot read bag {cfg.bag}: {failure_reason(exc)}") from None
    finally:
        reader.close()
        if staging is not None and staging.exists():  # the conversion failed or was interrupted
            shutil.rmtree(staging, ignore_errors=True)


class _SyncStats:
    """What the synchronizer was given and made, to explain a bag that yields no usable set."""

    def __init__(self, cameras: int) -> None:
        self.messages = [0] * cameras
        self._latest: list[int | None] = [None] * cameras
        # The synchronizer pairs the latest frame of each camera, so the spread of those is the
        # closest it ever came to a set: what --slop-ms would have to allow.
        self.min_spread_ns: int | None = None
        self.set_stamps: tuple[int, int] | None = None  # first and last reference stamp of the sets

    def frame(self, camera: int, stamp: int) -> None:
        self.messages[camera] += 1
        self._latest[camera] = stamp
        latest = [s for s in self._latest if s is not None]
        if len(latest) == len(self._latest):
            spread = max(latest) - min(latest)
            self.min_spread_ns = spread if self.min_spread_ns is None else min(self.min_spread_ns, spread)

    def synced(self, stamp: int) -> None:
        first = stamp if self.set_stamps is None else min(self.set_stamps[0], stamp)
        last = stamp if self.set_stamps is None else max(self.set_stamps[1], stamp)
        self.set_stamps = (first, last)


def _seconds(stamp_ns: int) -> str:
    return f"{stamp_ns / 1e9:.3f}"


def _no_set_error(
    cfg: FromBagConfig, stats: _SyncStats, track: GroundTruthTrack, drops: dict[DropReason, int]
) -> BagConversionError:
    """Why the bag gave no set with ground truth, with the counts that show where it went wrong."""
    per_topic = ", ".join(f"{t} {n}" for t, n in zip(cfg.camera_topics, stats.messages, strict=True))
    if stats.set_stamps is None:
        silent = [t for t, n in zip(cfg.camera_topics, stats.messages, strict=True) if n == 0]
        if silent:
            return BagConversionError(
                f"camera topic(s) {', '.join(silent)} have no messages in {cfg.bag} "
                f"(messages per camera topic: {per_topic}); no set can be formed"
            )
        spread_ms = (stats.min_spread_ns or 0) / 1e6
        return BagConversionError(
            f"the cameras never synchronized in {cfg.bag}: messages per camera topic: {per_topic}; "
            f"sets formed: 0; the smallest stamp spread seen is {spread_ms:.3f} ms but the slop is "
            f"{cfg.slop_ns / 1e6:g} ms (raise --slop-ms above {spread_ms:.3f}, or check that the topics "
            "come from one rig)"
        )
    sets = sum(drops.values())
    first, last = stats.set_stamps
    gt_first, gt_last = int(track.stamps_ns[0]), int(track.stamps_ns[-1])
    if drops[DropReason.OUTSIDE_GT] == sets:
        if last < gt_first:
            gap = f"; the images end {(gt_first - last) / 1e9:.3f} s before the ground truth starts"
        elif first > gt_last:
            gap = f"; the images start {(first - gt_last) / 1e9:.3f} s after the ground truth ends"
        else:
            gap = ""
        return BagConversionError(
            f"all {sets} synchronized set(s) lie outside the ground-truth time range: ground truth "
            f"[{_seconds(gt_first)}, {_seconds(gt_last)}] s ({len(track)} messages on {cfg.gt_topic}), "
            f"image sets [{_seconds(first)}, {_seconds(last)}] s{gap} (are both stamped with the same clock?)"
        )
    return BagConversionError(
        f"no synchronized camera set with ground truth in {cfg.bag}: {sets} set(s) "
        f"synchronized from {sum(stats.messages)} camera frame(s), {drops[DropReason.OUTSIDE_GT]} outside "
        f"the ground-truth time range, {drops[DropReason.GT_GAP]} across ground-truth gaps "
        "(check the topics, --slop-ms and --max-gt-gap-ms)"
    )


def _convert(cfg: FromBagConfig, reader: Reader, started: float) -> FromBagSummary:
    camera_conns = [_topic_connections(reader, t, IMAGE_TYPES, "camera") for t in cfg.camera_topics]
    gt_conns = _topic_connections(reader, cfg.gt_topic, GT_TYPES, "ground-truth")
    damage = _Damage()
    track, gt_frames = _read_ground_truth(reader, gt_conns, cfg.bag, damage)
    _prepare_output(cfg)

    sync: FrameSynchronizer[Any] = FrameSynchronizer(len(cfg.camera_topics), cfg.slop_ns)
    writer = _SetWriter(cfg)
    drops = {reason: 0 for reason in DropReason}
    camera_frames = 0
    total = sum(c.msgcount for conns in camera_conns for c in conns)
    stats = _SyncStats(len(cfg.camera_topics))
    with tqdm(total=total, unit="msg", desc="reading bag", disable=not cfg.progress) as progress:
        for camera, _, stamp, msg in _camera_messages(reader, camera_conns, damage):
            camera_frames += 1
            progress.update(1)
            stats.frame(camera, stamp)
            synced = sync.add(camera, stamp, msg)
            if synced is None:
                continue
            stats.synced(synced.stamp_ns)
            pose = track.interpolate(synced.stamp_ns, cfg.max_gt_gap_ns)
            if isinstance(pose, DropReason):
                drops[pose] += 1
                continue
            writer.write(synced, *pose)

    records = writer.records
    summary = FromBagSummary(
        sets_written=len(records),
        dropped_outside_gt=drops[DropReason.OUTSIDE_GT],
        dropped_gt_gap=drops[DropReason.GT_GAP],
        unsynchronized_frames=camera_frames - sync.emitted * len(cfg.camera_topics),
        camera_frames=camera_frames,
        gt_messages=len(track),
        stamp_resets=sync.resets,
        seconds=time.perf_counter() - started,
        corrupt_records=damage.corrupt,
        unreadable_records=damage.read.unreadable,
        read_error=damage.read.error,
    )
    if not records:
        error = _no_set_error(cfg, stats, track, drops)
        if damage.corrupt or damage.read.damaged:
            raise BagConversionError(
                f"{error} (the bag is damaged: {damage.corrupt} corrupt and {damage.read.unreadable} "
                "unreadable records skipped)"
            )
        raise error
    records = _split(records, cfg)
    summary = replace(summary, frames_per_split={k: sum(r.split == k for r in records) for k in SPLITS})
    stamps = [r.stamp_ns for r in records]
    span_s = (max(stamps) - min(stamps)) / 1e9
    fps = (len(stamps) - 1) / span_s if span_s > 0 else 0.0
    read_counts: dict[str, int] = {
        "camera_frames": summary.camera_frames,
        "gt_messages": summary.gt_messages,
        "sets_synchronized": sync.emitted,
        "sets_written": summary.sets_written,
        "dropped_outside_gt": summary.dropped_outside_gt,
        "dropped_gt_gap": summary.dropped_gt_gap,
        "unsynchronized_frames": summary.unsynchronized_frames,
        "stamp_resets": summary.stamp_resets,
    }
    if summary.corrupt_records or summary.unreadable_records:  # a damaged bag: say what was left out
        read_counts.update(
            {"corrupt_records": summary.corrupt_records, "unreadable_records": summary.unreadable_records}
        )
    provenance: dict[str, Any] = {
        "generator": "pose-train from-bag",
        "bag": str(cfg.bag.resolve()),
        "camera_topics": list(cfg.camera_topics),
        "camera_types": [conns[0].msgtype for conns in camera_conns],
        "gt_topic": cfg.gt_topic,
        "gt_type": gt_conns[0].msgtype,
        **{f"gt_{key}": value for key, value in gt_frames.items()},
        "slop_ms": cfg.slop_ns / 1e6,
        "max_gt_gap_ms": cfg.max_gt_gap_ns / 1e6,
        "size": list(cfg.size) if cfg.size is not None else None,
        "counts": read_counts,
    }
    if cfg.split == BLOCKS:
        provenance["split_policy"] = cfg.blocks.for_frames(len(records)).to_json()
    else:
        provenance["split"] = cfg.split
    write_frames(cfg.out, records)
    write_metadata(cfg.out, _output_rig(cfg), fps, summary.frames_per_split, provenance)
    return summary


def _split(records: list[FrameRecord], cfg: FromBagConfig) -> list[FrameRecord]:
    """`records` (in recorded order) with the split and sequence of `cfg.split`."""
    if cfg.split != BLOCKS:
        return records
    try:
        splits = block_splits(len(records), cfg.blocks)
    except ValueError as exc:  # too few sets for the blocks: nothing is written
        raise BagConversionError(
            f"{exc} ({len(records)} synchronized sets with ground truth; lower --split-blocks, or give "
            "--split train/val/test to put them all in one split)"
        ) from None
    return [
        replace(r, split=split, sequence=block) for r, (split, block) in zip(records, splits, strict=True)
    ]
