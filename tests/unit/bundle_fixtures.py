"""Small hand-built model bundles (onnx.helper, no torch) for the bundle and engine unit tests.

The graph honours the bundle contract with trivial arithmetic that numpy can recompute:

    m           = mean(float(images))                       (scalar)
    translation = dropout_mask @ W_T + m                    [S, 3]
    rotation    = normalize(dropout_mask @ W_Q)             [S, 4]  (W_Q >= 0, so w >= 0)
    log_variance = dropout_mask @ W_V + LV0                 [S, 6]  (only with variance_head)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from pose_regressor.bundle import (
    ONNX_FILE,
    PREPROCESSING,
    SCHEMA_VERSION,
    BundleCamera,
    ModelBundle,
    write_bundle,
)
from pose_regressor.rig import Rig

CAMERAS = ("front", "rear")
CAMERA_SIZE = (16, 12)  # width, height on the topics
INPUT_SIZE = (8, 6)  # width, height of the network input
HIDDEN = 4

W_T = np.arange(HIDDEN * 3, dtype=np.float32).reshape(HIDDEN, 3) / 10.0
W_Q = (np.arange(HIDDEN * 4, dtype=np.float32).reshape(HIDDEN, 4) + 1.0) / 10.0
W_V = (np.arange(HIDDEN * 6, dtype=np.float32).reshape(HIDDEN, 6) - 10.0) / 20.0
LV0 = np.float32(-4.0)


def tiny_graph(
    cameras: int, width: int, height: int, hidden: int, opset: int = 17, variance_head: bool = False
) -> onnx.ModelProto:
    images = helper.make_tensor_value_info("images", TensorProto.UINT8, [cameras, height, width, 3])
    masks = helper.make_tensor_value_info("dropout_mask", TensorProto.FLOAT, ["S", hidden])
    translation = helper.make_tensor_value_info("translation", TensorProto.FLOAT, ["S", 3])
    rotation = helper.make_tensor_value_info("rotation", TensorProto.FLOAT, ["S", 4])
    nodes = [
        helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0),
        helper.make_node("MatMul", ["dropout_mask", "W_T"], ["t_raw"]),
        helper.make_node("Add", ["t_raw", "m"], ["translation"]),
        helper.make_node("MatMul", ["dropout_mask", "W_Q"], ["r"]),
        helper.make_node("Mul", ["r", "r"], ["r2"]),
        helper.make_node("ReduceSum", ["r2", "axis1"], ["n2"], keepdims=1),
        helper.make_node("Sqrt", ["n2"], ["n"]),
        helper.make_node("Div", ["r", "n"], ["rotation"]),
    ]
    initializers = [
        numpy_helper.from_array(W_T[:hidden], "W_T"),
        numpy_helper.from_array(W_Q[:hidden], "W_Q"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
    ]
    outputs = [translation, rotation]
    if variance_head:
        outputs.append(helper.make_tensor_value_info("log_variance", TensorProto.FLOAT, ["S", 6]))
        nodes += [
            helper.make_node("MatMul", ["dropout_mask", "W_V"], ["v_raw"]),
            helper.make_node("Add", ["v_raw", "LV0"], ["log_variance"]),
        ]
        initializers += [
            numpy_helper.from_array(W_V[:hidden], "W_V"),
            numpy_helper.from_array(np.array(LV0, dtype=np.float32), "LV0"),
        ]
    graph = helper.make_graph(nodes, "tiny", [images, masks], outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def expected_outputs(
    images: NDArray[np.uint8], masks: NDArray[np.float32]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """What `tiny_graph` computes, in float64."""
    m = images.astype(np.float64).mean()
    t = masks.astype(np.float64) @ W_T[: masks.shape[1]].astype(np.float64) + m
    r = masks.astype(np.float64) @ W_Q[: masks.shape[1]].astype(np.float64)
    return t, r / np.linalg.norm(r, axis=1, keepdims=True)


def expected_log_variance(masks: NDArray[np.float32]) -> NDArray[np.float64]:
    """What `tiny_graph(variance_head=True)` outputs as log_variance, in float64."""
    return masks.astype(np.float64) @ W_V[: masks.shape[1]].astype(np.float64) + float(LV0)


def make_bundle(
    root: Path,
    graph_hidden: int | None = None,
    rig: Rig | None = None,
    graph_variance: bool | None = None,
    **overrides: Any,
) -> ModelBundle:
    """A valid bundle directory at `root` (created) with the tiny graph; `overrides` replace
    ModelBundle fields (bundle.yaml), `graph_hidden` makes the graph's D differ from bundle.yaml's;
    `variance_head=True` or `shift_variance=True` gives the graph its log_variance output
    (`graph_variance` overrides that).
    `rig` is recorded as the training rig (`provenance.rig`, as training writes it); without it
    the bundle has none, like bundles exported before the rig was recorded."""
    root.mkdir(parents=True, exist_ok=True)
    fields: dict[str, Any] = {
        "path": root,
        "schema_version": SCHEMA_VERSION,
        "cameras": tuple(BundleCamera(n, f"/{n}/image_raw", *CAMERA_SIZE) for n in CAMERAS),
        "input_width": INPUT_SIZE[0],
        "input_height": INPUT_SIZE[1],
        "preprocessing": dict(PREPROCESSING),
        "fusion": "input",
        "dof": 6,
        "dropout": 0.25,
        "hidden_dim": HIDDEN,
        "covariance_scale": 2.5,
        "provenance": {"dataset": {"kind": "folder", "root": "/data/x"}, "best_metrics": {"m": 0.5}},
        "mc_samples": 8,
    }
    fields.update(overrides)
    if rig is not None:
        fields["provenance"] = {**fields["provenance"], "rig": rig.to_dict()}
    said = fields.get("variance_head", False) or fields.get("shift_variance", False)
    variance = said if graph_variance is None else graph_variance
    graph = tiny_graph(
        len(fields["cameras"]),
        fields["input_width"],
        fields["input_height"],
        graph_hidden or HIDDEN,
        variance_head=variance,
    )
    onnx_path = root / ONNX_FILE
    onnx.save(graph, str(onnx_path))
    fields.setdefault("onnx", {"file": ONNX_FILE, "opset": 17, "bytes": onnx_path.stat().st_size})
    bundle = ModelBundle(**fields)
    write_bundle(bundle)
    return bundle


def poison_initializer(bundle: ModelBundle, name: str, value: float) -> None:
    """Sets every element of the graph's initializer `name` to `value` (e.g. NaN) in place, and
    records model.onnx's new size in bundle.yaml, so the bundle still loads: a real graph whose
    outputs are non-finite, for the fault tests."""
    model = onnx.load(str(bundle.onnx_path))
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.name == name:
            array = numpy_helper.to_array(tensor)
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(np.full_like(array, value), name))
            break
    else:
        raise KeyError(f"no initializer {name!r} in {bundle.onnx_path}")
    onnx.save(model, str(bundle.onnx_path))
    onnx_info = {**bundle.onnx, "bytes": bundle.onnx_path.stat().st_size}
    write_bundle(ModelBundle(**{**bundle.__dict__, "onnx": onnx_info}))
