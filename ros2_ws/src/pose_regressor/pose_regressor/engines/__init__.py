"""Inference engines for model bundles, and `load_engine`, which picks the best one this machine can run.

Backends (each module imported only when used; this package never imports torch):

* ``tensorrt``: `pose_regressor.engines.tensorrt_engine.TensorRTEngine` (needs the `tensorrt`
  package, NVIDIA's CUDA Python binding `cuda-bindings` and a CUDA GPU; plans cached under
  BUNDLE/engines/).
* ``onnxruntime``: `OnnxRuntimeEngine` on the CUDA execution provider when present, else CPU.
* ``torch``: eager PyTorch from BUNDLE/model.pt (the reference, for tests). It lives in the
  training distribution (`pose_regressor_training.torch_engine`), which registers it under the
  entry point group ``pose_regressor.engines``; `load_engine` finds it there, so the robot package
  imports nothing from training.

``auto`` tries TensorRT, then ONNX Runtime with CUDA, then ONNX Runtime on the CPU, and logs one
INFO line naming the engine chosen and why the ones before it were skipped; the same reason is
the engine's ``chosen_because`` (printed by ``pose-regressor bench`` and the node's configure line).

The TensorRT module's contract: ``TensorRTEngine(bundle, **options)`` subclasses `InferenceEngine`
(``backend = "tensorrt"``), builds or loads its plan from ``bundle.engines_dir`` (keyed by GPU
name, TensorRT version and precision; optimization profile S in 1..``bundle.mc_samples`` or
more, opt ``bundle.mc_samples``), and raises `EngineUnavailableError` when it cannot run here
or `EngineError` when its plan fails to build or load. ``auto`` looks for it only when the
`tensorrt` package, the CUDA binding and a CUDA device are present, and falls back to ONNX Runtime
on either error (a failed build is logged as a WARNING as well as in the INFO line).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
from pathlib import Path
from typing import Any

from pose_regressor.bundle import ModelBundle, load_bundle
from pose_regressor.engines.base import (
    EngineDescription,
    EngineError,
    EngineInputError,
    EngineUnavailableError,
    InferenceEngine,
    cuda_device_count,
    validate_inputs,
)
from pose_regressor.engines.cuda_memory import cuda_binding_installed
from pose_regressor.limits import BACKENDS

__all__ = [
    "BACKENDS",
    "EngineDescription",
    "EngineError",
    "EngineInputError",
    "EngineUnavailableError",
    "InferenceEngine",
    "load_engine",
    "registered_engine",
    "tensorrt_unavailable_reasons",
    "validate_inputs",
]

TENSORRT_MODULE = "pose_regressor.engines.tensorrt_engine"
ENGINE_ENTRY_POINTS = "pose_regressor.engines"  # group other distributions register engines under
# What to install for a backend that another distribution registers.
REGISTERED_BY = {"torch": "the training package (pose_regressor_training)"}

logger = logging.getLogger(__name__)


def tensorrt_unavailable_reasons() -> list[str]:
    """Why the TensorRT backend cannot run here (empty when it may): packages, GPU, engine module."""
    reasons = []
    if importlib.util.find_spec("tensorrt") is None:
        reasons.append("the `tensorrt` Python package is not installed")
    if not cuda_binding_installed():
        reasons.append("NVIDIA's CUDA Python binding is not installed (pip install cuda-bindings)")
    if cuda_device_count() == 0:
        reasons.append("no CUDA GPU (the CUDA driver reports no device or is not installed)")
    if importlib.util.find_spec(TENSORRT_MODULE) is None:
        reasons.append(f"{TENSORRT_MODULE} is not part of this installation")
    return reasons


def _tensorrt_engine(bundle: ModelBundle, options: dict[str, Any]) -> InferenceEngine:
    reasons = tensorrt_unavailable_reasons()
    if reasons:
        raise EngineUnavailableError("TensorRT backend unavailable: " + "; ".join(reasons))
    try:
        module = importlib.import_module(TENSORRT_MODULE)
        engine: InferenceEngine = module.TensorRTEngine(bundle, **options)
    except EngineError:
        raise  # unavailable here, or a plan that failed to build or load: the message says which
    except (ImportError, RuntimeError, OSError) as exc:
        raise EngineUnavailableError(f"TensorRT backend unavailable: {exc}") from exc
    return engine


def registered_engine(backend: str) -> Any:
    """The engine class registered for `backend` under the ``pose_regressor.engines`` entry points.

    Raises:
        EngineUnavailableError: nothing registers it (the message names what to install), or the
            registered module cannot be imported (e.g. torch missing).
    """
    found = [ep for ep in importlib.metadata.entry_points(group=ENGINE_ENTRY_POINTS) if ep.name == backend]
    if not found:
        provider = REGISTERED_BY.get(backend, f"a package that registers a {backend!r} engine")
        raise EngineUnavailableError(
            f"{backend} backend unavailable: install {provider}; no {ENGINE_ENTRY_POINTS!r} entry point "
            f"named {backend!r} is installed"
        )
    try:
        return found[0].load()
    except Exception as exc:  # an import error of the plugin or of its dependencies (torch, ...)
        raise EngineUnavailableError(
            f"{backend} backend unavailable: cannot load {found[0].value} ({type(exc).__name__}: {exc})"
        ) from None


def load_engine(bundle: ModelBundle | str | Path, backend: str = "auto", **options: Any) -> InferenceEngine:
    """An engine for `bundle` (a `ModelBundle` or a bundle directory).

    backend: ``auto``, ``tensorrt``, ``onnxruntime`` or ``torch``.
    options: keyword arguments of the chosen engine's constructor (e.g. ``threads`` or
        ``providers`` for onnxruntime, ``device`` for torch); with ``auto`` they go to the ONNX
        Runtime engines only (``providers`` is chosen by ``auto`` itself).

    Raises:
        ValueError: unknown backend, or ``providers`` given with ``auto``.
        BundleError: the bundle is missing or invalid.
        EngineUnavailableError: an explicitly requested backend cannot run here (the message says why).
        EngineError: the engine failed to load the model.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown inference backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not isinstance(bundle, ModelBundle):
        bundle = load_bundle(bundle)
    if backend == "auto":
        if "providers" in options:
            raise ValueError("providers can only be given with backend='onnxruntime'")
        return _auto(bundle, options)
    engine = _explicit(bundle, backend, options)
    engine.chosen_because = f"backend {backend!r} requested"
    return engine


