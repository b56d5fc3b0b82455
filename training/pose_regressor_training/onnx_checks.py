"""Static checks of exported graphs: TensorRT-parsable operators only, and the bundle's I/O contract.

`TENSORRT_OPS` is the allow-list. Source: the ONNX-TensorRT parser's operator support matrix,
onnx/onnx-tensorrt `docs/operators.md`, in two versions: TensorRT 8.5 ("supports operators up to
Opset 17", the JetPack 5 generation) and TensorRT 10.15 ("opset 9 to opset 24"). The list holds
the operators marked supported (Y) in BOTH tables, less those a static, deterministic
inference graph must never contain (`FORBIDDEN_OPS`: randomness, Dropout, control flow,
sequences) and less recurrent layers and data-dependent-shape operators (NonZero,
NonMaxSuppression, ...), which no model here uses and which would make shapes dynamic.

The uint8 `images` input is cast to float as the graph's first node: TensorRT accepts UINT8
only as a network input/output type (stated in the 9.x and 10.x tables; TensorRT 8.5's table
does not list UINT8, so plans need TensorRT >= 8.6 / 9.x for the uint8 input).
"""

from __future__ import annotations

from collections.abc import Iterator

import onnx

from pose_regressor.bundle import GRAPH_INPUTS, graph_outputs

# fmt: off
TENSORRT_OPS: frozenset[str] = frozenset(
    {
        # element-wise arithmetic and math
        "Abs", "Add", "Ceil", "Div", "Erf", "Exp", "Floor", "Log", "Max", "Mean", "Min", "Mod", "Mul",
        "Neg", "Pow", "Reciprocal", "Round", "Sign", "Sqrt", "Sub", "Sum",
        "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "Cos", "Cosh", "Sin", "Sinh", "Tan",
        # comparisons and logic
        "And", "Equal", "Greater", "GreaterOrEqual", "IsNaN", "Less", "LessOrEqual", "Not", "Or",
        "Where", "Xor",
        # activations
        "Celu", "Clip", "Elu", "HardSigmoid", "HardSwish", "LeakyRelu", "LogSoftmax", "PRelu", "Relu",
        "Selu", "Sigmoid", "Softmax", "Softplus", "Softsign", "Tanh", "ThresholdedRelu",
        # convolution, pooling, normalization, matrix products
        "AveragePool", "BatchNormalization", "Conv", "ConvTranspose", "Gemm", "GlobalAveragePool",
        "GlobalLpPool", "GlobalMaxPool", "InstanceNormalization", "LpNormalization", "LpPool", "LRN",
        "MatMul", "MaxPool", "Einsum",
        # reductions
        "ArgMax", "ArgMin", "CumSum", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
        "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare",
        # tensor layout, shape and indexing
        "Cast", "Concat", "Constant", "ConstantOfShape", "DepthToSpace", "Expand", "Flatten", "Gather",
        "GatherElements", "GatherND", "Identity", "Pad", "Reshape", "Resize", "Shape", "Size", "Slice",
        "SpaceToDepth", "Split", "Squeeze", "Tile", "Transpose", "Unsqueeze",
    }
)

#: Never allowed in an exported graph, whatever a parser supports: they make inference random,
#: dynamic or host-bound, and MC dropout must come from the `dropout_mask` input instead.
FORBIDDEN_OPS: frozenset[str] = frozenset(
    {
        "Dropout", "Bernoulli", "Multinomial",
        "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
        "If", "Loop", "Scan",
        "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert",
        "SequenceLength", "SequenceMap", "SplitToSequence", "ConcatFromSequence",
    }
)
# fmt: on

ONNX_DTYPES = {onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.FLOAT: "float32"}


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attribute in node.attribute:  # subgraphs of If/Loop/Scan
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attribute.g)
            for sub in attribute.graphs:
                yield from _nodes(sub)


def op_types(model: onnx.ModelProto) -> set[str]:
    """Every operator type in the graph, subgraphs included (default domain only, as named)."""
    return {
        node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        for node in _nodes(model.graph)
    }


def tensorrt_violations(model: onnx.ModelProto) -> list[str]:
    """Operator types that are forbidden or not in `TENSORRT_OPS`, sorted; empty when the graph is fine."""
    return sorted(op for op in op_types(model) if op in FORBIDDEN_OPS or op not in TENSORRT_OPS)


def io_signature(model: onnx.ModelProto) -> dict[str, tuple[str, tuple[int | str, ...]]]:
    """{name: (dtype, shape)} of the graph's inputs and outputs; symbolic dimensions are strings."""
    result: dict[str, tuple[str, tuple[int | str, ...]]] = {}
    for value in [*model.graph.input, *model.graph.output]:
        tensor = value.type.tensor_type
        dims = tuple(d.dim_param if d.HasField("dim_param") else int(d.dim_value) for d in tensor.shape.dim)
        result[value.name] = (ONNX_DTYPES.get(tensor.elem_type, str(tensor.elem_type)), dims)
    return result


def expected_signature(
    cameras: int, height: int, width: int, hidden_dim: int, variance_head: bool = False
) -> dict[str, tuple[str, tuple[int | str, ...]]]:
    """The bundle contract's I/O (with `log_variance` for a variance head): all static but the S axis."""
    sizes = {"T": cameras, "H": height, "W": width, "D": hidden_dim}
    specs = (*GRAPH_INPUTS, *graph_outputs(variance_head))
    return {spec.name: (spec.dtype, spec.sized(sizes)) for spec in specs}
