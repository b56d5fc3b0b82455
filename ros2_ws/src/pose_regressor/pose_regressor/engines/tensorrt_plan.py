"""TensorRT plans for a bundle: what a plan is built for, where it is cached, and whether a cached
one may be used. Pure functions and file handling only; TensorRT itself is called in
`pose_regressor.engines.tensorrt_build`, CUDA in `pose_regressor.engines.cuda_memory`.

Plan cache. A plan is specific to the GPU model (compute capability), the TensorRT version, the
precision and the input shapes, so its file name is :func:`plan_cache_key` of exactly those, and a
JSON sidecar next to it records them together with the SHA-256 of model.onnx and the plan's size.
On start the cached plan is used when :func:`plan_problem` finds nothing wrong with it and TensorRT
deserializes it; otherwise (missing, empty, truncated, other model, key mismatch, a plan that
TensorRT refuses) it is rebuilt from model.onnx (seconds to minutes) and written atomically
(temporary file + ``os.replace``: a crash never leaves a half-written plan under the real name).
Workspace size is not part of the key (it changes tactics, not compatibility).

Shapes. ``images`` is static [T, H, W, 3] (uint8); ``dropout_mask`` [S, D] has one optimization
profile with S in 1..``max_samples`` (default ``bundle.mc_samples``), optimized for
S = ``bundle.mc_samples``.

Precision. ``fp16`` (default) sets ``BuilderFlag.FP16`` when the builder reports fast FP16 and
otherwise builds FP32 (the effective precision is part of the key). ``fp32`` builds strict FP32:
TF32, which TensorRT enables by default from Ampere on, is cleared, so that the plan is the FP32
reference parity checks hold it to (since 2026-12-07: plans cached before then are rebuilt once,
their sidecar's format version being older). ``int8`` uses implicit quantization with an
``IInt8EntropyCalibrator2`` fed from dataset images, its table cached next to the plan
(``<key>.calib``); FP16 is enabled alongside it for the layers INT8 cannot run. Implicit INT8
calibration is deprecated since TensorRT 10.1 and removed in TensorRT 11.0, which also removed
``BuilderFlag.FP16`` (weak typing): see :func:`int8_calibration_problem` and
:func:`resolve_precision`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pose_regressor.bundle import DROPOUT_MASK, IMAGES, ModelBundle
from pose_regressor.engines.base import EngineError
from pose_regressor.files import atomic_write_bytes

__all__ = [
    "DEFAULT_WORKSPACE_MB",
    "INT8_DEPRECATED_IN",
    "INT8_REMOVED_IN",
    "MIN_TENSORRT",
    "PRECISIONS",
    "PlanFiles",
    "ShapeRange",
    "atomic_write_bytes",
    "int8_calibration_problem",
    "parse_version",
    "plan_cache_key",
    "plan_metadata",
    "plan_problem",
    "profile_shapes",
    "resolve_precision",
]

PRECISIONS = ("fp16", "fp32", "int8")
PLAN_FORMAT = "pose_regressor_tensorrt_plan"
PLAN_FORMAT_VERSION = 2  # 2 (2026-12-07): fp32 plans are strict FP32 (TF32 cleared); a 1 is rebuilt
DEFAULT_WORKSPACE_MB = 1024
MIN_TENSORRT = (10, 0)  # the I/O-tensor API (set_tensor_address, execute_async_v3), no implicit batch
INT8_DEPRECATED_IN = (10, 1)  # IInt8EntropyCalibrator2 & co.: "Deprecated in TensorRT 10.1"
INT8_REMOVED_IN = (11, 0)  # int8_calibrator, BuilderFlag.INT8/FP16 removed in TensorRT 11.x

ShapeRange = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # (min, opt, max)


def parse_version(text: str) -> tuple[int, ...]:
    """``"10.3.0.26"`` -> (10, 3, 0, 26): each part's leading digits (``"10.0.0b6"`` -> (10, 0, 0)),
    at least three parts (``"11"`` -> (11, 0, 0))."""
    parts: list[int] = []
    for piece in str(text).split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
    if not parts:
        raise ValueError(f"not a version number: {text!r}")
    return tuple(parts + [0] * (3 - len(parts)))


def int8_calibration_problem(trt_version: str) -> str | None:
    """Why implicit INT8 calibration (``IInt8EntropyCalibrator2``) cannot be used with this TensorRT
    version, or None when it can.

    Facts (NVIDIA's API docs): the ``IInt8*Calibrator`` classes, ``setInt8Calibrator`` and
    ``setCalibrationProfile`` are "Deprecated in TensorRT 10.1. Superseded by explicit quantization"
    (still working through 10.x, so only a warning is logged there); the TensorRT 10.x -> 11.x
    migration guide lists ``IBuilderConfig.int8_calibrator``, ``set_calibration_profile`` and
    ``BuilderFlag.INT8`` as removed in 11.x, replaced by explicit quantization with Q/DQ nodes.
    """
    version = parse_version(trt_version)
    if version >= INT8_REMOVED_IN:
        return (
            f"TensorRT {trt_version} has no implicit INT8 calibration (IInt8EntropyCalibrator2 and "
            f"BuilderFlag.INT8 were deprecated in 10.1 and removed in 11.0): use --precision fp16 (or "
            "fp32), or quantize explicitly (Q/DQ nodes in model.onnx, e.g. with NVIDIA ModelOpt)"
        )
    if version < MIN_TENSORRT:
        return f"TensorRT {trt_version} is older than {'.'.join(map(str, MIN_TENSORRT))}"
    return None


def resolve_precision(requested: str, trt_version: str, fast_fp16: bool | None) -> tuple[str, str | None]:
    """(precision the plan is built with, a note to log or None) for a requested precision.

    ``fast_fp16`` is the builder's ``platform_has_fast_fp16`` (None where the API lacks it).

    Raises:
        ValueError: unknown precision.
        EngineError: ``int8`` where implicit INT8 calibration is gone (:func:`int8_calibration_problem`).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    version = parse_version(trt_version)
    if requested == "fp32":
        return "fp32", None
    if requested == "int8":
        problem = int8_calibration_problem(trt_version)
        if problem is not None:
            raise EngineError(problem)
        if version >= INT8_DEPRECATED_IN:
            return "int8", (
                f"implicit INT8 calibration is deprecated since TensorRT 10.1 (this is {trt_version}) "
                "and removed in 11.0; plan for explicit quantization"
            )
        return "int8", None
    if version >= INT8_REMOVED_IN:
        return "fp32", (
            f"TensorRT {trt_version} removed BuilderFlag.FP16 (networks are strongly typed): building "
            "the FP32 graph as FP32; an FP16 plan needs an FP16 model.onnx"
        )
    if fast_fp16 is False:
        return "fp32", "this GPU has no fast FP16 (platform_has_fast_fp16 is false): building FP32"
    return "fp16", None


def profile_shapes(bundle: ModelBundle, max_samples: int | None = None) -> dict[str, ShapeRange]:
    """The optimization profile: ``images`` static, ``dropout_mask`` S in 1..max_samples, opt mc_samples."""
    top = bundle.mc_samples if max_samples is None else max_samples
    if top < 1:
        raise ValueError(f"max_samples must be >= 1, got {top}")
    images = tuple(bundle.images_shape)
    d = bundle.hidden_dim
    return {
        IMAGES: (images, images, images),
        DROPOUT_MASK: ((1, d), (min(bundle.mc_samples, top), d), (top, d)),
    }


def _canonical_shapes(shapes: Mapping[str, Sequence[Sequence[int]]]) -> dict[str, list[list[int]]]:
    return {name: [[int(v) for v in shape] for shape in shapes[name]] for name in sorted(shapes)}


def _slug(text: str, limit: int) -> str:
    slug = re.sub(r"[^a-z0-9.]+", "-", text.lower())
    slug = re.sub(r"\.{2,}", ".", re.sub(r"[-.]*-[-.]*", "-", slug)).strip("-.")
    return slug[:limit].strip("-.") or "unknown"


def plan_cache_key(
    gpu_name: str,
    compute_capability: tuple[int, int],
    trt_version: str,
    precision: str,
    shapes: Mapping[str, Sequence[Sequence[int]]],
) -> str:
    """The plan's file name stem: readable GPU / compute capability / TensorRT version / precision, plus
    a digest of all of them and of the profile shapes (name -> (min, opt, max)). Only ``[a-z0-9._-]``,
    at most 100 characters; equal arguments give equal keys, any difference a different key."""
    fields = {
        "gpu": gpu_name,
        "compute_capability": [int(v) for v in compute_capability],
        "tensorrt": trt_version,
        "precision": precision,
        "shapes": _canonical_shapes(shapes),
    }
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    major, minor = (int(v) for v in compute_capability)
    return (
        f"{_slug(gpu_name, 40)}_sm{major}{minor}_trt{_slug(trt_version, 16)}_{_slug(precision, 8)}_{digest}"
    )


def plan_metadata(
    gpu_name: str,
    compute_capability: tuple[int, int],
    trt_version: str,
    precision: str,
    shapes: Mapping[str, Sequence[Sequence[int]]],
    onnx_sha256: str,
) -> dict[str, Any]:
    """The sidecar fields a cached plan must match (JSON-ready; ``key`` included)."""
    return {
        "format": PLAN_FORMAT,
        "version": PLAN_FORMAT_VERSION,
        "key": plan_cache_key(gpu_name, compute_capability, trt_version, precision, shapes),
        "gpu": gpu_name,
        "compute_capability": [int(v) for v in compute_capability],
        "tensorrt": trt_version,
        "precision": precision,
        "shapes": _canonical_shapes(shapes),
        "onnx_sha256": onnx_sha256,
    }


def plan_problem(
    plan_bytes: int | None, sidecar: Mapping[str, Any] | None, expected: Mapping[str, Any]
) -> str | None:
    """Why a cached plan must not be used (None: it may be, if TensorRT also deserializes it).

    plan_bytes: the plan file's size (None: no file); sidecar: its parsed JSON sidecar (None: missing
    or unreadable); expected: :func:`plan_metadata` of this run.
    """
    if plan_bytes is None:
        return "no cached plan"
    if plan_bytes == 0:
        return "the cached plan is empty (an interrupted build or copy?)"
    if sidecar is None:
        return "the cached plan has no readable sidecar"
    for field_name, wanted in expected.items():
        cached = sidecar.get(field_name)
        if cached != wanted:
            return f"{field_name} differs: the plan was built for {cached!r}, this run needs {wanted!r}"
    recorded = sidecar.get("plan_bytes")
    if recorded != plan_bytes:
        return f"the plan has {plan_bytes} bytes, its sidecar records {recorded!r} (truncated or replaced)"
    return None


def read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class PlanFiles:
    """The cache files of one plan key in BUNDLE/engines/: plan, JSON sidecar, INT8 calibration table."""

    plan: Path
    sidecar: Path
    calibration: Path

    @classmethod
    def for_key(cls, engines_dir: Path, key: str) -> PlanFiles:
        return cls(engines_dir / f"{key}.plan", engines_dir / f"{key}.json", engines_dir / f"{key}.calib")

    def problem(self, expected: Mapping[str, Any]) -> str | None:
        """Why the cached plan must not be used (:func:`plan_problem`), None when it may be."""
        return plan_problem(file_size(self.plan), read_sidecar(self.sidecar), expected)

    def has_calibration(self) -> bool:
        return (file_size(self.calibration) or 0) > 0

    def store(self, plan: bytes, sidecar: Mapping[str, Any]) -> None:
        """Write the plan, then its sidecar (with ``plan_bytes``), each atomically. Raises OSError."""
        record = {**sidecar, "plan_bytes": len(plan)}
        atomic_write_bytes(self.plan, plan)  # plan first: a stale sidecar never validates a new plan
        atomic_write_bytes(self.sidecar, (json.dumps(record, indent=2) + "\n").encode())
