"""The localizer's algorithm as a small Python API, without ROS: images in, pose with covariance out.

    localizer = Localizer("bundles/lab", backend="auto", mc_samples=32)
    estimate = localizer.localize([front_rgb, left_rgb, back_rgb, right_rgb])  # bundle camera order

Shapes: each image is RGB ``uint8`` ``(h, w, 3)`` of any size (resized to the bundle's input);
``estimate.translation`` ``(3,)`` metres and ``estimate.quat_xyzw`` ``(4,)`` are ``T_map_base``;
``estimate.covariance`` is ``(6, 6)`` over x, y, z, rot-x, rot-y, rot-z (fixed map axes), already
the MC-dropout spread plus, for a bundle with a variance head, the predicted per-axis variance,
scaled by the bundle's calibrated ``covariance_scale`` (per axis group).

The node's pipeline and ``pose-regressor bench`` run the same three steps (``preprocess``,
``InferenceEngine.infer_outputs``, ``estimate_from_samples``) one by one, because they time each step.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pose_regressor.bundle import MAX_MC_SAMPLES, ModelBundle, load_bundle, preprocess
from pose_regressor.engines import load_engine
from pose_regressor.engines.base import EngineError, InferenceEngine
from pose_regressor.uncertainty import PoseEstimate, dropout_masks, estimate_from_samples


class Localizer:
    """A bundle on an inference engine, with MC-dropout masks drawn from a seeded generator.

    ``mc_samples``: masks per call; None takes the bundle's value, 0 gives the deterministic pose
    (the mask of ones: the covariance is then only the floor). ``engine_options`` go to
    `load_engine` (e.g. ``threads=2`` for ONNX Runtime).
    """

    def __init__(
        self,
        bundle: ModelBundle | str | Path,
        backend: str = "auto",
        mc_samples: int | None = None,
        seed: int = 0,
        **engine_options: Any,
    ) -> None:
        self.bundle = bundle if isinstance(bundle, ModelBundle) else load_bundle(bundle)
        samples = self.bundle.mc_samples if mc_samples is None else mc_samples
        if not 0 <= samples <= MAX_MC_SAMPLES:
            raise ValueError(f"mc_samples must be in [0, {MAX_MC_SAMPLES}], got {samples}")
        problem = self.bundle.samples_problem(samples)
        if problem is not None:
            raise ValueError(f"mc_samples: {problem}")
        self.mc_samples = samples
        self.engine: InferenceEngine = load_engine(self.bundle, backend, **engine_options)
        self._rng = np.random.default_rng(seed)
        self._input = np.empty(self.bundle.images_shape, dtype=np.uint8)  # reused: no allocation per call

    @property
    def camera_names(self) -> list[str]:
        return self.bundle.camera_names

    def masks(self) -> NDArray[np.float32]:
        """The next dropout masks ``[S, D]`` (one row of ones when ``mc_samples`` is 0)."""
        if self.mc_samples == 0:
            return np.ones((1, self.bundle.hidden_dim), dtype=np.float32)
        return dropout_masks(self.mc_samples, self.bundle.hidden_dim, self.bundle.dropout, self._rng)

    def localize(self, images: Sequence[NDArray[np.uint8]]) -> PoseEstimate:
        """The pose of one synchronized camera set (one RGB image per camera, bundle order).

        Raises:
            ValueError: wrong number of images, or an image that is not RGB ``uint8``.
            EngineError: the engine failed, or returned non-finite poses.
        """
        batch = preprocess(images, self.bundle, out=self._input)
        out = self.engine.infer_outputs(batch, self.masks())
        estimate = estimate_from_samples(
            out.translation,
            out.rotation,
            self.bundle.covariance_scale,
            log_variances=out.log_variance,
            distance_prior=self.bundle.distance_prior,
        )
        if not estimate.is_finite():
            raise EngineError(f"{self.engine.describe()} returned non-finite poses (NaN or inf)")
        return estimate
