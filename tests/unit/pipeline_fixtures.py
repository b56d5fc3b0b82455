"""Driving a `LocalizerPipeline` through one camera set, for the unit tests."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from pose_regressor.bundle import ModelBundle, preprocess
from pose_regressor.engines import InferenceEngine
from pose_regressor.pipeline import LocalizationResult, LocalizerPipeline, config_for_bundle

STAMP_NS = 1_700_000_000_000_000_000


def bundle_pipeline(
    bundle: ModelBundle, engine: InferenceEngine, results: list[LocalizationResult], **settings: Any
) -> LocalizerPipeline:
    """A pipeline set up from `bundle` as the node sets it up (`config_for_bundle`), with
    `settings` (mc_samples, seed, ...) on top; each result is appended to `results`."""
    config = config_for_bundle(bundle, **settings)
    return LocalizerPipeline(config, engine, results.append, prepare=lambda imgs: preprocess(imgs, bundle))


def publish_one_set(
    pipe: LocalizerPipeline, images: Sequence[np.ndarray], results: list[LocalizationResult]
) -> LocalizationResult:
    """Start `pipe`, give it one image per camera at one stamp, wait (30 s at most) for the first
    result its callback appends to `results`, stop it and return that result."""
    pipe.start()
    try:
        for camera, picture in enumerate(images):
            pipe.add_image(camera, STAMP_NS, picture)
        deadline = time.monotonic() + 30.0
        while not results and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        pipe.stop()
    assert results, "the pipeline published nothing within 30 s"
    return results[0]
