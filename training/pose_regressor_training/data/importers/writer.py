"""Write a `CameraTrack` as our dataset folder: metric scale, block splits, one-camera rig.

Frames are put in time order (by stamp, or by natural name order when the source has no stamps),
cut into `SplitPolicy.blocks` contiguous blocks of nearly equal size; block k (1-based) is test
when k is a multiple of `test_every`, the block after a test block is val (if `val`), the rest
train. So test frames are whole stretches of the path, not neighbours of training frames.

The default is 20 blocks, every 5th test (65/15/20): val then holds three stretches of the path
and test four. It was 10 blocks until 2026-12-06, which gives val one stretch, and the covariance
calibration is fitted on val: on 252 bonsai photographs, posed twice, the three-seed ensembles'
test mean NEES (ideal 6) was 27.9 and 47.5 with that split (one model up to 77.6), and 6.5 and 6.0
with 20 blocks (one model 7.4-9.4; docs/results.md). With fewer than 20 frames the default is one
block per frame.

Poses become ``T_map_base`` of the benchmarks' one-camera rig (`data/benchmark.py`: camera
``"camera"`` at the base origin looking along base +x). Images are decoded, checked against the
camera size and written as PNG (JPEG input included; EXIF orientation is ignored, as COLMAP does).
Images stored smaller (or larger) than the pose file's camera, at its aspect, get its intrinsics
scaled to their size (`camera_as_images`), as Mip-NeRF 360 and nerfstudio sets are used; an alpha
channel is dropped, with a note (`note_alpha`).
Everything is written into a hidden ``.OUT.partial-PID`` sibling and renamed to OUT at the end:
a failed or interrupted import leaves nothing behind.

Images named by the input that do not exist stop the import before anything is written, with their
count; `ImportSettings.skip_missing` leaves those frames out instead (named in dataset.yaml). That is
how real sets arrive: instant-ngp's own fox set names 67 images and ships 50, and users delete
blurred frames from a nerfstudio or COLMAP image folder without editing the pose file.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pose_regressor.files import publish, staging_sibling
from pose_regressor.rig import PinholeIntrinsics, Rig
from pose_regressor_training.data.benchmark import base_pose_from_camera_pose, single_camera_rig
from pose_regressor_training.data.block_split import SplitPolicy, block_splits
from pose_regressor_training.data.folder import (
    SPLITS,
    FrameRecord,
    check_position_reach,
    image_path,
    write_frames,
    write_metadata,
)
from pose_regressor_training.data.importers.common import (
    MIN_IMAGE_SIDE_PX,
    SCALE_RANGE,
    CameraTrack,
    ImportFormatError,
    PosedImage,
    check_intrinsics,
    find_file,
)

DEFAULT_FPS = 30.0  # stamps of sources without timestamps: frame order / fps


class ImageReadError(ImportFormatError):
    """An input image is missing, undecodable or not the camera's size."""


@dataclass(frozen=True)
class ImportSettings:
    out: Path
    scale: float | None = None  # metres per source unit
    scale_from: tuple[str, str, float] | None = None  # two image names and their true distance (m)
    split: SplitPolicy = field(default_factory=SplitPolicy)
    fps: float = DEFAULT_FPS
    overwrite: bool = False
    progress: bool = True
    skip_missing: bool = False  # leave out frames whose image file does not exist


@dataclass(frozen=True)
class ImportSummary:
    frames_per_split: dict[str, int]
    scale: float
    metric: bool  # False: poses are in the source's own units
    seconds: float
    camera: PinholeIntrinsics  # as written: the input's, scaled to the images' size
    notes: tuple[str, ...] = ()  # the reader's notes, then the writer's, one line each
    skipped_missing: tuple[str, ...] = ()  # names (as the input gives them) of images left out


