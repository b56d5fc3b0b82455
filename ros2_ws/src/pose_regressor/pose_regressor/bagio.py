"""Reading and writing ROS 2 bags (MCAP or sqlite3) of camera images and ground-truth poses with `rosbags`.

Topic conventions (shared by recorded and synthetic bags): `/<camera>/image_raw`
(`sensor_msgs/msg/Image`, frame `<camera>_optical_frame`) per camera and
`/ground_truth/pose` (`geometry_msgs/msg/PoseStamped`, frame `map`, pose of `base_link`).

Reading a damaged bag: `rosbags` parses the file in pure Python, so a damaged index or chunk
can raise almost anything (ReaderError, OverflowError, TypeError, UnicodeDecodeError,
MemoryError, ...), or end the message stream early without an error. `open_bag` turns every
failure to open a bag (missing or invalid `metadata.yaml`, truncated file, bad magic, unreadable
summary) into one `BagReadError` line, `cannot read bag X: <reason>`. `read_messages` yields
what can be read and counts the rest: messages the index promises but that could not be read
(a damaged chunk) and messages whose log time lies outside the bag's time range (a damaged
record header) end up in `ReadStats`, never in an exception. Each reader (replay, evaluate,
`pose-train from-bag`) then skips and counts single records that do not deserialize.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

GROUND_TRUTH_TOPIC = "/ground_truth/pose"
IMAGE_TYPE = "sensor_msgs/msg/Image"
POSE_TYPE = "geometry_msgs/msg/PoseStamped"
TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
MAX_REASON_CHARS = 300


class BagReadError(ValueError):
    """A bag cannot be opened or holds nothing readable; the message is one line,
    `cannot read bag PATH: REASON`."""


def one_line(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """`text` on one line (whitespace runs collapsed), cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def failure_reason(exc: BaseException) -> str:
    """What went wrong, in one line: rosbags' own message, or the exception type and message
    for anything else the parser raised on damaged bytes."""
    text = one_line(str(exc))
    if isinstance(exc, ReaderError) and text:
        return f"{text} (truncated, or not a bag file?)" if "magic" in text else text
    name = type(exc).__name__
    return f"{name}: {text} (damaged or truncated file?)" if text else f"{name} (damaged or truncated file?)"


def open_bag(path: str | Path) -> Reader:
    """An opened `rosbags` Reader (close it, or use it as a context manager).

    Raises:
        BagReadError: the bag is missing, or its metadata, header or index cannot be read.
    """
    path = Path(path)
    if not path.exists():
        raise BagReadError(f"cannot read bag {path}: it does not exist")
    try:
        reader = Reader(path)
    except Exception as exc:  # metadata.yaml is parsed here: YAML errors, missing keys, ...
        raise BagReadError(f"cannot read bag {path}: {failure_reason(exc)}") from None
    try:
        reader.open()
    except Exception as exc:  # a damaged header or summary can raise anything in the parser
        raise BagReadError(f"cannot read bag {path}: {failure_reason(exc)}") from None
    return reader


@dataclass
class ReadStats:
    """What `read_messages` could not deliver (accumulates over several reads, e.g. loops)."""

    read: int = 0  # messages yielded
    unreadable: int = 0  # promised by the index but not readable (a damaged chunk), or out of range
    error: str | None = None  # why reading stopped early, if it did

    @property
    def damaged(self) -> bool:
        return self.unreadable > 0 or self.error is not None


def nothing_readable(bag: str | Path, topic: str, corrupt: int, stats: ReadStats) -> str:
    """The one line for a topic none of whose messages could be read (corrupt or unreadable)."""
    detail = f"{corrupt} corrupt, {stats.unreadable} unreadable" + (f"; {stats.error}" if stats.error else "")
    return f"cannot read bag {bag}: none of the ground-truth messages on {topic} could be read ({detail})"


def read_messages(
    reader: Reader, connections: Sequence[Connection], stats: ReadStats
) -> Generator[tuple[Connection, int, bytes], None, None]:
    """`reader.messages(connections)`, never raising on damaged data.

    Reading stops at the first error in the storage layer (the rest of the bag is counted as
    unreadable in `stats`, with the reason); a message whose log time lies outside the bag's
    time range (a damaged record header) is counted and skipped, so that a replay never waits
    for a time that is not in the bag. When the stream ends, the messages the index promised
    but that never came are counted as unreadable too. Closing the iterator early (a deadline)
    counts nothing.
    """
    expected = sum(max(0, int(c.msgcount)) for c in connections)
    start, end = int(reader.start_time), int(reader.end_time)  # end: exclusive
    check_range = expected > 0 and start < end
    messages = reader.messages(connections=list(connections))
    read = 0
    out_of_range = 0
    try:
        while True:
            try:
                connection, log_ns, raw = next(messages)
            except StopIteration:
                break
            except Exception as exc:  # pure-Python parsing of damaged bytes: any exception type
                stats.error = failure_reason(exc)
                break
            if check_range and not start <= log_ns < end:
                out_of_range += 1
                continue
            read += 1
            stats.read += 1
            yield connection, log_ns, raw
        stats.unreadable += out_of_range + max(0, expected - read - out_of_range)
    finally:
        messages.close()


