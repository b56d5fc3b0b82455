"""The localizer's parameters: names, defaults, ranges, when they may change, and validation (ROS-free).

The node declares each parameter from `PARAMETERS` with a descriptor (description, range,
choices, read-only), so `ros2 param describe` shows them. Every parameter has one of three
`Change` kinds, and no accepted change is ever ignored:

* `RUNTIME`: `ros2 param set` takes effect on the next camera set (validated as at configure).
* `UNCONFIGURED`: the bundle, engine and subscriptions are built from it at configure, so a
  change is accepted only while the node is unconfigured (it takes effect at the next
  configure) and refused with the reason in any other state.
* `READ_ONLY`: only the command line or params file sets it (`autostart`).

An integer given for a double parameter (`sync_slop: 1`, `ros2 param set ... max_position_std 0`)
is taken as that double, and one string for a list parameter (`image_transport:=compressed`, as
image_transport's own parameter is written) as a list of it (`widened`); other types are refused.

`LocalizerParams.from_values` validates a whole set at configure; `validate_change` validates
a runtime change the same way, one parameter at a time, and both report one clear line.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pose_regressor.bounds import Bound, is_number, out_of_range
from pose_regressor.covariance import ROTATION_CONVENTIONS
from pose_regressor.limits import (
    BACKENDS,
    MAX_COVARIANCE_INFLATION,
    MAX_FLAG_POSITION_STD,
    MAX_FLAG_ROTATION_STD,
    MAX_MC_SAMPLES,
    MISSING_CAMERA_POLICIES,
)

if TYPE_CHECKING:
    from pose_regressor.bundle import UncertainFlag

TRANSPORTS = ("raw", "compressed")
# ROS 2 topic names (design article "Topic and Service name mapping"): tokens of letters, digits
# and underscores separated by "/", optionally starting with "/" or "~/", not starting with a digit.
_TOPIC = re.compile(r"^(~/|/)?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")
_FRAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")


class ParameterError(ValueError):
    """A parameter value is invalid; the message names the parameter and the allowed values."""


class Change(enum.Enum):
    RUNTIME = "takes effect at runtime"
    UNCONFIGURED = "may change only while the node is unconfigured (takes effect at configure)"
    READ_ONLY = "read-only: set it on the command line or in the params file"


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: Any
    description: str
    min_value: float | None = None
    max_value: float | None = None
    choices: tuple[str, ...] = ()
    change: Change = Change.RUNTIME


# The uncertain flag's thresholds for a bundle that suggests none (exported without an evaluation).
FALLBACK_MAX_POSITION_STD = 1.0  # m
FALLBACK_MAX_ROTATION_STD = 0.35  # rad
FLAG_FALLBACKS = {
    "max_position_std": FALLBACK_MAX_POSITION_STD,
    "max_rotation_std": FALLBACK_MAX_ROTATION_STD,
}

_U = Change.UNCONFIGURED
PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec("bundle", "", "model bundle directory (model.onnx + bundle.yaml)", change=_U),
    ParameterSpec("backend", "auto", "inference backend", choices=BACKENDS, change=_U),
    ParameterSpec(
        "camera_topics",
        [""],
        "image topics, one per bundle camera, in bundle order; relative names resolve in the node's "
        "namespace (empty: the bundle's topics, made relative)",
        change=_U,
    ),
    ParameterSpec(
        "image_transport",
        ["raw"],
        "raw or compressed, one per topic or one for all; compressed subscribes <topic>/compressed",
        choices=TRANSPORTS,
        change=_U,
    ),
    ParameterSpec(
        "autostart",
        True,
        "configure and activate at start (false: a lifecycle manager does)",
        change=Change.READ_ONLY,
    ),
    ParameterSpec("sync_slop", 0.01, "largest stamp spread within a synchronized camera set (s)", 0.0, 1.0),
    ParameterSpec(
        "mc_samples",
        0,
        "Monte-Carlo dropout samples per set (0: the bundle's mc_samples; 1: deterministic)",
        0,
        MAX_MC_SAMPLES,
    ),
    ParameterSpec("seed", 0, "seed of the dropout masks", 0, 2**31 - 1),
    ParameterSpec("map_frame", "map", "frame of the published poses"),
    ParameterSpec("base_frame", "base_link", "robot frame whose pose is estimated (TF child)"),
    ParameterSpec(
        "odom_frame", "odom", "odometry frame for publish_tf: map -> odom (empty: map -> base_frame)"
    ),
    ParameterSpec("publish_tf", False, "publish the map -> odom transform on /tf, like AMCL", change=_U),
    ParameterSpec(
        "transform_tolerance", 1.0, "seconds the published transform is post-dated (as AMCL)", 0.0, 60.0
    ),
    ParameterSpec(
        "covariance_rotation",
        "rpy",
        "rotation block of the covariance: rpy (roll/pitch/yaw, what robot_localization reads) or "
        "fixed_axes (rotations about the map axes, the message definition)",
        choices=ROTATION_CONVENTIONS,
    ),
    ParameterSpec(
        "max_position_std",
        0.0,
        "position std (m) above which a pose is flagged uncertain (0: the bundle's suggested value, "
        f"{FALLBACK_MAX_POSITION_STD} m for a bundle without one; {MAX_FLAG_POSITION_STD:g}: never)",
        0.0,
        MAX_FLAG_POSITION_STD,
    ),
    ParameterSpec(
        "max_rotation_std",
        0.0,
        "rotation std (rad) above which a pose is flagged uncertain (0: the bundle's suggested value, "
        f"{FALLBACK_MAX_ROTATION_STD} rad for a bundle without one; pi: never)",
        0.0,
        MAX_FLAG_ROTATION_STD,
    ),
    ParameterSpec(
        "covariance_inflation",
        1.0,
        "factor on the published covariance (pose_with_covariance, initialpose) for an EKF that fuses "
        "every pose: successive poses share their errors, so set it to the evaluation's "
        "error_correlation.suggested_covariance_inflation, or 0 for the one the bundle carries (1: "
        "each pose's own calibrated covariance, also for 0 and a bundle without one; the uncertain "
        "flag always reads that one); 0 or from 1 to 1e6",
        0.0,
        MAX_COVARIANCE_INFLATION,
    ),
    ParameterSpec("gate_uncertain", False, "do not publish poses flagged uncertain"),
    ParameterSpec("path_length", 500, "poses kept in ~/path (0: no path)", 0, 100_000),
    ParameterSpec("path_rate", 5.0, "how often ~/path is republished (Hz); every pose is kept", 0.1, 1000.0),
    ParameterSpec(
        "publish_initialpose",
        False,
        "publish the first confident pose on initialpose, and again to each new subscriber (Nav2 AMCL)",
    ),
    ParameterSpec(
        "camera_timeout",
        1.0,
        "seconds (node clock) without images, or without a synchronized set, before diagnostics warn",
        0.05,
        3600.0,
    ),
    ParameterSpec(
        "resize_mismatched", True, "resize images whose size differs from the bundle's (else refuse)"
    ),
    ParameterSpec(
        "missing_camera",
        "wait",
        "a camera silent for camera_timeout while others send: wait (no pose until it sends again) "
        "or black (localize with a black image in its place, every such pose flagged uncertain; for "
        "a model trained with augment.camera_dropout)",
        choices=MISSING_CAMERA_POLICIES,
    ),
)
SPECS: dict[str, ParameterSpec] = {spec.name: spec for spec in PARAMETERS}


@dataclass(frozen=True)
class LocalizerParams:
    bundle: Path
    backend: str = "auto"
    camera_topics: tuple[str, ...] = ()
    image_transport: tuple[str, ...] = ("raw",)
    autostart: bool = True
    sync_slop: float = 0.01
    mc_samples: int = 0
    seed: int = 0
    map_frame: str = "map"
    base_frame: str = "base_link"
    odom_frame: str = "odom"
    publish_tf: bool = False
    transform_tolerance: float = 1.0
    covariance_rotation: str = "rpy"
    max_position_std: float = 0.0
    max_rotation_std: float = 0.0
    covariance_inflation: float = 1.0
    gate_uncertain: bool = False
    path_length: int = 500
    path_rate: float = 5.0
    publish_initialpose: bool = False
    camera_timeout: float = 1.0
    resize_mismatched: bool = True
    missing_camera: str = "wait"

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> LocalizerParams:
        """Validates raw parameter values (as the node reads them); raises `ParameterError`."""
        unknown = sorted(set(values) - set(SPECS))
        if unknown:
            raise ParameterError(f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(SPECS)}")
        merged = {name: values.get(name, spec.default) for name, spec in SPECS.items()}
        for name, value in merged.items():
            check_value(name, value)
        if not merged["bundle"]:
            raise ParameterError("parameter 'bundle' is required: the model bundle directory")
        topics = tuple(t for t in merged["camera_topics"] if t)
        transports = tuple(merged["image_transport"]) or ("raw",)
        check_transport_count(topics, transports)
        kwargs = {f.name: merged[f.name] for f in fields(cls) if f.name in merged}
        kwargs.update(bundle=bundle_path(merged["bundle"]), camera_topics=topics, image_transport=transports)
        return cls(**kwargs)

    def transport_for(self, index: int) -> str:
        return self.image_transport[0] if len(self.image_transport) == 1 else self.image_transport[index]


def validate_change(current: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
    """Checks `changes` (name -> new value) against `current` (all present values) exactly as
    `LocalizerParams.from_values` would at configure; raises `ParameterError` naming the first
    problem. A change to the empty bundle is refused: the node needs one to configure."""
    for name, value in changes.items():
        if name not in SPECS:
            raise ParameterError(f"unknown parameter '{name}'; known: {', '.join(SPECS)}")
        check_value(name, value)
    if "bundle" in changes:
        if not changes["bundle"]:
            raise ParameterError("parameter 'bundle' is required: the model bundle directory")
        bundle_path(changes["bundle"])
    if "camera_topics" in changes or "image_transport" in changes:
        merged = {**current, **changes}
        topics = tuple(t for t in merged.get("camera_topics", ()) if t)
        check_transport_count(topics, tuple(merged.get("image_transport", ())) or ("raw",))


def bundle_path(value: str) -> Path:
    """The bundle directory `value` names (with `~` expanded), checked to exist."""
    text = str(value)
    try:
        bundle = Path(text).expanduser()
    except RuntimeError:  # "~nosuchuser/..." cannot be expanded
        raise ParameterError(f"parameter 'bundle': cannot expand {text!r}: no such user") from None
    try:
        exists, is_dir = bundle.exists(), bundle.is_dir()
    except (OSError, ValueError) as exc:  # name too long, NUL byte, permission on a parent...
        raise ParameterError(f"parameter 'bundle': cannot use {text!r}: {exc}") from None
    shown = str(bundle) if str(bundle).isprintable() else repr(str(bundle))  # one clean log line
    if not exists:
        raise ParameterError(f"parameter 'bundle': {shown} does not exist")
    if not is_dir:
        raise ParameterError(
            f"parameter 'bundle': {shown} is not a directory (give the bundle directory, "
            "which holds bundle.yaml and model.onnx)"
        )
    return bundle


def check_transport_count(topics: tuple[str, ...], transports: tuple[str, ...]) -> None:
    if topics and len(transports) not in (1, len(topics)):
        raise ParameterError(
            f"parameter 'image_transport' has {len(transports)} entries; give one or one per camera topic"
            f" ({len(topics)})"
        )


def check_value(name: str, value: Any) -> None:
    """One parameter's type, range, choices and syntax (topic and frame names)."""
    spec = SPECS[name]
    default = spec.default
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ParameterError(f"parameter '{name}' must be true or false, got {value!r}")
        return
    if isinstance(default, (int, float)):
        _check_number(spec, value)
        if name == "covariance_inflation" and 0 < value < 1:  # would shrink the calibrated covariance
            raise ParameterError(
                f"parameter 'covariance_inflation' must be 0 (the bundle's suggested inflation) or from "
                f"1 to {MAX_COVARIANCE_INFLATION:g}, got {value!r}"
            )
        return
    if isinstance(default, list):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ParameterError(f"parameter '{name}' must be a list of strings, got {value!r}")
        if spec.choices and any(v not in spec.choices for v in value):
            raise ParameterError(
                f"parameter '{name}' entries must be one of {', '.join(spec.choices)}, got {list(value)!r}"
            )
        if name == "image_transport" and not value:
            raise ParameterError("parameter 'image_transport' must name at least one transport (raw)")
        if name == "camera_topics":
            for topic in value:
                if topic and not _TOPIC.match(topic):
                    raise ParameterError(
                        f"parameter 'camera_topics': {topic!r} is not a valid ROS topic name "
                        "(letters, digits, _ and /, e.g. front/image_raw or /robot1/front/image_raw)"
                    )
        return
    if not isinstance(value, str):
        raise ParameterError(f"parameter '{name}' must be a string, got {value!r}")
    if spec.choices and value not in spec.choices:
        raise ParameterError(f"parameter '{name}' must be one of {', '.join(spec.choices)}, got {value!r}")
    optional = value == "" and name == "odom_frame"  # empty odom_frame: publish map -> base_frame
    if name.endswith("_frame") and not optional and not _FRAME.match(value):
        raise ParameterError(f"parameter '{name}' must be a frame name like map or base_link, got {value!r}")


