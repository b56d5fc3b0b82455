"""`OnnxRuntimeEngine`: a bundle's model.onnx on ONNX Runtime (CPU; CUDA / TensorRT providers when present).

Tuned for latency on a robot: full graph optimization, sequential execution, one inter-op
thread, `threads` intra-op threads (0: ONNX Runtime's default, the number of physical cores).
Inputs and outputs go through an I/O binding over buffers allocated once (images) or once per
distinct S (masks, outputs), so a steady stream of frames allocates nothing but the returned
float64 arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from pose_regressor.bundle import (
    DROPOUT_MASK,
    GRAPH_INPUTS,
    IMAGES,
    ModelBundle,
)
from pose_regressor.engines.base import (
    EngineDescription,
    EngineError,
    EngineUnavailableError,
    InferenceEngine,
)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)
_MAX_CACHED_S = 4  # output buffers kept for this many distinct sample counts


class OnnxRuntimeEngine(InferenceEngine):
    """ONNX Runtime session over `bundle.onnx_path`.

    providers: ONNX Runtime execution providers in priority order; None: CUDA when this
        onnxruntime build has it, then CPU (the TensorRT provider only when asked for; it caches
        its plans under `bundle.engines_dir / "onnxruntime_trt"`).
    threads: intra-op threads; 0 lets ONNX Runtime use one per physical core.
    """

    backend = "onnxruntime"

    def __init__(self, bundle: ModelBundle, providers: list[str] | None = None, threads: int = 0) -> None:
        super().__init__(bundle)
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        available = ort.get_available_providers()
        if providers is None:
            providers = [CUDA, CPU] if CUDA in available else [CPU]
        missing = [p for p in providers if p not in available]
        if missing or not providers:
            raise EngineUnavailableError(
                f"onnxruntime {ort.__version__} lacks execution provider(s) {missing or providers}; "
                f"available: {', '.join(available)}"
            )
        self.threads = threads
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: no provider chatter on stderr
        provider_list: list[str | tuple[str, dict[str, Any]]] = []
        for name in providers:
            if name == TENSORRT:
                cache = bundle.engines_dir / "onnxruntime_trt"
                cache.mkdir(parents=True, exist_ok=True)
                provider_list.append(
                    (name, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)})
                )
            else:
                provider_list.append(name)
        try:
            self.session = ort.InferenceSession(
                str(bundle.onnx_path), sess_options=options, providers=provider_list
            )
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise EngineError(f"ONNX Runtime cannot load {bundle.onnx_path}: {exc}") from None
        self._check_graph()
        self._binding = self.session.io_binding()
        self._images = np.zeros(bundle.images_shape, dtype=np.uint8)
        self._images_value = ort.OrtValue.ortvalue_from_numpy(self._images)
        # per S: the mask buffer, one buffer per output (graph_outputs order) and their OrtValues
        self._per_s: dict[int, tuple[NDArray[np.float32], tuple[NDArray[np.float32], ...], Any]] = {}

    def _check_graph(self) -> None:
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        wanted_in, wanted_out = [s.name for s in GRAPH_INPUTS], [s.name for s in self.bundle.graph_outputs]
        if set(inputs) != set(wanted_in) or outputs != set(wanted_out):
            raise EngineError(
                f"{self.bundle.onnx_path} has inputs {sorted(inputs)} and outputs {sorted(outputs)}; "
                f"the bundle contract wants {', '.join(wanted_in)} -> {', '.join(wanted_out)}"
            )
        images = list(inputs[IMAGES].shape)
        masks = list(inputs[DROPOUT_MASK].shape)
        if images != list(self.bundle.images_shape) or masks[1:] != [self.bundle.hidden_dim]:
            raise EngineError(
                f"{self.bundle.onnx_path} takes images {images} and dropout_mask {masks}, but bundle.yaml "
                f"says {list(self.bundle.images_shape)} and [S, {self.bundle.hidden_dim}]"
            )

    def _buffers(self, s: int) -> tuple[NDArray[np.float32], tuple[NDArray[np.float32], ...], Any]:
        cached = self._per_s.get(s)
        if cached is None:
            if len(self._per_s) >= _MAX_CACHED_S:
                self._per_s.pop(next(iter(self._per_s)))
            masks = np.zeros((s, self.bundle.hidden_dim), dtype=np.float32)
            outputs = tuple(
                np.zeros((s, int(spec.shape[1])), dtype=np.float32) for spec in self.bundle.graph_outputs
            )
            values = tuple(ort.OrtValue.ortvalue_from_numpy(a) for a in (masks, *outputs))
            cached = (masks, outputs, values)
            self._per_s[s] = cached
        return cached

    def _infer(
        self, images: NDArray[np.uint8], masks: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], ...]:
        mask_buf, outputs, (mask_value, *output_values) = self._buffers(masks.shape[0])
        np.copyto(self._images, images)
        np.copyto(mask_buf, masks)
        binding = self._binding
        binding.bind_ortvalue_input(IMAGES, self._images_value)
        binding.bind_ortvalue_input(DROPOUT_MASK, mask_value)
        for spec, value in zip(self.bundle.graph_outputs, output_values, strict=True):
            binding.bind_ortvalue_output(spec.name, value)
        self.session.run_with_iobinding(binding)
        return outputs

    @property
    def providers(self) -> list[str]:
        """The providers the session actually uses, in priority order."""
        return list(self.session.get_providers())

    def describe(self) -> EngineDescription:
        first = self.providers[0]
        return EngineDescription(
            backend=self.backend,
            device="cuda" if first in GPU_PROVIDERS else "cpu",
            precision="fp32",
            details={
                "providers": self.providers,
                "onnxruntime": ort.__version__,
                "intra_op_threads": self.threads or "default (physical cores)",
                "opset": self.bundle.onnx.get("opset"),
            },
        )
