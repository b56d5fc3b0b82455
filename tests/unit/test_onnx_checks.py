"""`pose_regressor_training.onnx_checks`: the TensorRT allow-list check and the I/O signature."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from pose_regressor_training.onnx_checks import (
    FORBIDDEN_OPS,
    TENSORRT_OPS,
    expected_signature,
    io_signature,
    op_types,
    tensorrt_violations,
)
from tests.unit.bundle_fixtures import tiny_graph


def _with_node(node: onnx.NodeProto) -> onnx.ModelProto:
    model = tiny_graph(2, 8, 6, 4)
    model.graph.node.append(node)
    return model


def test_allow_list_and_forbidden_list_are_disjoint() -> None:
    assert not TENSORRT_OPS & FORBIDDEN_OPS
    assert {
        "Conv",
        "Gemm",
        "MatMul",
        "Relu",
        "Cast",
        "Where",
        "GlobalAveragePool",
        "HardSwish",
    } <= TENSORRT_OPS


def test_a_contract_graph_passes() -> None:
    model = tiny_graph(2, 8, 6, 4)
    assert tensorrt_violations(model) == []
    assert io_signature(model) == expected_signature(2, 6, 8, 4)
    assert io_signature(model)["dropout_mask"] == ("float32", ("S", 4))


@pytest.mark.parametrize(
    ("node", "flagged"),
    [
        (helper.make_node("Dropout", ["x"], ["d"]), "Dropout"),
        (helper.make_node("RandomUniformLike", ["x"], ["u"]), "RandomUniformLike"),
        (helper.make_node("NonZero", ["x"], ["nz"]), "NonZero"),  # data-dependent shape
        (helper.make_node("Custom", ["x"], ["c"], domain="com.example"), "com.example::Custom"),
    ],
    ids=["dropout", "random", "nonzero", "custom-domain"],
)
def test_violations_are_named(node: onnx.NodeProto, flagged: str) -> None:
    assert tensorrt_violations(_with_node(node)) == [flagged]


def test_subgraphs_are_searched() -> None:
    inner = helper.make_graph(
        [helper.make_node("RandomNormal", [], ["r"], shape=[1])],
        "branch",
        [],
        [helper.make_tensor_value_info("r", TensorProto.FLOAT, [1])],
    )
    node = helper.make_node("If", ["cond"], ["out"], then_branch=inner, else_branch=inner)
    model = _with_node(node)
    assert {"If", "RandomNormal"} <= op_types(model)
    assert tensorrt_violations(model) == ["If", "RandomNormal"]