def _check_number(spec: ParameterSpec, value: Any) -> None:
    name = spec.name
    if not is_number(value):
        raise ParameterError(f"parameter '{name}' must be a number, got {value!r}")
    if isinstance(spec.default, int) and not isinstance(value, int):
        raise ParameterError(f"parameter '{name}' must be an integer, got {value!r}")
    lo = -math.inf if spec.min_value is None else spec.min_value
    hi = math.inf if spec.max_value is None else spec.max_value
    problem = out_of_range(value, Bound(lo, hi))
    if problem is not None:
        raise ParameterError(f"parameter '{name}' {problem}")


def widened(name: str, value: Any) -> Any:
    """`value` as the node stores it: an integer given for a double parameter becomes that double,
    and one string given for a string-list parameter becomes a list of it.

    ROS reads `-p sync_slop:=1`, `ros2 param set ... max_position_std 0` and `sync_slop: 1` in a
    params file as integers, and refuses them for a double parameter (rclcpp issue 979); the
    node takes them as the doubles meant. image_transport's own convention is one string
    parameter, `-p image_transport:=compressed`; here it is a list (one per camera, or one for
    all), and a single string means that one for all. Any other value is returned as it is, for
    validation."""
    spec = SPECS.get(name)
    if spec is None:
        return value
    if isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(spec.default, list) and isinstance(value, str):
        return [value]
    return value