def _natural_key(name: str) -> list[object]:
    """`frame2` before `frame10`: digit runs compare as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def ordered(images: list[PosedImage]) -> list[PosedImage]:
    """Time order: by stamp where every image has one, else by name."""
    if all(image.stamp_ns is not None for image in images):
        return sorted(images, key=lambda image: (image.stamp_ns, _natural_key(image.name)))
    return sorted(images, key=lambda image: _natural_key(image.name))


def _find(images: list[PosedImage], name: str) -> PosedImage:
    exact = [image for image in images if image.name == name]
    if not exact:  # the bare file name, when it is unique
        exact = [image for image in images if Path(image.name).name == name]
    if len(exact) != 1:
        what = "no image" if not exact else f"{len(exact)} images"
        raise ValueError(f"--scale-from: {what} named {name!r} (names as the input file gives them)")
    return exact[0]


def metric_scale(images: list[PosedImage], settings: ImportSettings) -> float:
    """Metres per source unit: `--scale`, or from two images' true distance, or 1."""
    if settings.scale is not None and settings.scale_from is not None:
        raise ValueError("give --scale or --scale-from, not both")
    if settings.scale is not None:
        scale = settings.scale
    elif settings.scale_from is not None:
        name_a, name_b, distance = settings.scale_from
        a, b = _find(images, name_a), _find(images, name_b)
        apart = float(np.linalg.norm(a.translation - b.translation))
        if not apart > 0:
            raise ValueError(f"--scale-from: images {name_a!r} and {name_b!r} are at the same place")
        if not 0 < distance < float("inf"):
            raise ValueError(f"--scale-from: the distance must be positive and finite, got {distance}")
        scale = distance / apart
        low, high = SCALE_RANGE
        if not low <= scale <= high:
            raise ValueError(
                f"--scale-from: images {name_a!r} and {name_b!r} are {apart:g} input units apart, so "
                f"{distance:g} m gives a scale of {scale:g} m per input unit; it must be from {low:g} to "
                f"{high:g}"
            )
    else:
        return 1.0
    if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
        raise ValueError(f"the scale must be from {SCALE_RANGE[0]:g} to {SCALE_RANGE[1]:g}, got {scale:g}")
    return scale


def _check_output(out: Path, track: CameraTrack, overwrite: bool) -> None:
    resolved = out.resolve()
    folders = {image.path.parent.resolve() for image in track.images}
    folders |= {path.parent.resolve() for path in track.inputs}
    for folder in sorted(folders):
        if resolved == folder or resolved in folder.parents:
            raise ValueError(f"the output folder {out} must not contain the input files ({folder})")
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty; use --overwrite to replace it")


def _read_image(
    image: PosedImage, flags: int = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
) -> np.ndarray:
    if not image.path.is_file():
        raise ImageReadError(f"image {image.path} does not exist (named {image.name!r} by the input)")
    pixels = cv2.imread(str(image.path), flags)
    if pixels is None:
        raise ImageReadError(f"image {image.path} cannot be read as an image")
    return pixels


def camera_as_images(track: CameraTrack, first: PosedImage, pixels: np.ndarray) -> CameraTrack:
    """`track` with its intrinsics scaled to the size of the `first` image (its `pixels` as
    stored), where that differs.

    Sets ship downscaled copies beside the originals and one pose file for all of them (Mip-NeRF
    360: the full-size `images/` with `images_2`, `images_4`, `images_8`, and a COLMAP model of the
    full size; nerfstudio's ns-process-data likewise), and training on a copy with the intrinsics
    scaled by the size ratio is how they are used. Each side of a resized copy is rounded to whole
    pixels, so its two ratios differ by less than 1/W + 1/H; more than that is a crop, refused."""
    intr = track.intrinsics
    height, width = pixels.shape[:2]
    if min(width, height) < MIN_IMAGE_SIDE_PX:
        raise ImageReadError(
            f"image {first.path} is {width}x{height}: too small to train on (at least "
            f"{MIN_IMAGE_SIDE_PX} px a side)"
        )
    if (width, height) == (intr.width, intr.height):
        return track
    sx, sy = width / intr.width, height / intr.height
    if abs(sx - sy) >= 1.0 / intr.width + 1.0 / intr.height:
        raise ImageReadError(
            f"image {first.path} is {width}x{height} but the camera is {intr.width}x{intr.height}, and "
            f"not at its aspect (x {sx:.4g}, y {sy:.4g} times the camera): a cropped image needs the "
            "intrinsics of its crop"
        )
    scaled = check_intrinsics(intr.resized(width, height), f"the camera scaled to image {first.path}")
    note = (
        f"images are {width}x{height} but the input's camera is {intr.width}x{intr.height}: "
        f"intrinsics scaled by {sx:.4g} x {sy:.4g} to the images"
    )
    return replace(track, intrinsics=scaled, notes=(*track.notes, note))


