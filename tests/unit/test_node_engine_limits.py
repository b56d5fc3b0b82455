"""MC samples against the engine's range: the node refuses an S its engine cannot run once, at
configure time or when the parameter changes, with one line; never per camera set.

The engine is the real `TensorRTEngine`, run on the fake TensorRT and host memory of
test_tensorrt_engine (no GPU here), inside a real rclpy node: the plan's optimization profile
(S from 1 to the bundle's mc_samples, 8) is what sets the limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import rclpy
from rclpy.parameter import Parameter

from pose_regressor.bundle import ModelBundle
from pose_regressor.engines.tensorrt_engine import TensorRTEngine
from pose_regressor.node import ConfigurationError, LocalizerNode
from tests.unit.bundle_fixtures import HIDDEN
from tests.unit.test_tensorrt_engine import FakeTensorRT, bundle, fake  # noqa: F401  (fixtures)


@pytest.fixture
def context() -> Iterator[rclpy.Context]:
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


def _node(context: rclpy.Context, model: ModelBundle, **params: Any) -> LocalizerNode:
    values = {"bundle": str(model.path), "backend": "tensorrt", **params}
    return LocalizerNode(
        context=context, parameter_overrides=[Parameter(name, value=v) for name, v in values.items()]
    )


def test_an_s_beyond_the_plan_is_refused_at_configure_with_one_line(
    context: rclpy.Context,
    bundle: ModelBundle,  # noqa: F811
    fake: FakeTensorRT,  # noqa: F811
) -> None:
    node = _node(context, bundle, mc_samples=16)
    try:
        with pytest.raises(ConfigurationError) as info:
            node.configure_pipeline()
        assert str(info.value) == "mc_samples = 16 is more than the tensorrt engine runs (at most 8)"
        assert node.pipeline is None and fake.executions == 0
    finally:
        node.destroy_node()


def test_the_bundles_s_fits_the_plan_and_changes_beyond_it_are_refused(
    context: rclpy.Context,
    bundle: ModelBundle,  # noqa: F811
    fake: FakeTensorRT,  # noqa: F811
) -> None:
    node = _node(context, bundle)  # mc_samples 0: the bundle's
    try:
        node.configure_pipeline()
        assert node.pipeline is not None and isinstance(node.pipeline.engine, TensorRTEngine)
        assert node.pipeline.config.mc_samples == bundle.mc_samples == node.pipeline.engine.max_samples == 8
        assert fake.builds[-1]["profile"]["dropout_mask"] == [[1, HIDDEN], [8, HIDDEN], [8, HIDDEN]]
        (refused,) = node.set_parameters([Parameter("mc_samples", value=9)])
        assert not refused.successful
        assert refused.reason == (
            "parameter 'mc_samples' = 9 is more than the engine runs (at most 8 samples); build the "
            "engine with a larger max_samples or choose fewer samples"
        )
        assert node.pipeline.config.mc_samples == 8
        (accepted,) = node.set_parameters([Parameter("mc_samples", value=3)])
        assert accepted.successful and node.pipeline.config.mc_samples == 3
    finally:
        node.destroy_node()