def flag_threshold(value: float, suggested: float | None, fallback: float) -> tuple[float, str]:
    """The threshold in force for a `max_position_std` / `max_rotation_std` parameter `value`, and
    where it comes from: the value itself when set (> 0), else the bundle's `suggested` one, else
    `fallback`. (0 would flag every pose, which no robot wants, so it means "not set", as 0 does
    for `mc_samples`.)"""
    if value > 0:
        return value, "parameter"
    if suggested is not None:
        return suggested, "the bundle's"
    return fallback, "default"


def inflation_in_force(value: float, suggested: float | None) -> tuple[float, str]:
    """The covariance inflation in force for parameter `covariance_inflation` = `value`, and where
    it comes from: the value itself when set (>= 1), else (0) the bundle's `suggested` one, else 1,
    each pose's own covariance (a bundle exported without an evaluation of its error correlation)."""
    if value >= 1:
        return value, "parameter"
    if suggested is not None:
        return suggested, "the bundle's"
    return 1.0, "default"


def bundle_flag_threshold(
    suggested: UncertainFlag | None, name: str, value: float = 0.0
) -> tuple[float, str]:
    """`flag_threshold` of parameter `name` (`max_position_std` / `max_rotation_std`) set to
    `value`, for a bundle whose suggested thresholds are `suggested` (its `uncertain_flag`)."""
    bundle_value = suggested.to_json()[name] if suggested is not None else None
    return flag_threshold(value, bundle_value, FLAG_FALLBACKS[name])


def bundle_flag_thresholds(suggested: UncertainFlag | None) -> tuple[float, float]:
    """(max_position_std m, max_rotation_std rad) in force while both parameters are 0 (unset)."""
    return (
        bundle_flag_threshold(suggested, "max_position_std")[0],
        bundle_flag_threshold(suggested, "max_rotation_std")[0],
    )