def _explicit(bundle: ModelBundle, backend: str, options: dict[str, Any]) -> InferenceEngine:
    if backend == "tensorrt":
        return _tensorrt_engine(bundle, options)
    if backend == "onnxruntime":
        from pose_regressor.engines.onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(bundle, **options)
    engine: InferenceEngine = registered_engine(backend)(bundle, **options)
    return engine


def _auto(bundle: ModelBundle, options: dict[str, Any]) -> InferenceEngine:
    import onnxruntime as ort

    from pose_regressor.engines.onnxruntime_engine import CPU, CUDA, OnnxRuntimeEngine

    skipped: list[str] = []

    def chosen(engine: InferenceEngine, why: str) -> InferenceEngine:
        note = f"; skipped {'; '.join(skipped)}" if skipped else ""
        logger.info("inference engine: %s for %s (%s)%s", engine.describe(), bundle.path, why, note)
        engine.chosen_because = f"auto: {why}{note}"
        return engine

    try:
        return chosen(_tensorrt_engine(bundle, {}), "TensorRT available")
    except EngineUnavailableError as exc:
        skipped.append(f"tensorrt ({str(exc).removeprefix('TensorRT backend unavailable: ')})")
    except EngineError as exc:  # TensorRT is here but the plan failed to build or load
        logger.warning("TensorRT engine for %s failed, falling back to ONNX Runtime: %s", bundle.path, exc)
        skipped.append(f"tensorrt (failed: {exc})")
    if CUDA in ort.get_available_providers():
        engine = OnnxRuntimeEngine(bundle, providers=[CUDA, CPU], **options)
        if engine.describe().device == "cuda":
            return chosen(engine, "CUDA execution provider")
        skipped.append("onnxruntime CUDA (the CUDA execution provider failed to start)")
    else:
        skipped.append("onnxruntime CUDA (this onnxruntime build has no CUDAExecutionProvider)")
    return chosen(OnnxRuntimeEngine(bundle, providers=[CPU], **options), "CPU fallback")
