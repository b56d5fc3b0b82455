"""One sample type for every data source: the images of T cameras, `T_map_base`, stamp, sequence.

Loaders (our dataset folder, 7-Scenes, Cambridge Landmarks, bags via `pose-train from-bag`)
all produce a `FrameList`; `PoseDataset` turns it into torch samples.

A sample is a dict of tensors:
    images    uint8 [T, H, W, 3]  RGB, cameras in rig order, resized to `image_size` if given
    t         float32 [3]         translation of T_map_base, metres
    q         float32 [4]         rotation of T_map_base, xyzw, unit, w >= 0
    stamp_ns  int64 []            stamp of the set (reference camera)
    sequence  int64 []            trajectory / sequence id (tuples never cross sequences)
    index     int64 []            position in the FrameList
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import Dataset
from tqdm import tqdm

from pose_regressor.rig import Rig
from pose_regressor_training.cpu_threads import available_cores

#: Threads that decode images for the preload (one per core up to this many; disks rarely feed more).
MAX_LOADING_THREADS = 8


class ImageLoadError(OSError):
    """An image file is missing or cannot be decoded; the message names the file."""


# What one decoding thread hands back: a frame's images, or (when scanning) why they are unreadable.
_Decoded = TypeVar("_Decoded")


@dataclass(frozen=True)
class FrameEntry:
    """One synchronized camera set with its ground truth."""

    image_paths: tuple[Path, ...]  # one per camera, rig order
    translation: NDArray[np.float64]  # (3,) T_map_base, metres
    quat_xyzw: NDArray[np.float64]  # (4,) T_map_base, unit, w >= 0
    stamp_ns: int
    sequence: int


@dataclass
class FrameList:
    """A data source, loaded: its rig and its frames (in time order within each sequence)."""

    rig: Rig
    frames: list[FrameEntry]
    name: str = ""
    metadata: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)

    def translations(self) -> NDArray[np.float64]:
        return np.stack([f.translation for f in self.frames]) if self.frames else np.zeros((0, 3))

    def quaternions(self) -> NDArray[np.float64]:
        """(N, 4) xyzw."""
        return np.stack([f.quat_xyzw for f in self.frames]) if self.frames else np.zeros((0, 4))

    def subset(self, indices: list[int]) -> FrameList:
        return FrameList(self.rig, [self.frames[i] for i in indices], self.name, dict(self.metadata))

    def select_cameras(self, names: Sequence[str]) -> FrameList:
        """The same frames seen by a subset of the cameras, in the given order (e.g. mono from a quad rig)."""
        if not names:
            return self
        index = {name: i for i, name in enumerate(self.rig.names)}
        missing = [n for n in names if n not in index]
        if missing:
            raise ValueError(f"cameras {missing} are not in the rig ({', '.join(self.rig.names)})")
        picks = [index[n] for n in names]
        rig = Rig(tuple(self.rig.cameras[i] for i in picks))
        frames = [replace(f, image_paths=tuple(f.image_paths[i] for i in picks)) for f in self.frames]
        return FrameList(rig, frames, self.name, dict(self.metadata))


def read_image_rgb(path: Path, size: tuple[int, int] | None = None) -> NDArray[np.uint8]:
    """An RGB uint8 image, resized (area interpolation) to `size` = (width, height) when given."""
    if not path.exists():  # checked first: OpenCV would also print a warning of its own
        raise ImageLoadError(f"image {path} does not exist")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageLoadError(f"image {path} {_unreadable_reason(path)}")
    if size is not None and (bgr.shape[1], bgr.shape[0]) != size:
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    rgb = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
    return rgb


def _unreadable_reason(path: Path) -> str:
    """Why OpenCV returned nothing (it only says None): the first thing a user would check."""
    if path.is_file() and path.stat().st_size == 0:
        return "is an empty file"
    return "cannot be decoded: truncated or not an image"


def worker_error_message(exc: BaseException) -> str:
    """The message of an exception re-raised from a DataLoader worker, without the worker's traceback.

    torch re-raises a worker's exception as the same type whose message is the whole worker
    traceback; the user needs only its last line (ours names the file).
    """
    text = str(exc)
    marker = f"{type(exc).__name__}: "
    if "DataLoader worker" not in text or marker not in text:
        return text
    lines = [line for line in text.splitlines() if marker in line]
    return lines[-1].split(marker, 1)[1].strip()


@dataclass(frozen=True)
class BadFrame:
    """A frame left out because one of its images cannot be read (`skip_bad`)."""

    index: int  # position in the scanned FrameList
    reason: str  # the ImageLoadError message (names the file, the frame and the camera)


def describe_skipped(skipped: Sequence[BadFrame], total: int, what: str, shown: int = 3) -> str:
    """One line for the user: how many frames were left out and the first few reasons."""
    first = "; ".join(bad.reason for bad in skipped[:shown])
    more = f"; and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return f"skipped {len(skipped)} of {total} {what} frames with unreadable images: {first}{more}"


class PoseDataset(Dataset[dict[str, torch.Tensor]]):
    """Torch view of a `FrameList`. With `preload`, all images are decoded once into memory
    (at `image_size`), which is what makes CPU training fast."""

    def __init__(
        self,
        frame_list: FrameList,
        image_size: tuple[int, int] | None = None,
        preload: bool = False,
        progress: bool = True,
        skip_bad: bool = False,
    ) -> None:
        """With `skip_bad`, every image is decoded once up front (with the preload, if any) and the
        frames with an unreadable image are left out: `frame_list` then holds the good frames only
        and `skipped` says which were dropped. Without it, the first unreadable image raises
        `ImageLoadError` naming the file, the frame and the camera."""
        self.frame_list = frame_list
        self.image_size = image_size
        self.skipped: list[BadFrame] = []
        self._cache: NDArray[np.uint8] | None = None
        if skip_bad:
            self._scan(preload, progress)
        elif preload and len(frame_list):
            self._preload(progress)

    def _progress(self, total: int, progress: bool, verb: str) -> tqdm[int]:
        name = self.frame_list.name or "images"
        return tqdm(range(total), desc=f"{verb} {name}", unit="set", disable=not progress)

    def _preload(self, progress: bool) -> None:
        cache: NDArray[np.uint8] | None = None
        with self._decoded_in_order(self._load_images) as loaded:
            for i in self._progress(len(self.frame_list), progress, "loading"):
                images = next(loaded)
                if cache is None:
                    cache = np.empty((len(self.frame_list), *images.shape), dtype=np.uint8)
                cache[i] = images
        self._cache = cache

    def _scan(self, keep: bool, progress: bool) -> None:
        """Decode every frame once; keep the good ones (and their pixels when preloading)."""
        good: list[int] = []
        cache: NDArray[np.uint8] | None = None
        with self._decoded_in_order(self._load_or_error) as loaded:
            for i in self._progress(len(self.frame_list), progress, "checking"):
                images = next(loaded)
                if isinstance(images, ImageLoadError):
                    self.skipped.append(BadFrame(i, str(images)))
                    continue
                if keep:
                    # Good frames are packed at the front, so the cache never needs a second copy.
                    if cache is None:
                        cache = np.empty((len(self.frame_list), *images.shape), dtype=np.uint8)
                    cache[len(good)] = images
                good.append(i)
        if self.skipped:
            self.frame_list = self.frame_list.subset(good)
        if cache is not None:
            self._cache = cache[: len(good)]

    @contextmanager
    def _decoded_in_order(self, load: Callable[[int], _Decoded]) -> Iterator[Iterator[_Decoded]]:
        """`load` of every frame, in frame order, decoded by one thread per core.

        OpenCV decodes without holding the GIL, so the threads decode that many images at once: the
        57,600 PNGs of the default dataset took 52 s one at a time on this 2-core machine, 14 s so."""
        pool = ThreadPoolExecutor(max_workers=min(available_cores(), MAX_LOADING_THREADS))
        try:
            yield pool.map(load, range(len(self.frame_list)))
        finally:
            # after a bad image or Ctrl-C, the frames still queued are dropped, not decoded
            pool.shutdown(wait=True, cancel_futures=True)

    def _load_or_error(self, index: int) -> NDArray[np.uint8] | ImageLoadError:
        try:
            return self._load_images(index)
        except ImageLoadError as exc:
            return exc

    @property
    def rig(self) -> Rig:
        return self.frame_list.rig

    def __len__(self) -> int:
        return len(self.frame_list)

    def _load_images(self, index: int) -> NDArray[np.uint8]:
        frame = self.frame_list.frames[index]
        images = []
        for camera, path in zip(self.rig.names, frame.image_paths, strict=True):
            try:
                images.append(read_image_rgb(path, self.image_size))
            except ImageLoadError as exc:
                source = f" of {self.frame_list.name}" if self.frame_list.name else ""
                raise ImageLoadError(f"{exc} (frame {index}{source}, camera {camera})") from None
        shapes = {im.shape for im in images}
        if len(shapes) != 1:
            raise ImageLoadError(
                f"cameras of frame {index} have different image sizes {sorted(shapes)}; set an image size"
            )
        return np.stack(images)

    def images(self, index: int) -> NDArray[np.uint8]:
        return self._cache[index] if self._cache is not None else self._load_images(index)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        frame = self.frame_list.frames[index]
        return {
            "images": torch.from_numpy(np.ascontiguousarray(self.images(index))),
            "t": torch.as_tensor(frame.translation, dtype=torch.float32),
            "q": torch.as_tensor(frame.quat_xyzw, dtype=torch.float32),
            "stamp_ns": torch.tensor(frame.stamp_ns, dtype=torch.int64),
            "sequence": torch.tensor(frame.sequence, dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
        }
