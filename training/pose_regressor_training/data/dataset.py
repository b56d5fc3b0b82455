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

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import Dataset
from tqdm import tqdm

from pose_regressor.rig import Rig


class ImageLoadError(OSError):
    """An image file is missing or cannot be decoded; the message names the file."""


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
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        reason = "does not exist" if not path.exists() else "cannot be decoded as an image"
        raise ImageLoadError(f"image {path} {reason}")
    if size is not None and (bgr.shape[1], bgr.shape[0]) != size:
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    rgb = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
    return rgb


class PoseDataset(Dataset[dict[str, torch.Tensor]]):
    """Torch view of a `FrameList`. With `preload`, all images are decoded once into memory
    (at `image_size`), which is what makes CPU training fast."""

    def __init__(
        self,
        frame_list: FrameList,
        image_size: tuple[int, int] | None = None,
        preload: bool = False,
        progress: bool = True,
    ) -> None:
        self.frame_list = frame_list
        self.image_size = image_size
        self._cache: NDArray[np.uint8] | None = None
        if preload and len(frame_list):
            first = self._load_images(0)
            cache = np.empty((len(frame_list), *first.shape), dtype=np.uint8)
            cache[0] = first
            for i in tqdm(
                range(1, len(frame_list)),
                desc=f"loading {frame_list.name or 'images'}",
                unit="set",
                disable=not progress,
            ):
                cache[i] = self._load_images(i)
            self._cache = cache

    @property
    def rig(self) -> Rig:
        return self.frame_list.rig

    def __len__(self) -> int:
        return len(self.frame_list)

    def _load_images(self, index: int) -> NDArray[np.uint8]:
        frame = self.frame_list.frames[index]
        images = [read_image_rgb(p, self.image_size) for p in frame.image_paths]
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
