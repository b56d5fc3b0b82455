"""Writing ROS 2 bags (MCAP or sqlite3) of camera images and ground-truth poses with `rosbags`.

Topic conventions (shared by recorded and synthetic bags): `/<camera>/image_raw`
(`sensor_msgs/msg/Image`, frame `<camera>_optical_frame`) per camera and
`/ground_truth/pose` (`geometry_msgs/msg/PoseStamped`, frame `map`, pose of `base_link`).
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

GROUND_TRUTH_TOPIC = "/ground_truth/pose"
IMAGE_TYPE = "sensor_msgs/msg/Image"
POSE_TYPE = "geometry_msgs/msg/PoseStamped"
TYPESTORE = get_typestore(Stores.ROS2_JAZZY)


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
        self, path: str | Path, camera_names: list[str], *, storage: str = "mcap", map_frame: str = "map"
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
