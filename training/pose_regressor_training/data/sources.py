"""One entry point for every dataset kind.

`load_dataset(kind, root, split, **options)` returns a `FrameList` for

* ``"folder"``    our dataset folder (`data/folder.py`); split ``train``, ``val`` or ``test``;
* ``"7scenes"``   Microsoft 7-Scenes (`data/seven_scenes.py`); split ``train`` or ``test``;
* ``"cambridge"`` Cambridge Landmarks (`data/cambridge.py`); split ``train`` or ``test``.

The benchmarks publish only a train/test split: asking them for ``"val"`` raises
`DatasetFormatError` (hold out whole training sequences for validation instead).

Pose convention, for every kind: a frame's pose is ``T_map_base`` (maps `base_link` points into
`map`; metres; unit quaternion xyzw with w >= 0), `base_link` is REP-103 (x forward, y left,
z up). The benchmarks are a single camera at the base origin (`data/benchmark.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pose_regressor.dataset_folder import METRES, length_unit, read_metadata
from pose_regressor_training.data.cambridge import load_cambridge
from pose_regressor_training.data.dataset import FrameList
from pose_regressor_training.data.folder import SPLITS, DatasetFormatError, load_folder
from pose_regressor_training.data.seven_scenes import load_seven_scenes

DATASET_KINDS = ("folder", "7scenes", "cambridge")


def load_dataset(kind: str, root: str | Path, split: str, **options: Any) -> FrameList:
    """Load one split of a dataset of the given kind as a `FrameList` of ``T_map_base`` poses.

    Args:
        kind: ``"folder"``, ``"7scenes"`` or ``"cambridge"``.
        root: the dataset's root folder (see each loader for its layout).
        split: ``train``/``val``/``test`` for folders, ``train``/``test`` for the benchmarks.
        options: keyword options of the loader (`load_seven_scenes`, `load_cambridge`;
            ``"folder"`` takes none).

    Raises:
        ValueError: unknown kind or option for that kind.
        DatasetFormatError: unknown split, missing or malformed files (the message names the file).
    """
    if kind == "folder":
        _reject_options(kind, options, ())
        if split not in SPLITS:
            raise DatasetFormatError(f"folder split must be one of {', '.join(SPLITS)}, got {split!r}")
        return load_folder(root, split)
    if kind == "7scenes":
        _reject_options(kind, options, ("scene", "rotation_atol", "fps", "check_images"))
        return load_seven_scenes(root, split, **options)
    if kind == "cambridge":
        _reject_options(kind, options, ("focal_px_1920", "image_size", "fps", "check_images"))
        return load_cambridge(root, split, **options)
    raise ValueError(f"unknown dataset kind {kind!r}; choose one of {', '.join(DATASET_KINDS)}")


def length_unit_of(kind: str, root: str | Path) -> str:
    """ "m", or "units" for a folder whose positions an import left in the input's own units; the
    benchmarks are in metres. A folder whose dataset.yaml cannot be read counts as metres (loading
    it reports that)."""
    if kind != "folder":
        return METRES
    try:
        return length_unit(read_metadata(Path(root)))
    except (DatasetFormatError, OSError):
        return METRES


def _reject_options(kind: str, options: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) if allowed else "none"
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for dataset kind {kind!r} (valid: {valid})")
