"""Does a camera's sensor_msgs/CameraInfo match the camera the model was trained with? (ROS-free)

A pose regressor learns its training rig's lenses: another lens, a different crop or swapped
topics give confident, wrong poses rather than errors. The bundle's `provenance.rig` (written
by training, `Rig.to_dict`) records each camera's pinhole intrinsics and, by convention, its
frame `<name>_optical_frame`; the node compares that with what the drivers publish and reports
each mismatch in one line that names the camera, the field, both values and the difference.

Intrinsics are compared at the bundle camera's size (`BundleCamera.width` x `height`, what the
node expects on the topic): a driver publishing 1280x960 for a rig calibrated at 640x480 is
fine when its K scales to the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pose_regressor.bundle import ModelBundle
from pose_regressor.rig import PinholeIntrinsics, Rig

__all__ = ["ExpectedCamera", "camera_info_topic", "check_camera_info", "expected_cameras"]

# image_transport transports whose topics are `<base>/<transport>`; the camera_info topic is
# a sibling of the base topic, not of the transport's.
TRANSPORTS = frozenset({"compressed", "compressedDepth", "theora", "zstd", "ffmpeg"})


@dataclass(frozen=True)
class ExpectedCamera:
    """What the bundle expects of one camera: intrinsics at the bundle camera's size, frame id."""

    name: str
    intrinsics: PinholeIntrinsics
    frame_id: str

    @property
    def width(self) -> int:
        return self.intrinsics.width

    @property
    def height(self) -> int:
        return self.intrinsics.height


def expected_cameras(bundle: ModelBundle) -> dict[str, ExpectedCamera] | None:
    """The bundle cameras' expected intrinsics and frames, from the training rig in
    `bundle.provenance["rig"]`, by camera name.

    Returns None when there is nothing to check against: an older bundle without a rig, a rig
    that does not parse, or one that shares no camera with the bundle. Cameras of the bundle
    that the rig lacks are left out. Never raises: a bundle that loaded must not fail here
    because of its provenance, which is informational.
    """
    provenance = bundle.provenance
    if not isinstance(provenance, dict) or "rig" not in provenance:
        return None
    try:
        rig = Rig.from_dict(provenance["rig"])
        by_name = {camera.name: camera for camera in rig.cameras}
        expected: dict[str, ExpectedCamera] = {}
        for camera in bundle.cameras:
            rig_camera = by_name.get(camera.name)
            if rig_camera is None:
                continue
            intrinsics = rig_camera.intrinsics
            if (intrinsics.width, intrinsics.height) != (camera.width, camera.height):
                intrinsics = intrinsics.resized(camera.width, camera.height)
            expected[camera.name] = ExpectedCamera(camera.name, intrinsics, rig_camera.optical_frame)
    except Exception:  # any malformation (RigError, a TypeError from a list where a number goes)
        return None
    return expected or None


def check_camera_info(
    camera: str,
    expected: ExpectedCamera,
    width: int,
    height: int,
    k: Sequence[float],
    frame_id: str,
    tolerance: float = 0.02,  # recalibrations agree within ~1%; another lens or resolution is far off
) -> list[str]:
    """Problems with camera `camera`'s CameraInfo (`width`, `height`, row-major 3x3 `k`,
    `frame_id`) against `expected`; an empty list when it matches.

    The received K is scaled to the expected size before comparing. fx and fy may differ by
    `tolerance` relative to the bundle's value, cx and cy by `tolerance` of the image width or
    height (a principal point is a position, its error matters relative to the image).
    """
    problems: list[str] = []
    where = f"camera {camera}: camera_info"
    tol = f"{tolerance * 100:g}%"
    if _normalized_frame(frame_id) != _normalized_frame(expected.frame_id):
        problems.append(
            f"{where} frame_id {frame_id!r} differs from the bundle's {expected.frame_id!r}: "
            "swapped topics or another TF naming?"
        )
    if width <= 0 or height <= 0:
        problems.append(
            f"{where} size is {width}x{height}: the driver fills no image size, so its K cannot be "
            f"checked against the bundle's {expected.width}x{expected.height}"
        )
        return problems
    if len(k) != 9:
        problems.append(f"{where} K has {len(k)} elements, not the 9 of a row-major 3x3 matrix")
        return problems
    values = [float(v) for v in k]
    if not all(math.isfinite(v) for v in values):
        problems.append(f"{where} K holds non-finite values {values}")
        return problems
    if all(v == 0.0 for v in values):
        problems.append(
            f"{where} K is all zeros: the camera is not calibrated (the bundle expects "
            f"fx {expected.intrinsics.fx:.1f}, fy {expected.intrinsics.fy:.1f} at "
            f"{expected.width}x{expected.height})"
        )
        return problems
    expected_aspect = expected.width / expected.height
    aspect = width / height
    if abs(aspect / expected_aspect - 1.0) > tolerance:
        problems.append(
            f"{where} size {width}x{height} (aspect {aspect:.3f}) differs from the bundle's "
            f"{expected.width}x{expected.height} (aspect {expected_aspect:.3f}): the images are "
            "stretched to the bundle's size, or another camera mode?"
        )
    sx, sy = expected.width / width, expected.height / height
    scaled = (width, height) != (expected.width, expected.height)
    at = f" (scaled to {expected.width}x{expected.height})" if scaled else ""
    intr = expected.intrinsics
    # (field, received scaled, expected, normalizer, what a mismatch usually means)
    checks = [
        ("fx", values[0] * sx, intr.fx, intr.fx, "another lens or swapped topics?"),
        ("fy", values[4] * sy, intr.fy, intr.fy, "another lens or swapped topics?"),
        ("cx", values[2] * sx, intr.cx, float(expected.width), "a cropped image or another camera?"),
        ("cy", values[5] * sy, intr.cy, float(expected.height), "a cropped image or another camera?"),
    ]
    for name, got, want, scale, hint in checks:
        # Scaled by 100 before dividing: 92 / 320 is 28.75% exactly and prints as 28.8%, where
        # 0.2875 * 100 would be 28.749999... and print as 28.7%.
        percent = abs(got - want) * 100.0 / scale
        if percent > tolerance * 100.0:
            of = "" if name in ("fx", "fy") else f" of the image {'width' if name == 'cx' else 'height'}"
            problems.append(
                f"{where} {name} {got:.1f}{at} differs from the bundle's {want:.1f} by "
                f"{percent:.1f}%{of} (> {tol}): {hint}"
            )
    return problems


def _normalized_frame(frame_id: str) -> str:
    # tf2 frame ids carry no leading slash; ROS 1 era drivers still publish one.
    return frame_id.lstrip("/")


def camera_info_topic(image_topic: str) -> str:
    """The camera_info topic beside an image topic, by image_transport's rule.

    The transport suffix (`/compressed`, ...) is removed to get the base topic, whose last name
    is replaced by `camera_info`: `/front/image_raw` and `/front/image_raw/compressed` give
    `/front/camera_info`. Relative names stay relative (`front/image_raw` ->
    `front/camera_info`, `image` -> `camera_info`) so that the node's namespace and remappings
    resolve them as they do the image topic; image_transport's ROS 2 `getCameraInfoTopic`
    expects a resolved name and would make them absolute. Empty segments (`//`, a trailing
    `/`) are dropped as ROS name resolution does.
    """
    absolute = image_topic.startswith("/")
    names = [name for name in image_topic.split("/") if name]
    if len(names) > 1 and names[-1] in TRANSPORTS:
        names.pop()
    if names:
        names[-1] = "camera_info"
    else:
        names = ["camera_info"]
    return ("/" if absolute else "") + "/".join(names)