def note_alpha(track: CameraTrack, pixels: np.ndarray) -> CameraTrack:
    """`track` with a note when the first image (its `pixels` as stored) has an alpha channel: it
    is dropped, and the colour stored under transparent pixels is what the model sees (the NeRF
    synthetic scenes' background; NeRF tools blend it onto white instead), which a user should
    hear of."""
    if pixels.ndim != 3 or pixels.shape[2] != 4:
        return track
    note = (
        "images have an alpha channel: it is dropped, and transparent pixels keep the colour stored "
        "under them (not blended onto a background)"
    )
    return replace(track, notes=(*track.notes, note))


def _write_image(image: PosedImage, track: CameraTrack, target: Path) -> None:
    bgr = _read_image(image)
    intr = track.intrinsics
    if (bgr.shape[1], bgr.shape[0]) != (intr.width, intr.height):
        raise ImageReadError(
            f"image {image.path} is {bgr.shape[1]}x{bgr.shape[0]} but the camera and the first image "
            f"are {intr.width}x{intr.height}; the images of one camera must have one size"
        )
    if not cv2.imwrite(str(target), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise OSError(f"could not write {target}")


def output_rig(track: CameraTrack) -> Rig:
    rig = single_camera_rig(track.intrinsics)
    return Rig((replace(rig.cameras[0], distortion=track.distortion),))


def write_import(track: CameraTrack, settings: ImportSettings) -> ImportSummary:
    """Write `track` to `settings.out` (see the module docstring); returns the counts.

    Raises:
        ValueError (ImportFormatError included): bad scale or split settings, an unreadable image.
        FileExistsError: `settings.out` is not empty and `settings.overwrite` is false.
    """
    started = time.perf_counter()
    if not track.images:
        raise ImportFormatError(f"{track.source} has no usable frame")
    _check_output(settings.out, track, settings.overwrite)
    present, missing = _present_and_missing(track, settings.skip_missing)
    images = ordered(present)
    _check_distinct(images)
    # as stored (EXIF orientation ignored, as when written): its size and its channels
    first = _read_image(images[0], cv2.IMREAD_UNCHANGED)
    track = note_alpha(camera_as_images(track, images[0], first), first)
    scale = metric_scale(images, settings)
    _check_reach(images, scale)
    splits = block_splits(len(images), settings.split)
    settings = replace(settings, split=settings.split.for_frames(len(images)))  # the provenance's blocks
    out = settings.out.absolute()
    staging = staging_sibling(out)
    try:
        if staging.exists():  # left by an earlier killed run of a process with the same id
            shutil.rmtree(staging)
        rig = output_rig(track)
        (staging / "images" / rig.names[0]).mkdir(parents=True)
        records = _write_frames(track, images, splits, scale, settings, staging, rig.names[0])
        write_frames(staging, records)
        counts = {split: sum(1 for r in records if r.split == split) for split in SPLITS}
        provenance = _provenance(track, settings, scale, missing)
        write_metadata(staging, rig, _fps(images, settings.fps), counts, provenance)
        publish(staging, out)
    finally:
        if staging.exists():  # the import failed or was interrupted
            shutil.rmtree(staging, ignore_errors=True)
    metric = settings.scale is not None or settings.scale_from is not None
    seconds = time.perf_counter() - started
    return ImportSummary(counts, scale, metric, seconds, track.intrinsics, track.notes, missing)


def _present_and_missing(track: CameraTrack, skip_missing: bool) -> tuple[list[PosedImage], tuple[str, ...]]:
    """The images whose file exists, and the names of those whose file does not; without
    `skip_missing` a missing one is an error that counts them all."""
    present: list[PosedImage] = []
    absent: list[PosedImage] = []
    for image in track.images:
        found = find_file(image.path)
        if found is None:
            absent.append(image)
        else:
            present.append(image if found == image.path else replace(image, path=found))
    missing = tuple(image.name for image in absent)
    if missing and not skip_missing:
        first = absent[0]
        raise ImageReadError(
            f"image {first.path} does not exist (named {first.name!r} by the input); "
            f"{len(missing)} of the {len(track.images)} images the input names are missing: "
            f"pass --skip-missing to import the {len(present)} that exist"
        )
    if not present:
        raise ImageReadError(f"none of the {len(track.images)} images named by {track.source} exists")
    return present, missing


def _check_distinct(images: list[PosedImage]) -> None:
    """One pose per image file: a file named twice (with two poses, or the same one) is a broken
    input, and a copy of an image in both train and test would flatter every test score."""
    first_name: dict[Path, str] = {}
    for image in images:
        key = image.path.resolve()
        if key in first_name:
            raise ImportFormatError(
                f"image {image.path} is named twice by the input ({first_name[key]!r} and "
                f"{image.name!r}); each image must have one pose"
            )
        first_name[key] = image.name


def _check_reach(images: list[PosedImage], scale: float) -> None:
    """Positions, once scaled, that a dataset folder accepts (`check_position_reach`)."""
    for image in images:
        try:
            check_position_reach(image.translation * scale)
        except ValueError as exc:
            raise ImportFormatError(
                f"image {image.name!r}, scaled by {scale:g}: {exc}; the input's poses are broken"
            ) from None


def _write_frames(
    track: CameraTrack,
    images: list[PosedImage],
    splits: list[tuple[str, int]],
    scale: float,
    settings: ImportSettings,
    staging: Path,
    camera: str,
) -> list[FrameRecord]:
    records: list[FrameRecord] = []
    with tqdm(total=len(images), unit="image", desc="importing", disable=not settings.progress) as bar:
        for index, (image, (split, block)) in enumerate(zip(images, splits, strict=True)):
            _write_image(image, track, image_path(staging, camera, index))
            t_map_base, q_map_base = base_pose_from_camera_pose(image.translation * scale, image.quat_xyzw)
            stamp = image.stamp_ns if image.stamp_ns is not None else round(index * 1e9 / settings.fps)
            records.append(FrameRecord(index, block, split, stamp, t_map_base, q_map_base))
            bar.update(1)
    return records


def _fps(images: list[PosedImage], default: float) -> float:
    stamps = [image.stamp_ns for image in images if image.stamp_ns is not None]
    if len(stamps) != len(images) or len(stamps) < 2 or stamps[-1] == stamps[0]:
        return default
    return (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1e9)


def _provenance(
    track: CameraTrack, settings: ImportSettings, scale: float, missing: tuple[str, ...]
) -> dict[str, object]:
    has_stamps = all(image.stamp_ns is not None for image in track.images)
    metric = settings.scale is not None or settings.scale_from is not None
    return {
        "generator": "pose-train import",
        "format": track.format,
        "source": track.source,
        "scale": scale,
        "scale_from": list(settings.scale_from) if settings.scale_from is not None else None,
        "units": "metres" if metric else "the source's own units (no --scale)",
        "split_policy": settings.split.to_json(),
        "stamps": "from the source" if has_stamps else f"synthetic: frame order / {settings.fps:g} Hz",
        "distortion_applied": False,  # images are written as captured
        "skipped_missing_images": list(missing),
        "notes": list(track.notes),
    }