def stamp_from_ns(stamp_ns: int) -> Any:
    """`builtin_interfaces/msg/Time` (rosbags type) from integer nanoseconds."""
    return TYPESTORE.types["builtin_interfaces/msg/Time"](
        sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000
    )


def image_message(stamp_ns: int, frame_id: str, image_rgb: NDArray[np.uint8]) -> Any:
    """`sensor_msgs/msg/Image` (rgb8, tightly packed rows) from an (H, W, 3) uint8 array."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image_rgb.shape} {image_rgb.dtype}")
    types = TYPESTORE.types
    height, width = image_rgb.shape[:2]
    return types[IMAGE_TYPE](
        header=types["std_msgs/msg/Header"](stamp=stamp_from_ns(stamp_ns), frame_id=frame_id),
        height=height,
        width=width,
        encoding="rgb8",
        is_bigendian=0,
        step=3 * width,
        data=np.ascontiguousarray(image_rgb).reshape(-1),
    )


def pose_message(
    stamp_ns: int, frame_id: str, translation: NDArray[np.float64], quat_xyzw: NDArray[np.float64]
) -> Any:
    """`geometry_msgs/msg/PoseStamped` from a translation and an xyzw quaternion."""
    types = TYPESTORE.types
    point = types["geometry_msgs/msg/Point"](
        x=float(translation[0]), y=float(translation[1]), z=float(translation[2])
    )
    x, y, z, w = (float(v) for v in quat_xyzw)
    orientation = types["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w)
    return types[POSE_TYPE](
        header=types["std_msgs/msg/Header"](stamp=stamp_from_ns(stamp_ns), frame_id=frame_id),
        pose=types["geometry_msgs/msg/Pose"](position=point, orientation=orientation),
    )


class RigBagWriter:
    """Writes synchronized camera sets and ground truth into a new bag.

    Use as a context manager; the bag is complete (metadata written) when the block exits.
    """

    def __init__(
        self,
        path: str | Path,
        camera_names: list[str],
        *,
        storage: str = "mcap",
        map_frame: str = "map",
        custom_data: dict[str, str] | None = None,  # key-value notes in the bag's metadata.yaml
    ) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"bag {self.path} already exists; remove it or choose another path")
        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}.get(storage)
        if plugin is None:
            raise ValueError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
        self.camera_names = list(camera_names)
        self.map_frame = map_frame
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        for key, value in (custom_data or {}).items():
            self._writer.set_custom_data(key, value)
        self.message_count = 0

    def __enter__(self) -> RigBagWriter:
        self._writer.open()
        self._image_connections = [
            self._writer.add_connection(f"/{name}/image_raw", IMAGE_TYPE, typestore=TYPESTORE)
            for name in self.camera_names
        ]
        self._gt_connection = self._writer.add_connection(GROUND_TRUTH_TOPIC, POSE_TYPE, typestore=TYPESTORE)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._writer.close()

    def write_set(self, stamp_ns: int, images: list[NDArray[np.uint8]]) -> None:
        """One image per camera, in `camera_names` order, all stamped `stamp_ns`."""
        if len(images) != len(self.camera_names):
            raise ValueError(f"expected {len(self.camera_names)} images, got {len(images)}")
        for name, connection, image in zip(self.camera_names, self._image_connections, images, strict=True):
            msg = image_message(stamp_ns, f"{name}_optical_frame", image)
            self._writer.write(connection, stamp_ns, TYPESTORE.serialize_cdr(msg, IMAGE_TYPE))
            self.message_count += 1

    def write_ground_truth(
        self, stamp_ns: int, translation: NDArray[np.float64], quat_xyzw: NDArray[np.float64]
    ) -> None:
        msg = pose_message(stamp_ns, self.map_frame, translation, quat_xyzw)
        self._writer.write(self._gt_connection, stamp_ns, TYPESTORE.serialize_cdr(msg, POSE_TYPE))
        self.message_count += 1
