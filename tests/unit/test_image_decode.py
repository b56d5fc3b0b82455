"""`pose_regressor.image_decode`: every encoding against a known RGB image, row padding, errors."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from pose_regressor.image_decode import (
    ENCODINGS,
    MAX_DIMENSION,
    ImageDecodeError,
    decode_compressed,
    decode_image,
    resize_to,
)

U8 = NDArray[np.uint8]

# Flat, clearly distinct colour patches (8x8 px each, 2 rows x 3 columns -> 16 x 24 image).
PATCH = 8
COLOURS = np.array(
    [[[220, 30, 40], [30, 200, 50], [40, 60, 230]], [[230, 220, 40], [200, 40, 210], [50, 210, 220]]],
    dtype=np.uint8,
)


def patch_image() -> U8:
    return np.repeat(np.repeat(COLOURS, PATCH, axis=0), PATCH, axis=1)


def textured_image(h: int = 6, w: int = 10, seed: int = 0) -> U8:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def patch_interiors(image: U8, margin: int) -> list[tuple[U8, U8]]:
    """(pixels inside each patch, at least `margin` px from its border; expected colour)."""
    out = []
    for r in range(COLOURS.shape[0]):
        for c in range(COLOURS.shape[1]):
            block = image[
                r * PATCH + margin : (r + 1) * PATCH - margin, c * PATCH + margin : (c + 1) * PATCH - margin
            ]
            out.append((block.reshape(-1, 3), COLOURS[r, c]))
    return out


# --------------------------------------------------------------------------- encoders (by hand)


def bayer_mosaic(rgb: U8, pattern: str) -> U8:
    """Sample `rgb` through the colour filter array `pattern` (e.g. "rggb": row 0 R G, row 1 G B)."""
    channel = {"r": 0, "g": 1, "b": 2}
    mosaic = np.empty(rgb.shape[:2], np.uint8)
    for k, colour in enumerate(pattern):
        dy, dx = divmod(k, 2)
        mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, channel[colour]]
    return mosaic


def yuv422(rgb: U8, order: str) -> U8:
    """BT.601 limited-range 4:2:2, chroma averaged over pixel pairs; `order` "uyvy" or "yuyv"."""
    x = rgb.astype(np.float64) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    u2 = 0.5 * (u[:, 0::2] + u[:, 1::2])
    v2 = 0.5 * (v[:, 0::2] + v[:, 1::2])
    h, w = rgb.shape[:2]
    out = np.empty((h, w // 2, 4))
    if order == "uyvy":
        out[..., 0], out[..., 1], out[..., 2], out[..., 3] = u2, y[:, 0::2], v2, y[:, 1::2]
    else:
        out[..., 0], out[..., 1], out[..., 2], out[..., 3] = y[:, 0::2], u2, y[:, 1::2], v2
    return np.clip(np.round(out), 0, 255).astype(np.uint8).reshape(h, w * 2)


def mono16(grey: U8, big_endian: bool) -> U8:
    """16-bit samples whose high byte is `grey` (low byte: noise that `>> 8` must discard)."""
    low = np.random.default_rng(1).integers(0, 256, grey.shape)
    values = (grey.astype(np.uint16) << 8) | low.astype(np.uint16)
    return values.astype(">u2" if big_endian else "<u2").view(np.uint8).reshape(grey.shape[0], -1)


def grey_image() -> U8:
    grey = textured_image()[..., 0]
    return np.repeat(grey[..., None], 3, axis=2)


# encoding -> (source RGB image, tightly packed rows (H, row_bytes), is_bigendian, check)
Check = Callable[[U8, U8], None]


def exact(decoded: U8, rgb: U8) -> None:
    np.testing.assert_array_equal(decoded, rgb)


def flat_patches(margin: int, atol: int) -> Check:
    def check(decoded: U8, rgb: U8) -> None:
        for pixels, colour in patch_interiors(decoded, margin):
            np.testing.assert_allclose(pixels, np.broadcast_to(colour, pixels.shape), atol=atol, rtol=0)

    return check


def case(name: str) -> tuple[U8, U8, bool, Check]:
    rgb = textured_image()
    encoding = name.lower()
    rows: U8
    if encoding in ("rgb8",):
        rows = rgb.reshape(rgb.shape[0], -1)
    elif encoding in ("bgr8", "8uc3"):
        rows = rgb[..., ::-1].reshape(rgb.shape[0], -1)
    elif encoding in ("rgba8", "bgra8"):
        colour = rgb if encoding == "rgba8" else rgb[..., ::-1]
        alpha = np.full((*rgb.shape[:2], 1), 77, np.uint8)
        rows = np.concatenate([colour, alpha], axis=2).reshape(rgb.shape[0], -1)
    elif encoding in ("mono8", "8uc1"):
        rgb = grey_image()
        rows = np.ascontiguousarray(rgb[..., 0])
    elif encoding in ("mono16", "16uc1", "mono16_be"):
        rgb = grey_image()
        rows = mono16(rgb[..., 0], big_endian=encoding == "mono16_be")
        return rgb, rows, encoding == "mono16_be", exact
    elif encoding.startswith("bayer_"):
        rgb = patch_image()
        rows = bayer_mosaic(rgb, encoding[len("bayer_") : -1])
        return rgb, rows, False, flat_patches(margin=2, atol=0)
    elif encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv"):
        rgb = patch_image()
        rows = yuv422(rgb, "uyvy" if encoding in ("yuv422", "uyvy") else "yuyv")
        return rgb, rows, False, flat_patches(margin=1, atol=3)
    else:  # pragma: no cover
        raise AssertionError(encoding)
    return rgb, rows, False, exact


ALL_ENCODINGS = [*ENCODINGS, "mono16_be", "8UC1", "8UC3", "16UC1"]


def real_encoding(name: str) -> str:
    return "mono16" if name == "mono16_be" else name


def test_encoding_list_covers_the_ros_names() -> None:
    wanted = {"rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8uc1", "8uc3", "yuv422", "yuv422_yuy2"}
    wanted |= {"bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8"}
    assert wanted <= set(ENCODINGS)


@pytest.mark.parametrize("encoding", ALL_ENCODINGS)
def test_every_encoding_round_trips(encoding: str) -> None:
    rgb, rows, big_endian, check = case(encoding)
    h, w = rgb.shape[:2]
    data = rows.tobytes()
    decoded = decode_image(h, w, real_encoding(encoding), rows.shape[1], data, big_endian)
    assert decoded.shape == (h, w, 3) and decoded.dtype == np.uint8
    assert decoded.flags.c_contiguous and decoded.flags.writeable
    check(decoded, rgb)


@pytest.mark.parametrize("encoding", ALL_ENCODINGS)
def test_row_padding_via_step_is_skipped(encoding: str) -> None:
    rgb, rows, big_endian, check = case(encoding)
    h, w = rgb.shape[:2]
    pad = 13  # odd on purpose, so that rows are not even 2-byte aligned
    padded = np.full((h, rows.shape[1] + pad), 0xAB, np.uint8)
    padded[:, : rows.shape[1]] = rows
    decoded = decode_image(h, w, real_encoding(encoding), rows.shape[1] + pad, padded.reshape(-1), big_endian)
    check(decoded, rgb)
    np.testing.assert_array_equal(
        decoded, decode_image(h, w, real_encoding(encoding), rows.shape[1], rows.tobytes(), big_endian)
    )


def test_bayer_patterns_are_distinguished() -> None:
    """Decoding a mosaic with the wrong pattern name must give visibly wrong colours."""
    rgb = patch_image()
    mosaic = bayer_mosaic(rgb, "rggb")
    wrong = decode_image(*rgb.shape[:2], "bayer_bggr8", rgb.shape[1], mosaic.tobytes())
    centre = (PATCH // 2, PATCH // 2)  # inside the red patch
    assert wrong[centre][2] > wrong[centre][0]  # red and blue swapped
    right = decode_image(*rgb.shape[:2], "bayer_rggb8", rgb.shape[1], mosaic.tobytes())
    np.testing.assert_array_equal(right[centre], COLOURS[0, 0])


def test_accepts_bytes_bytearray_memoryview_and_arrays() -> None:
    rgb = textured_image()
    flat = rgb.reshape(-1)
    for data in (flat.tobytes(), bytearray(flat.tobytes()), memoryview(flat.tobytes()), flat, rgb):
        np.testing.assert_array_equal(decode_image(6, 10, "rgb8", 30, data), rgb)


def test_result_does_not_alias_the_message_buffer() -> None:
    rgb = textured_image()
    flat = rgb.reshape(-1).copy()
    decoded = decode_image(6, 10, "rgb8", 30, flat)
    flat[:] = 0
    np.testing.assert_array_equal(decoded, rgb)


def test_encoding_names_are_case_insensitive() -> None:
    rgb = textured_image()
    np.testing.assert_array_equal(decode_image(6, 10, "RGB8", 30, rgb.tobytes()), rgb)


def test_extra_trailing_bytes_are_ignored() -> None:
    rgb = textured_image()
    np.testing.assert_array_equal(decode_image(6, 10, "rgb8", 30, rgb.tobytes() + b"\x00" * 5), rgb)


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    pad=st.integers(0, 9),
    encoding=st.sampled_from(["rgb8", "bgr8", "mono16"]),
    big_endian=st.booleans(),
)
def test_random_sizes_and_padding(h: int, w: int, pad: int, encoding: str, big_endian: bool) -> None:
    rgb = textured_image(h, w, seed=h * 31 + w)
    if encoding == "mono16":
        rgb = np.repeat(rgb[..., :1], 3, axis=2)
        rows = mono16(rgb[..., 0], big_endian)
    else:
        rows = (rgb if encoding == "rgb8" else rgb[..., ::-1]).reshape(h, -1)
    padded = np.zeros((h, rows.shape[1] + pad), np.uint8)
    padded[:, : rows.shape[1]] = rows
    decoded = decode_image(h, w, encoding, rows.shape[1] + pad, padded.tobytes(), big_endian)
    np.testing.assert_array_equal(decoded, rgb)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((6, 10, "rgb16", 60, b"\x00" * 360), "unsupported image encoding 'rgb16'"),
        ((6, 10, "rgb8", 30, b"\x00" * 179), "179 bytes, expected at least step * height = 30 * 6 = 180"),
        ((6, 10, "rgb8", 32, b"\x00" * 180), "expected at least step * height = 32 * 6 = 192"),
        ((6, 10, "rgb8", 29, b"\x00" * 180), "step 29 is smaller than one row of 10 rgb8 pixels (30 bytes)"),
        ((6, 10, "mono16", 19, b"\x00" * 180), "smaller than one row"),
        ((0, 10, "rgb8", 30, b""), "height must be in 1..16384, got 0"),
        ((6, 0, "rgb8", 0, b""), "width must be in 1..16384, got 0"),
        ((6, MAX_DIMENSION + 1, "mono8", MAX_DIMENSION + 1, b""), "width must be in 1..16384"),
        ((-1, 10, "rgb8", 30, b""), "height must be in 1..16384, got -1"),
        ((6.0, 10, "rgb8", 30, b"\x00" * 180), "height must be an integer"),
        ((6, 10, "rgb8", 30.0, b"\x00" * 180), "step must be an integer"),
        ((6, 10, None, 30, b"\x00" * 180), "encoding must be a string"),
        ((6, 9, "yuv422", 18, b"\x00" * 108), "even width"),
        ((1, 8, "bayer_rggb8", 8, b"\x00" * 8), "at least 2x2"),
        ((6, 10, "rgb8", 30, 12345), "not a byte buffer"),
    ],
)
def test_malformed_images_raise_clear_errors(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(*args)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_huge_dimensions_are_rejected_before_allocating() -> None:
    with pytest.raises(ImageDecodeError, match="height must be in"):
        decode_image(10**9, 10**9, "rgb8", 3 * 10**9, b"")


# --------------------------------------------------------------------------- compressed


def encoded(rgb: U8, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("fmt", ["png", "PNG", "rgb8; png compressed bgr8", ""])
def test_png_round_trips_exactly(fmt: str) -> None:
    rgb = textured_image(12, 20)
    data = encoded(rgb, ".png")
    for buffer in (data, np.frombuffer(data, np.uint8), memoryview(data)):
        np.testing.assert_array_equal(decode_compressed(fmt, buffer), rgb)


@pytest.mark.parametrize("fmt", ["jpeg", "jpg", "rgb8; jpeg compressed bgr8", "bgr8; jpeg compressed bgr8"])
def test_jpeg_decodes_to_rgb(fmt: str) -> None:
    rgb = np.broadcast_to(COLOURS[0, 0], (32, 48, 3)).copy()  # flat red: JPEG keeps it almost exactly
    data = encoded(rgb, ".jpg")
    decoded = decode_compressed(fmt, data)
    assert decoded.shape == rgb.shape and decoded.dtype == np.uint8
    np.testing.assert_allclose(decoded.reshape(-1, 3).mean(axis=0), COLOURS[0, 0], atol=4)
    np.testing.assert_array_equal(
        decoded, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    )


def test_grey_png_becomes_rgb() -> None:
    grey = textured_image()[..., 0]
    ok, buf = cv2.imencode(".png", grey)
    assert ok
    decoded = decode_compressed("mono8; png compressed mono8", buf.tobytes())
    np.testing.assert_array_equal(decoded, np.repeat(grey[..., None], 3, axis=2))


@pytest.mark.parametrize(
    ("fmt", "data", "message"),
    [
        ("jpeg", b"", "empty"),
        ("jpeg", b"\xff\xd8 definitely not a jpeg", "corrupt or truncated"),
        ("png", None, "not a byte buffer"),
        ("16UC1; compressedDepth png", b"\x00" * 20, "compressedDepth images are not supported"),
        ("h264", b"\x00" * 20, "unsupported compressed image format 'h264'"),
    ],
)
def test_bad_compressed_images_raise_clear_errors(fmt: str, data: bytes, message: str) -> None:
    with pytest.raises(ImageDecodeError, match=message):
        decode_compressed(fmt, data)


def test_truncated_png_is_an_error() -> None:
    data = encoded(textured_image(12, 20), ".png")
    with pytest.raises(ImageDecodeError):
        decode_compressed("png", data[: len(data) // 2])


# --------------------------------------------------------------------------- resize


def test_resize_shrinks_by_area_averaging() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    image[:2, :2] = [0, 100, 200]
    image[:2, 2:] = 40
    image[2:, :2] = [10, 20, 30]
    image[2:, 2:] = 250
    image[0, 0] = [4, 104, 204]  # the block mean moves by one level
    small = resize_to(image, 2, 2)
    np.testing.assert_array_equal(small[0, 0], [1, 101, 201])
    np.testing.assert_array_equal(small[1, 1], [250, 250, 250])


def test_resize_enlarges_and_copies() -> None:
    image = textured_image()
    assert resize_to(image, 20, 12).shape == (12, 20, 3)
    same = resize_to(image, 10, 6)
    np.testing.assert_array_equal(same, image)
    assert same is not image and not np.shares_memory(same, image)
    assert resize_to(image[..., 0], 5, 3).shape == (3, 5)


@pytest.mark.parametrize(("w", "h"), [(0, 5), (5, -1)])
def test_resize_rejects_bad_sizes(w: int, h: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        resize_to(textured_image(), w, h)
