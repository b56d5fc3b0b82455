"""The localizer's parameters: names, defaults, ranges and validation (ROS-free).

The node declares each parameter from `PARAMETERS` with a descriptor (description and range),
so `ros2 param describe` shows them; `LocalizerParams.from_values` validates the whole set at
start-up and reports the first problem as one clear line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
TRANSPORTS = ("raw", "compressed")


class ParameterError(ValueError):
    """A parameter value is invalid; the message names the parameter and the allowed values."""


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: Any
    description: str
    min_value: float | None = None
    max_value: float | None = None
    choices: tuple[str, ...] = ()


PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec("bundle", "", "model bundle directory (model.onnx + bundle.yaml)"),
    ParameterSpec("backend", "auto", "inference backend", choices=BACKENDS),
    ParameterSpec(
        "camera_topics", [""], "image topics, one per bundle camera, in bundle order (empty: the bundle's)"
    ),
    ParameterSpec(
        "image_transport", ["raw"], "raw or compressed, one per topic or one for all", choices=TRANSPORTS
    ),
    ParameterSpec("sync_slop", 0.01, "largest stamp spread within a synchronized camera set (s)", 0.0, 1.0),
    ParameterSpec("mc_samples", 16, "Monte-Carlo dropout samples per set (1: deterministic)", 1, 256),
    ParameterSpec("seed", 0, "seed of the dropout masks", 0, 2**31 - 1),
    ParameterSpec("map_frame", "map", "frame of the published poses"),
    ParameterSpec("base_frame", "base_link", "robot frame whose pose is estimated"),
    ParameterSpec(
        "max_position_std", 1.0, "position std (m) above which a pose is flagged uncertain", 0.0, 1e6
    ),
    ParameterSpec(
        "max_rotation_std", 0.35, "rotation std (rad) above which a pose is flagged uncertain", 0.0, math.pi
    ),
    ParameterSpec("gate_uncertain", False, "do not publish poses flagged uncertain"),
    ParameterSpec("path_length", 500, "poses kept in ~/path (0: no path)", 0, 100_000),
    ParameterSpec("path_rate", 5.0, "how often ~/path is republished (Hz); every pose is kept", 0.1, 1000.0),
    ParameterSpec("publish_initialpose", False, "also publish confident poses on /initialpose (Nav2 AMCL)"),
    ParameterSpec(
        "camera_timeout", 1.0, "seconds without images after which a camera is reported stopped", 0.05, 3600.0
    ),
    ParameterSpec(
        "resize_mismatched", True, "resize images whose size differs from the bundle's (else refuse)"
    ),
)


@dataclass(frozen=True)
class LocalizerParams:
    bundle: Path
    backend: str = "auto"
    camera_topics: tuple[str, ...] = ()
    image_transport: tuple[str, ...] = ("raw",)
    sync_slop: float = 0.01
    mc_samples: int = 16
    seed: int = 0
    map_frame: str = "map"
    base_frame: str = "base_link"
    max_position_std: float = 1.0
    max_rotation_std: float = 0.35
    gate_uncertain: bool = False
    path_length: int = 500
    path_rate: float = 5.0
    publish_initialpose: bool = False
    camera_timeout: float = 1.0
    resize_mismatched: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> LocalizerParams:
        """Validates raw parameter values (as the node reads them); raises `ParameterError`."""
        specs = {spec.name: spec for spec in PARAMETERS}
        unknown = sorted(set(values) - set(specs))
        if unknown:
            raise ParameterError(f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(specs)}")
        merged = {name: values.get(name, spec.default) for name, spec in specs.items()}
        for name, value in merged.items():
            _check(specs[name], value)
        if not merged["bundle"]:
            raise ParameterError("parameter 'bundle' is required: the model bundle directory")
        bundle = Path(str(merged["bundle"])).expanduser()
        if not bundle.exists():
            raise ParameterError(f"parameter 'bundle': {bundle} does not exist")
        if not bundle.is_dir():
            raise ParameterError(
                f"parameter 'bundle': {bundle} is not a directory (give the bundle directory, "
                "which holds bundle.yaml and model.onnx)"
            )
        topics = tuple(t for t in merged["camera_topics"] if t)
        for topic in topics:
            if not topic.startswith("/") or " " in topic:
                raise ParameterError(f"parameter 'camera_topics': {topic!r} is not an absolute topic name")
        transports = tuple(merged["image_transport"]) or ("raw",)
        if topics and len(transports) not in (1, len(topics)):
            raise ParameterError(
                f"parameter 'image_transport' has {len(transports)} entries; give one or one per camera topic"
                f" ({len(topics)})"
            )
        kwargs = {f.name: merged[f.name] for f in fields(cls) if f.name in merged}
        kwargs.update(bundle=bundle, camera_topics=topics, image_transport=transports)
        return cls(**kwargs)

    def transport_for(self, index: int) -> str:
        return self.image_transport[0] if len(self.image_transport) == 1 else self.image_transport[index]


def _check(spec: ParameterSpec, value: Any) -> None:
    default = spec.default
    name = spec.name
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ParameterError(f"parameter '{name}' must be true or false, got {value!r}")
        return
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParameterError(f"parameter '{name}' must be a number, got {value!r}")
        if isinstance(default, int) and not isinstance(value, int):
            raise ParameterError(f"parameter '{name}' must be an integer, got {value!r}")
        if (
            not math.isfinite(value)
            or (spec.min_value is not None and value < spec.min_value)
            or (spec.max_value is not None and value > spec.max_value)
        ):
            raise ParameterError(
                f"parameter '{name}' must be in [{spec.min_value}, {spec.max_value}], got {value}"
            )
        return
    if isinstance(default, list):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ParameterError(f"parameter '{name}' must be a list of strings, got {value!r}")
        if spec.choices and any(v not in spec.choices for v in value):
            raise ParameterError(
                f"parameter '{name}' entries must be one of {', '.join(spec.choices)}, got {value!r}"
            )
        return
    if not isinstance(value, str):
        raise ParameterError(f"parameter '{name}' must be a string, got {value!r}")
    if spec.choices and value not in spec.choices:
        raise ParameterError(f"parameter '{name}' must be one of {', '.join(spec.choices)}, got {value!r}")
