"""Decoding of ROS image messages into RGB arrays (ROS-free: numpy + OpenCV only).

`cv_bridge` is not on PyPI and `rosbags-image` ignores row padding, so this module decodes the
fields of a `sensor_msgs/msg/Image` (`height`, `width`, `encoding`, `step`, `data`,
`is_bigendian`) or a `sensor_msgs/msg/CompressedImage` (`format`, `data`) itself.

Conventions:

* Every decoder returns a fresh, C-contiguous, writable ``uint8`` array of shape ``(H, W, 3)``
  in **RGB** channel order (never a view into the message buffer).
* ``step`` is the length of one row in bytes, padding included; only the first
  ``width * bytes_per_pixel`` bytes of each row are pixels.
* ``mono16`` (and its alias ``16UC1``) is reduced to 8 bit by ``>> 8``; ``is_bigendian`` gives the
  byte order of its samples.  The 8-bit encodings ignore ``is_bigendian``.
* ``8UC1`` is read as ``mono8`` and ``8UC3`` as ``bgr8`` (OpenCV's native order, as cv_bridge does).
* ``yuv422`` is ROS's name for UYVY (alias ``uyvy``); ``yuv422_yuy2`` is YUYV (alias ``yuyv``).
* Bayer encodings are named by their top-left 2x2 cell, e.g. ``bayer_rggb8`` starts with R G on
  row 0 and G B on row 1; they are demosaiced with OpenCV's bilinear method.
* Any malformed input raises :class:`ImageDecodeError` (a :class:`ValueError`) whose message
  names the problem; nothing else escapes (no numpy or OpenCV tracebacks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ENCODINGS",
    "MAX_DIMENSION",
    "ImageDecodeError",
    "decode_compressed",
    "decode_image",
    "decode_message",
    "quiet_codec_logs",
    "resize_to",
]

#: Largest accepted width or height (pixels); larger values are treated as corrupt headers.
MAX_DIMENSION = 16384

ImageBytes = bytes | bytearray | memoryview | NDArray[np.generic]
RgbImage = NDArray[np.uint8]


class ImageDecodeError(ValueError):
    """An image message cannot be decoded; the message says why."""


@dataclass(frozen=True)
class _Layout:
    channels: int  # samples per pixel in the buffer (2 for the packed 4:2:2 formats)
    sample_bytes: int  # bytes per sample
    code: int | None  # cv2.cvtColor code to RGB; None: handled explicitly (rgb8, mono16)
    min_size: int = 1  # smallest width/height the format allows
    even_width: bool = False

    @property
    def pixel_bytes(self) -> int:
        return self.channels * self.sample_bytes


# OpenCV's legacy Bayer code names are shifted relative to ROS's: OpenCV names the pattern by
# the 2x2 cell starting at pixel (1, 1), ROS (like OpenCV 5's new RGGB/BGGR/... aliases, which
# have the same values) by the cell starting at (0, 0).  So ROS `rggb` is OpenCV `BayerBG`, etc.
# The legacy names are used because they exist (with these values) in OpenCV 4 and 5 alike.
_BAYER = {
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
}

_LAYOUTS: dict[str, _Layout] = {
    "rgb8": _Layout(3, 1, None),
    "bgr8": _Layout(3, 1, cv2.COLOR_BGR2RGB),
    "8uc3": _Layout(3, 1, cv2.COLOR_BGR2RGB),
    "rgba8": _Layout(4, 1, cv2.COLOR_RGBA2RGB),
    "bgra8": _Layout(4, 1, cv2.COLOR_BGRA2RGB),
    "mono8": _Layout(1, 1, cv2.COLOR_GRAY2RGB),
    "8uc1": _Layout(1, 1, cv2.COLOR_GRAY2RGB),
    "mono16": _Layout(1, 2, None),
    "16uc1": _Layout(1, 2, None),
    "yuv422": _Layout(2, 1, cv2.COLOR_YUV2RGB_UYVY, even_width=True),
    "uyvy": _Layout(2, 1, cv2.COLOR_YUV2RGB_UYVY, even_width=True),
    "yuv422_yuy2": _Layout(2, 1, cv2.COLOR_YUV2RGB_YUY2, even_width=True),
    "yuyv": _Layout(2, 1, cv2.COLOR_YUV2RGB_YUY2, even_width=True),
    **{name: _Layout(1, 1, code, min_size=2) for name, code in _BAYER.items()},
}

#: Supported `sensor_msgs/Image` encodings (lower case; matching is case-insensitive).
ENCODINGS: tuple[str, ...] = tuple(_LAYOUTS)

_COMPRESSED_CODECS = frozenset({"jpeg", "jpg", "png"})


def _check_dimension(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ImageDecodeError(f"image {name} must be an integer, got {value!r}")
    size = int(value)
    if not 0 < size <= MAX_DIMENSION:
        raise ImageDecodeError(f"image {name} must be in 1..{MAX_DIMENSION}, got {size}")
    return size


def _as_bytes(data: ImageBytes) -> NDArray[np.uint8]:
    """A flat uint8 view of `data` (no copy where possible)."""
    try:
        if isinstance(data, np.ndarray):
            return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError) as exc:
        raise ImageDecodeError(f"image data is not a byte buffer ({type(data).__name__}): {exc}") from None


def decode_image(
    height: int,
    width: int,
    encoding: str,
    step: int,
    data: ImageBytes,
    is_bigendian: bool | int = False,
) -> RgbImage:
    """Decode the fields of a `sensor_msgs/msg/Image` into an RGB ``uint8`` array ``(H, W, 3)``.

    Args:
        height, width: image size in pixels (1..:data:`MAX_DIMENSION`).
        encoding: one of :data:`ENCODINGS` (case-insensitive).
        step: bytes per row including padding; at least ``width * bytes_per_pixel``.
        data: the pixel buffer, at least ``step * height`` bytes (extra bytes are ignored).
        is_bigendian: byte order of 16-bit samples (only ``mono16`` / ``16UC1``).

    Raises:
        ImageDecodeError: unknown encoding, bad size or step, or too little data.
    """
    h = _check_dimension("height", height)
    w = _check_dimension("width", width)
    if not isinstance(encoding, str):
        raise ImageDecodeError(f"image encoding must be a string, got {encoding!r}")
    layout = _LAYOUTS.get(encoding.strip().lower())
    if layout is None:
        raise ImageDecodeError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(sorted(ENCODINGS))}"
        )
    if h < layout.min_size or w < layout.min_size:
        raise ImageDecodeError(f"{encoding} images must be at least {layout.min_size}x{layout.min_size}")
    if layout.even_width and w % 2:
        raise ImageDecodeError(f"{encoding} images must have an even width (4:2:2 pairs), got {w}")
    if isinstance(step, bool) or not isinstance(step, int | np.integer):
        raise ImageDecodeError(f"image step must be an integer, got {step!r}")
    row_bytes = w * layout.pixel_bytes
    if step < row_bytes:
        raise ImageDecodeError(
            f"image step {step} is smaller than one row of {w} {encoding} pixels ({row_bytes} bytes)"
        )
    buf = _as_bytes(data)
    needed = int(step) * h
    if buf.size < needed:
        raise ImageDecodeError(
            f"image data has {buf.size} bytes, expected at least step * height = {step} * {h} = {needed}"
        )
    # Row view without the padding: (H, row_bytes), rows `step` bytes apart.
    rows = buf[:needed].reshape(h, int(step))[:, :row_bytes]
    try:
        if layout.sample_bytes == 2:
            dtype = np.dtype(">u2" if is_bigendian else "<u2")
            # numpy < 1.23 (Ubuntu 22.04 ships 1.21) refuses .view() to a wider dtype on the strided rows
            mono = (np.ascontiguousarray(rows).view(dtype) >> 8).astype(np.uint8)
            return np.ascontiguousarray(cv2.cvtColor(mono, cv2.COLOR_GRAY2RGB))
        pixels = rows.reshape(h, w, layout.channels) if layout.channels > 1 else rows
        if layout.code is None:
            # a copy: never a view into the message buffer (see the conventions above)
            return np.array(pixels, dtype=np.uint8, order="C", copy=True)
        return np.ascontiguousarray(cv2.cvtColor(np.ascontiguousarray(pixels), layout.code))
    except cv2.error as exc:  # not expected after the checks above; keep the promise anyway
        raise ImageDecodeError(f"OpenCV could not convert the {encoding} image: {exc}") from None


def decode_compressed(format: str, data: ImageBytes) -> RgbImage:
    """Decode a `sensor_msgs/msg/CompressedImage` (JPEG or PNG) into RGB ``uint8`` ``(H, W, 3)``.

    ``format`` is the message's format string, e.g. ``"jpeg"``, ``"png"`` or
    ``"rgb8; jpeg compressed bgr8"``; an empty format lets the codec be detected from the data.
    Grey and 16-bit images are converted to 8-bit RGB.

    Raises:
        ImageDecodeError: unsupported format (e.g. ``compressedDepth``), empty or corrupt data,
            or a decoded size beyond :data:`MAX_DIMENSION`.
    """
    if not isinstance(format, str):
        raise ImageDecodeError(f"compressed image format must be a string, got {format!r}")
    tokens = set(format.lower().replace(";", " ").split())
    if "compresseddepth" in tokens:
        raise ImageDecodeError(f"compressedDepth images are not supported (format {format!r})")
    if tokens and not tokens & _COMPRESSED_CODECS:
        raise ImageDecodeError(f"unsupported compressed image format {format!r}; supported: jpeg, png")
    buf = _as_bytes(data)
    if buf.size == 0:
        raise ImageDecodeError("compressed image data is empty")
    try:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageDecodeError(f"cannot decode compressed image (format {format!r}): {exc}") from None
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.size == 0:
        raise ImageDecodeError(
            f"cannot decode compressed image (format {format!r}): corrupt or truncated data"
        )
    h, w = bgr.shape[:2]
    if h > MAX_DIMENSION or w > MAX_DIMENSION:
        raise ImageDecodeError(f"decoded image is {w}x{h}, larger than {MAX_DIMENSION} pixels per side")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def decode_message(msg: Any) -> RgbImage:
    """Decode a `sensor_msgs/msg/Image` or `CompressedImage` (rclpy or rosbags object) to RGB.

    The message type is recognised by its fields: a ``format`` field means `CompressedImage`.

    Raises:
        ImageDecodeError: as :func:`decode_image` / :func:`decode_compressed`, or when ``msg``
            has neither the fields of an `Image` nor those of a `CompressedImage`.
    """
    try:
        if hasattr(msg, "format"):
            return decode_compressed(msg.format, msg.data)
        return decode_image(msg.height, msg.width, msg.encoding, msg.step, msg.data, bool(msg.is_bigendian))
    except AttributeError as exc:
        raise ImageDecodeError(
            f"not an Image or CompressedImage message ({type(msg).__name__}): {exc}"
        ) from None


def quiet_codec_logs() -> None:
    """Stops OpenCV's own log lines (``[ WARN:0@...] ... PNG input buffer is incomplete`` and the
    like), which it writes to stderr for every corrupt PNG or JPEG it is given. The decoders here
    raise :class:`ImageDecodeError` for those images instead, which the node counts and logs
    throttled; a stream of corrupt images must not flood the log. Process-wide: call it once
    from a program (the node does), not from a library.

    Not covered: libjpeg's own "Corrupt JPEG data: ..." line for a JPEG that is damaged but still
    decodes (printed by libjpeg itself, once per such image); that image is used as decoded.
    """
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def resize_to(image: NDArray[np.uint8], width: int, height: int) -> NDArray[np.uint8]:
    """Resize ``image`` (``(H, W)`` or ``(H, W, C)``) to ``width`` x ``height`` pixels.

    Uses area averaging when the image shrinks in both directions (no aliasing) and bilinear
    interpolation otherwise.  Returns a copy even when the size already matches.

    Raises:
        ValueError: non-positive target size or an empty image.
    """
    if isinstance(width, bool) or isinstance(height, bool) or width <= 0 or height <= 0:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected a non-empty (H, W) or (H, W, C) image, got shape {image.shape}")
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image.copy()
    shrink = width <= w and height <= h
    resized = cv2.resize(
        np.ascontiguousarray(image),
        (int(width), int(height)),
        interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
    )
    return np.asarray(resized, dtype=image.dtype)
