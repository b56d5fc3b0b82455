"""What every inference engine is: the `InferenceEngine` base class, its errors and input checks.

An engine runs one bundle's graph (see `pose_regressor.bundle`):

    infer(images uint8 [T, H, W, 3], masks float32 [S, D]) -> (translation float64 [S, 3] metres,
                                                               rotation float64 [S, 4] xyzw, w >= 0)

A bundle whose model has a variance head (``bundle.variance_head``) also gives a per-sample
log-variance [S, 6]: ``infer_outputs`` returns all outputs as `EngineOutputs`.

Images must already be preprocessed (`pose_regressor.bundle.preprocess`): T cameras in bundle
order at the bundle's input size. A mask of ones ([1, D]) gives the deterministic prediction;
S random masks (`pose_regressor.uncertainty.dropout_masks`) give S MC-dropout samples. The same
images and masks give the same numbers on every engine, up to floating-point differences.
"""

from __future__ import annotations

import ctypes
import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from pose_regressor.bundle import ModelBundle

FloatArray = NDArray[np.float64]


class EngineError(RuntimeError):
    """An engine cannot be built or run (bad model file, failed session); the message says why."""


class EngineUnavailableError(EngineError):
    """The requested backend cannot run on this machine (missing package, no GPU)."""


class EngineInputError(ValueError):
    """`infer` got images or masks that do not fit the bundle; the message names the mismatch."""


@dataclass(frozen=True)
class EngineDescription:
    """Which engine runs the model: backend (tensorrt, onnxruntime, torch), device (cpu, cuda),
    precision (fp32, fp16, ...) and backend-specific details (providers, versions, threads)."""

    backend: str
    device: str
    precision: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.backend} on {self.device} ({self.precision})"


@dataclass(frozen=True)
class EngineOutputs:
    """What one `InferenceEngine.infer_outputs` call gives (float64)."""

    translation: FloatArray  # [S, 3] metres
    rotation: FloatArray  # [S, 4] xyzw, w >= 0
    log_variance: FloatArray | None = None  # [S, 6] (ln m^2, ln rad^2) when the bundle has a variance head


def validate_inputs(
    bundle: ModelBundle, images: Any, masks: Any
) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
    """Check `images` (uint8 [T, H, W, 3]) and `masks` (floating [S, D], S >= 1) against the bundle;
    returns them C-contiguous, masks as float32.

    Raises:
        EngineInputError: naming the array, the expected and the actual shape or dtype.
    """
    if not isinstance(images, np.ndarray):
        raise EngineInputError(f"images must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise EngineInputError(
            f"images must be uint8 RGB (0..255; normalization happens in the graph), got {images.dtype}"
        )
    expected = bundle.images_shape
    if images.shape != expected:
        names = ", ".join(bundle.camera_names)
        raise EngineInputError(
            f"images must have shape [T, H, W, 3] = {list(expected)} ({expected[0]} cameras: {names}; "
            f"{expected[2]}x{expected[1]} pixels after pose_regressor.bundle.preprocess), "
            f"got {list(images.shape)}"
        )
    if not isinstance(masks, np.ndarray):
        raise EngineInputError(f"masks must be a numpy array, got {type(masks).__name__}")
    if not np.issubdtype(masks.dtype, np.floating):
        raise EngineInputError(f"masks must be floating point (float32), got {masks.dtype}")
    if masks.ndim != 2 or masks.shape[0] < 1 or masks.shape[1] != bundle.hidden_dim:
        raise EngineInputError(
            f"masks must have shape [S, D] with S >= 1 and D = {bundle.hidden_dim}, got {list(masks.shape)}"
        )
    return np.ascontiguousarray(images), np.ascontiguousarray(masks, dtype=np.float32)


class InferenceEngine(ABC):
    """Base of all engines: `infer` validates the inputs, runs `_infer` and returns float64 outputs.

    Subclasses set `backend` and implement `_infer` (given valid, C-contiguous uint8 images and
    float32 masks; returns translation and rotation, then log_variance when the bundle has a
    variance head, in any float dtype) and `describe`.
    """

    backend: ClassVar[str] = "?"
    #: The largest S (MC samples) one `infer` call takes; None: any (a TensorRT plan has a maximum).
    max_samples: int | None = None
    #: Why `load_engine` returned this engine, for logs: ``auto: <why>; skipped <backend (reason)>...``
    #: or ``backend 'onnxruntime' requested``.
    chosen_because: str = "constructed directly"

    def __init__(self, bundle: ModelBundle) -> None:
        self.bundle = bundle

    def infer(
        self, images: NDArray[np.uint8], masks: NDArray[np.floating[Any]]
    ) -> tuple[FloatArray, FloatArray]:
        """images uint8 [T, H, W, 3], masks [S, D] -> (translation [S, 3] metres, rotation [S, 4] xyzw)."""
        out = self.infer_outputs(images, masks)
        return out.translation, out.rotation

    def infer_outputs(self, images: NDArray[np.uint8], masks: NDArray[np.floating[Any]]) -> EngineOutputs:
        """`infer` plus the log-variance [S, 6] of a bundle with a variance head (else None)."""
        images, masks32 = validate_inputs(self.bundle, images, masks)
        outputs = self._infer(images, masks32)
        wanted = len(self.bundle.graph_outputs)
        if len(outputs) != wanted:
            raise EngineError(
                f"{self.backend} returned {len(outputs)} outputs, the bundle's graph has {wanted}"
            )
        t, q = outputs[0], outputs[1]
        s = masks32.shape[0]
        if t.shape != (s, 3) or q.shape != (s, 4):
            raise EngineError(
                f"{self.backend} returned translation {list(t.shape)} and rotation {list(q.shape)}, "
                f"expected [{s}, 3] and [{s}, 4]"
            )
        log_variance = None
        if wanted == 3:
            if outputs[2].shape != (s, 6):
                raise EngineError(
                    f"{self.backend} returned log_variance {list(outputs[2].shape)}, expected [{s}, 6]"
                )
            log_variance = np.asarray(outputs[2], dtype=np.float64)
        return EngineOutputs(np.asarray(t, dtype=np.float64), np.asarray(q, dtype=np.float64), log_variance)

    def deterministic_mask(self) -> NDArray[np.float32]:
        """The [1, D] mask of ones: `infer(images, engine.deterministic_mask())` is the plain prediction."""
        return np.ones((1, self.bundle.hidden_dim), dtype=np.float32)

    @abstractmethod
    def _infer(
        self, images: NDArray[np.uint8], masks: NDArray[np.float32]
    ) -> tuple[NDArray[np.floating[Any]], ...]:
        """Run the graph on validated inputs: (translation, rotation[, log_variance])."""

    @abstractmethod
    def describe(self) -> EngineDescription:
        """What runs the model (for logs and diagnostics)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()} bundle={self.bundle.path}>"


@functools.cache
def cuda_device_count() -> int:
    """Number of CUDA devices the driver reports (0 without a driver or GPU); torch-free (ctypes)."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return int(count.value)
    return 0
