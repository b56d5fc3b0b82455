"""One lens from intrinsics estimated per image.

A mono rig has one camera, but pose files often hold one estimate per image of the same lens:
COLMAP gives every image its own camera unless run with ``--ImageReader.single_camera 1`` (its
default, and that of its GUI's automatic reconstruction), and bundle adjustment then refines each
one apart; Polycam's exports to nerfstudio carry ARKit's per-frame values. They scatter
around one lens by a fraction of a percent to a few percent. Refusing them sent a user back to
re-run structure from motion. So cameras of one image size whose projections of the image's
corners, edge midpoints and centre lie within `SAME_LENS_SHARE_OF_DIAGONAL` of the diagonal of
the median camera's are taken as one lens: the per-image median of each intrinsic and distortion
coefficient. Wider spreads, or images of two sizes, are different cameras and stay refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from pose_regressor.rig import PLUMB_BOB_COEFFICIENTS, LensDistortion, PinholeIntrinsics
from pose_regressor_training.data.importers.common import FloatArray, ImportFormatError

Camera = tuple[PinholeIntrinsics, LensDistortion | None]

# 3% of the diagonal is 4 px on a 120x80 training image, and the focal length of a phone's lens
# told apart from one 6% longer; per-image COLMAP estimates of one lens stay well inside it.
SAME_LENS_SHARE_OF_DIAGONAL = 0.03


def _parameters(camera: Camera) -> FloatArray:
    intr, distortion = camera
    coefficients = distortion.coefficients if distortion is not None else (0.0,) * len(PLUMB_BOB_COEFFICIENTS)
    return np.array([intr.fx, intr.fy, intr.cx, intr.cy, *coefficients], dtype=float)


def _project(parameters: FloatArray, rays: FloatArray) -> FloatArray:
    fx, fy, cx, cy = parameters[:4]
    matrix = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    zero = np.zeros(3)
    pixels, _ = cv2.projectPoints(rays, zero, zero, matrix, parameters[4:])
    return np.asarray(pixels, dtype=float).reshape(-1, 2)


def _probe_rays(parameters: FloatArray, width: int, height: int) -> FloatArray:
    """Rays through the corners, edge midpoints and centre of the image, by the pinhole part of
    `parameters` (a ray, not a pixel, is what two estimates of one lens must agree on)."""
    fx, fy, cx, cy = parameters[:4]
    u, v = np.meshgrid([0.0, width / 2.0, float(width)], [0.0, height / 2.0, float(height)])
    return np.stack([(u.ravel() - cx) / fx, (v.ravel() - cy) / fy, np.ones(u.size)], axis=1)


def one_camera(cameras: Sequence[Camera], what: str, hint: str) -> tuple[Camera, str | None]:
    """The lens of `cameras` (one per image) and a note when several estimates were merged.

    Raises ImportFormatError naming `what` (the images' source) and `hint` (what to do) when the
    images have two sizes or their cameras differ by more than one lens's estimates do."""
    distinct = list(dict.fromkeys(cameras))
    if len(distinct) == 1:
        return distinct[0], None
    sizes = sorted({(intr.width, intr.height) for intr, _ in distinct})
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h}" for w, h in sizes[:4])
        raise ImportFormatError(f"the images of {what} have cameras of {len(sizes)} sizes ({shown}); {hint}")
    width, height = sizes[0]
    median = np.median(np.stack([_parameters(camera) for camera in cameras]), axis=0)
    rays = _probe_rays(median, width, height)
    reference = _project(median, rays)
    worst = max(
        float(np.max(np.linalg.norm(_project(_parameters(camera), rays) - reference, axis=1)))
        for camera in distinct
    )
    diagonal = float(np.hypot(width, height))
    if not worst <= SAME_LENS_SHARE_OF_DIAGONAL * diagonal:  # nan too
        raise ImportFormatError(
            f"the images of {what} use {len(distinct)} cameras that project up to {worst:.1f} px apart "
            f"({worst / diagonal:.1%} of the image diagonal; at most {SAME_LENS_SHARE_OF_DIAGONAL:.0%} "
            f"is taken as one lens estimated per image); {hint}"
        )
    fx, fy, cx, cy = (float(v) for v in median[:4])
    intrinsics = PinholeIntrinsics(width, height, fx, fy, cx, cy)
    distortion = None
    if any(d is not None for _, d in distinct):
        distortion = LensDistortion.from_coefficients(
            {k: float(v) for k, v in zip(PLUMB_BOB_COEFFICIENTS, median[4:], strict=True)}
        )
    note = (
        f"{len(distinct)} cameras for {len(cameras)} images, estimates of one lens: they project within "
        f"{worst:.2g} px of their median ({worst / diagonal:.2%} of the diagonal), which is used"
    )
    return (intrinsics, distortion), note
