"""Model bundles: the directory a trained model ships in, and THE image preprocessing (ROS-free, no torch).

A bundle (written by ``pose-train export``) is a directory::

    BUNDLE/model.onnx    the graph: images uint8 [T, H, W, 3] + dropout_mask float32 [S, D]
                         -> translation [S, 3] (metres, map frame), rotation [S, 4] (xyzw, unit, w >= 0)
                         and, when bundle.yaml says model.variance_head: true, log_variance [S, 6]
                         (x, y, z, rot-x, rot-y, rot-z; ln m^2 and ln rad^2)
    BUNDLE/bundle.yaml   what the robot needs to feed it and to interpret its outputs (this module)
    BUNDLE/model.pt      the same weights as a PyTorch state dict (the reference `TorchEngine` only)
    BUNDLE/engines/      TensorRT plans, cached by GPU name, TensorRT version and precision

Conventions:

* Cameras are in bundle order (the training rig's order); ``images[k]`` comes from camera ``k``'s
  topic ``/<name>/image_raw`` at that camera's size (``BundleCamera.width`` x ``height``).
* Images are RGB ``uint8``; the graph does the rest (``/ 255``, ImageNet mean/std, NHWC -> NCHW).
* Resizing happens in exactly one place, :func:`preprocess`, shared by every engine; it does
  what training's ``read_image_rgb`` does, so the network sees the pixels it was trained on.
* A ``dropout_mask`` of ones gives the deterministic prediction; S random masks (see
  :func:`pose_regressor.uncertainty.dropout_masks`) give S Monte-Carlo samples from one backbone pass.
* The S axis of ``dropout_mask`` and the outputs is the graph's only dynamic axis.
* ``covariance_scale`` is one number (both axis groups) or ``{position: p, rotation: r}``, optionally
  with ``<group>_exponent`` and ``<group>_reference_std``: a calibrated std that grows as a power of
  the raw one (:class:`pose_regressor.uncertainty.CovarianceScale`).
* ``uncertain_flag`` (optional): the ``max_position_std`` (m) and ``max_rotation_std`` (rad) that
  ``pose-train eval-checkpoint`` suggested for this model; the node uses them unless its
  parameters of those names are set.
* ``distance_prior`` (optional): ``{variance_per_squared_distance: k, file: train_positions.npy,
  positions: N}``; BUNDLE/train_positions.npy holds the N training positions (float64 [N, 3]), and
  each position axis' raw variance gains k d^2, d the distance to the nearest of them
  (:class:`pose_regressor.distance_prior.DistancePrior`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from numpy.typing import NDArray

from pose_regressor.bounds import Bound, is_number, out_of_range, shown
from pose_regressor.distance_prior import (
    MAX_TRAINING_POSITIONS,
    MAX_VARIANCE_PER_SQUARED_DISTANCE,
    DistancePrior,
)
from pose_regressor.files import MAX_YAML_BYTES, atomic_write_text, read_yaml
from pose_regressor.limits import MAX_COVARIANCE_INFLATION, MAX_MC_SAMPLES
from pose_regressor.uncertainty import (
    MAX_COVARIANCE_EXPONENT,
    MIN_COVARIANCE_EXPONENT,
    CovarianceScale,
    mapping_problems,
)

__all__ = [
    "BUNDLE_FORMAT",
    "DROPOUT_MASK",
    "DYNAMIC_AXIS",
    "ENGINES_DIR",
    "FUSIONS",
    "GRAPH_INPUTS",
    "GRAPH_OUTPUTS",
    "IMAGES",
    "LOG_VARIANCE",
    "MAX_CAMERAS",
    "MAX_COVARIANCE_SCALE",
    "MAX_HIDDEN_DIM",
    "MAX_IMAGE_SIDE",
    "MAX_INPUT_BYTES",
    "MAX_INPUT_SIDE",
    "MAX_MC_SAMPLES",
    "MAX_YAML_BYTES",
    "ONNX_FILE",
    "PREPROCESSING",
    "ROTATION",
    "SCHEMA_VERSION",
    "TORCH_FILE",
    "TRAINING_POSITIONS_FILE",
    "TRANSLATION",
    "VARIANCE_OUTPUT",
    "YAML_FILE",
    "BundleCamera",
    "BundleError",
    "ModelBundle",
    "TensorSpec",
    "graph_outputs",
    "load_bundle",
    "parse_covariance_scale",
    "preprocess",
    "write_bundle",
    "write_training_positions",
]

SCHEMA_VERSION = 1
BUNDLE_FORMAT = "pose_regressor_bundle"
ONNX_FILE = "model.onnx"
TRAINING_POSITIONS_FILE = "train_positions.npy"  # of a distance_prior
YAML_FILE = "bundle.yaml"
TORCH_FILE = "model.pt"
ENGINES_DIR = "engines"
FUSIONS = ("input", "mosaic", "late")

# Upper bounds on what a bundle.yaml may ask for: every one is allocated or computed for each camera
# set, so an absurd value must be refused when the bundle is loaded, not met as an allocation failure.
MAX_CAMERAS = 16  # T, cameras of the rig
MAX_IMAGE_SIDE = 16384  # a camera's width and height (px): the node rejects larger images too
MAX_INPUT_SIDE = 4096  # input.width and input.height (px): the network's input
MAX_INPUT_BYTES = 256 << 20  # T x input.height x input.width x 3: the `images` input of one set
MAX_HIDDEN_DIM = 16384  # D of dropout_mask [S, D]
MAX_ENSEMBLE_MEMBERS = 16  # models of one ensemble bundle (`ensemble_members`)
MAX_COVARIANCE_SCALE = 1e6  # covariance_scale is in (0, MAX_COVARIANCE_SCALE]
MAX_POSITION_STD = 1e6  # uncertain_flag.max_position_std (m) is in (0, MAX_POSITION_STD]

#: What :func:`preprocess` and the graph do to a camera image; written into every bundle.yaml.
PREPROCESSING: dict[str, str] = {
    "function": "pose_regressor.bundle.preprocess",
    "resize": "cv2.resize(image, (input.width, input.height), interpolation=cv2.INTER_AREA) whenever "
    "the size differs (shrinking or enlarging), exactly as training's read_image_rgb",
    "color": "RGB",
    "dtype": "uint8",
    "layout": "[T, H, W, 3], cameras in bundle order",
    "normalization": "inside the graph: float / 255, then (x - ImageNet mean) / ImageNet std per channel",
}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the graph. Shape letters are the bundle's sizes: T cameras, H x W the
    input size, D `hidden_dim`, and S the Monte-Carlo samples (`DYNAMIC_AXIS`, the only dynamic one)."""

    name: str
    dtype: str  # numpy dtype name
    shape: tuple[str | int, ...]

    def describe(self) -> str:
        """E.g. ``"uint8 [T, H, W, 3]"``."""
        return f"{self.dtype} [{', '.join(str(d) for d in self.shape)}]"

    def sized(self, sizes: Mapping[str, int]) -> tuple[str | int, ...]:
        """The shape with the letters in `sizes` replaced by their values (others stay symbolic)."""
        return tuple(sizes.get(d, d) if isinstance(d, str) else d for d in self.shape)


IMAGES, DROPOUT_MASK = "images", "dropout_mask"
TRANSLATION, ROTATION = "translation", "rotation"
DYNAMIC_AXIS = "S"
#: The graph's contract (what `pose-train export` writes and every engine feeds and reads).
GRAPH_INPUTS = (
    TensorSpec(IMAGES, "uint8", ("T", "H", "W", 3)),
    TensorSpec(DROPOUT_MASK, "float32", ("S", "D")),
)
GRAPH_OUTPUTS = (TensorSpec(TRANSLATION, "float32", ("S", 3)), TensorSpec(ROTATION, "float32", ("S", 4)))
LOG_VARIANCE = "log_variance"
#: The extra output of a model with a variance head (bundle.yaml: model.variance_head: true).
VARIANCE_OUTPUT = TensorSpec(LOG_VARIANCE, "float32", ("S", 6))


def graph_outputs(variance_head: bool) -> tuple[TensorSpec, ...]:
    """The graph's outputs: GRAPH_OUTPUTS, then VARIANCE_OUTPUT for a model with a variance head."""
    return (*GRAPH_OUTPUTS, VARIANCE_OUTPUT) if variance_head else GRAPH_OUTPUTS


# The ONNX ModelProto's first serialized field is ir_version (field 1, varint): tag byte 0x08.
_ONNX_FIRST_BYTE = 0x08


class BundleError(ValueError):
    """A model bundle is missing, incomplete, of another schema version or has invalid values."""


@dataclass(frozen=True)
class BundleCamera:
    """One input camera: ``topic`` carries its images at ``width`` x ``height`` pixels."""

    name: str
    topic: str
    width: int
    height: int


@dataclass(frozen=True)
class UncertainFlag:
    """Thresholds of the node's uncertain flag suggested for one model: a pose whose position std
    (m) or rotation std (rad) exceeds them is flagged. `pose-train eval-checkpoint` fits them on the
    calibration split, to flag 5% of its frames (`uncertainty_metrics.uncertain_flag_report`)."""

    max_position_std: float
    max_rotation_std: float

    def to_json(self) -> dict[str, float]:
        return {"max_position_std": self.max_position_std, "max_rotation_std": self.max_rotation_std}


@dataclass(frozen=True)
class ModelBundle:
    """The contents of bundle.yaml (validated) and where the bundle lies.

    ``input_width`` x ``input_height`` is the network's image size (H, W of the ``images`` input);
    ``hidden_dim`` is D of ``dropout_mask`` [S, D] (the head's hidden layer, after the embedding's
    F units for a model with embedding dropout: F + D); ``mc_samples`` is the default S (and the
    optimization-profile S of TensorRT plans); ``dof`` is 6, or 3 for x, y, yaw models (z fixed at
    the training mean, roll = pitch = 0); ``covariance_scale`` multiplies the covariance per axis
    group (calibrated on held-out data, 1.0 when uncalibrated; a number given here means both
    groups); ``variance_head`` (a variance head) or ``shift_variance`` (the spread of the track
    shifts): the graph also outputs ``log_variance`` [S, 6], their per-axis variance;
    ``uncertain_flag``: the flag thresholds suggested for this model (None: the node's own);
    ``ensemble_members``: K > 1 for a deep ensemble of K models in one graph (row s of the outputs
    is member s mod K's pose, with its MC-dropout mask row s, so the spread of the rows holds the
    members' disagreement): S must then be a multiple of K, and K itself when ``dropout`` is 0 (the
    members run without dropout and ``log_variance`` row s is member s's variance head;
    `samples_problem`).
    """

    path: Path
    schema_version: int
    cameras: tuple[BundleCamera, ...]
    input_width: int
    input_height: int
    preprocessing: dict[str, str]
    fusion: str
    dof: int
    dropout: float
    hidden_dim: int
    covariance_scale: CovarianceScale
    provenance: dict[str, Any]
    mc_samples: int = 32
    onnx: dict[str, Any] = field(default_factory=dict)
    variance_head: bool = False
    shift_variance: bool = False
    uncertain_flag: UncertainFlag | None = None
    ensemble_members: int = 1
    distance_prior: DistancePrior | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.covariance_scale, CovarianceScale):  # a plain number: both groups
            object.__setattr__(self, "covariance_scale", CovarianceScale.uniform(self.covariance_scale))

    @property
    def graph_outputs(self) -> tuple[TensorSpec, ...]:
        """The outputs this bundle's graph has (`graph_outputs`)."""
        return graph_outputs(self.log_variance_output)

    @property
    def log_variance_output(self) -> bool:
        """Whether the graph outputs ``log_variance`` (a variance head, the track-shift spread or both)."""
        return self.variance_head or self.shift_variance

    def samples_problem(self, samples: int) -> str | None:
        """Why `samples` (S) rows do not suit this bundle, else None (`ensemble_samples_problem`)."""
        problem = ensemble_samples_problem(self.ensemble_members, samples, self.dropout == 0)
        return None if problem is None else f"{problem} (the bundle's mc_samples: {self.mc_samples})"

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE

    @property
    def torch_path(self) -> Path:
        return self.path / TORCH_FILE

    @property
    def yaml_path(self) -> Path:
        return self.path / YAML_FILE

    @property
    def engines_dir(self) -> Path:
        return self.path / ENGINES_DIR

    @property
    def camera_names(self) -> list[str]:
        return [c.name for c in self.cameras]

    @property
    def num_cameras(self) -> int:
        return len(self.cameras)

    @property
    def length_unit(self) -> str:
        """What the model's positions are in: "m", or "units" where it was trained on a folder
        imported without a metric scale (`provenance.dataset.length_unit`, written by export)."""
        dataset = self.provenance.get("dataset")
        return "units" if isinstance(dataset, dict) and dataset.get("length_unit") == "units" else "m"

    def units_warning(self) -> str | None:
        """One line for whoever loads a bundle whose positions are not metres, else None."""
        if self.length_unit == "m":
            return None
        return (
            f"bundle {self.path} was trained on positions in its input's own units, not metres (an "
            "import without --scale); ROS and everything downstream (robot_localization, Nav2, tf2) "
            "read them as metres: re-import with --scale or --scale-from, retrain and export"
        )

    @property
    def images_shape(self) -> tuple[int, int, int, int]:
        """Shape of the graph's ``images`` input: (T, H, W, 3)."""
        return (len(self.cameras), self.input_height, self.input_width, 3)

    def to_yaml_dict(self) -> dict[str, Any]:
        """The bundle.yaml mapping (``path`` is where it lies, not part of it)."""
        return {
            "format": BUNDLE_FORMAT,
            "schema_version": self.schema_version,
            "cameras": [
                {"name": c.name, "topic": c.topic, "width": c.width, "height": c.height} for c in self.cameras
            ],
            "input": {"width": self.input_width, "height": self.input_height},
            "preprocessing": dict(self.preprocessing),
            "model": {
                "fusion": self.fusion,
                "dof": self.dof,
                "dropout": self.dropout,
                "hidden_dim": self.hidden_dim,
                "mc_samples": self.mc_samples,
                # written only when on: bundles without the head keep their exact bundle.yaml
                **({"variance_head": True} if self.variance_head else {}),
                **({"shift_variance": True} if self.shift_variance else {}),
                **({"ensemble_members": self.ensemble_members} if self.ensemble_members > 1 else {}),
            },
            "covariance_scale": self.covariance_scale.to_json(),
            # written only when known: bundles exported without suggestions keep their bundle.yaml
            **({"uncertain_flag": self.uncertain_flag.to_json()} if self.uncertain_flag else {}),
            **(
                {
                    "distance_prior": {
                        "variance_per_squared_distance": self.distance_prior.k,
                        "file": TRAINING_POSITIONS_FILE,
                        "positions": len(self.distance_prior.positions),
                    }
                }
                if self.distance_prior is not None
                else {}
            ),
            "onnx": dict(self.onnx),
            "provenance": dict(self.provenance),
        }


def _error_correlation(provenance: dict[str, Any]) -> tuple[float, dict[str, Any]] | str | None:
    """(suggested inflation, the error_correlation block), or why the block gives none (a str),
    or None for a bundle without one. Provenance is free-form: a hand edit may put anything there."""
    metrics = provenance.get("eval_metrics")
    correlation = metrics.get("error_correlation") if isinstance(metrics, dict) else None
    if correlation is None:
        return None
    if not isinstance(correlation, dict):
        return f"its error_correlation is a {type(correlation).__name__}, not a mapping"
    value: Any = correlation.get("suggested_covariance_inflation")
    # what the node's covariance_inflation accepts: anything else is no suggestion to act on
    if value is None:
        return None  # an evaluation too short to measure it (null)
    if not is_number(value) or not 1.0 <= value <= MAX_COVARIANCE_INFLATION:
        return (
            f"its suggested_covariance_inflation {shown(value)} is not a number from 1 to "
            f"{MAX_COVARIANCE_INFLATION:g}"
        )
    return float(value), correlation


def suggested_inflation(provenance: dict[str, Any]) -> float | None:
    """The covariance inflation the bundle's evaluation suggests for an EKF that fuses every pose
    (`provenance.eval_metrics.error_correlation.suggested_covariance_inflation`), or None."""
    found = _error_correlation(provenance)
    return found[0] if isinstance(found, tuple) else None


def inflation_problem(provenance: dict[str, Any]) -> str | None:
    """Why the bundle's error_correlation suggests no usable inflation (a hand-edited bundle), or
    None when it suggests one or has none."""
    found = _error_correlation(provenance)
    return found if isinstance(found, str) else None


def inflation_line(provenance: dict[str, Any]) -> str | None:
    """What the bundle's evaluation found on how alike successive poses' errors are, as one line
    (export's output, the node's configure log), or None for a bundle exported without it."""
    found = _error_correlation(provenance)
    if not isinstance(found, tuple):
        return None
    inflation, correlation = found
    seconds = correlation.get("seconds")
    span = f"{float(seconds):.2f} s" if isinstance(seconds, (int, float)) else "several poses"
    truncated = bool(correlation.get("truncated"))
    return (
        f"successive poses err alike over {'at least ' if truncated else ''}{span} (the evaluation's "
        "error_correlation): an EKF fusing every pose at the evaluated rate needs covariance_inflation "
        f"{inflation:.3g}{' or more' if truncated else ''}"
    )


def ensemble_samples_problem(members: int, samples: int, without_dropout: bool = False) -> str | None:
    """Why S = `samples` rows do not suit an ensemble of `members` models, else None: row s goes to
    member s mod K, so every member gets as many only when S is a multiple of K. Members without
    dropout (`without_dropout`, pose-train export --ensemble-covariance heads) give the same row
    every time, so S must be K: repeated rows would only shrink the sample covariance's
    between-member part (it divides by S - 1)."""
    if members > 1 and without_dropout and samples != members:
        return (
            f"{samples} samples for an ensemble of {members} models without dropout; each gives one "
            f"pose, so use {members}"
        )
    if members > 1 and (samples < members or samples % members):
        return (
            f"{samples} samples for an ensemble of {members} models; the samples go to the members "
            f"in turn, so use a multiple of {members}"
        )
    return None


# ------------------------------------------------------------------------------------ writing
def write_bundle(bundle: ModelBundle) -> Path:
    """Write ``bundle.yaml`` into ``bundle.path`` atomically (temporary file + rename); returns its path.

    The directory must exist; model.onnx is written by the exporter, not here.
    """
    if not bundle.path.is_dir():
        raise BundleError(f"bundle directory {bundle.path} does not exist")
    target = bundle.yaml_path
    data = _plain(bundle.to_yaml_dict())
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=110, allow_unicode=True)
    atomic_write_text(target, text)
    return target


def write_training_positions(directory: Path, prior: DistancePrior) -> Path:
    """Write a distance prior's positions as ``train_positions.npy`` into a bundle directory."""
    target = directory / TRAINING_POSITIONS_FILE
    np.save(target, np.asarray(prior.positions, dtype=np.float64), allow_pickle=False)
    return target


def _plain(value: Any) -> Any:
    """`value` as YAML-safe builtins: mappings and sequences recursively, subclasses of str, int,
    float and bool (version strings, np.float64) and numpy scalars as the builtin, else its str."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return _plain(value.item())
    if value is None:
        return None
    for kind in (bool, str, int, float):
        if isinstance(value, kind):
            return kind(value)
    return str(value)


# ------------------------------------------------------------------------------------ loading
def load_bundle(path: str | Path) -> ModelBundle:
    """Read and validate a bundle directory (``yaml.safe_load`` only).

    Checks that bundle.yaml exists, is of :data:`SCHEMA_VERSION` and has valid values, and that
    model.onnx exists and looks like an ONNX file (cheap: size and first byte; the engine parses it).

    Raises:
        BundleError: with one message naming the bundle and the problem.
    """
    root = Path(path)
    if not root.exists():
        raise BundleError(f"model bundle {root} does not exist")
    if not root.is_dir():
        raise BundleError(f"model bundle {root} is not a directory")
    yaml_path = root / YAML_FILE
    if not yaml_path.is_file():
        raise BundleError(
            f"{root} has no {YAML_FILE}: not a model bundle (create one with pose-train export)"
        )
    try:
        size = yaml_path.stat().st_size
    except OSError as exc:
        raise BundleError(f"cannot read {yaml_path}: {exc.strerror or exc}") from None
    if size > MAX_YAML_BYTES:
        raise BundleError(f"{yaml_path} has {size} bytes; a {YAML_FILE} may have at most {MAX_YAML_BYTES}")
    data = read_yaml(yaml_path, "", BundleError)
    if not isinstance(data, dict):
        raise BundleError(f"{yaml_path} must hold a mapping, got {type(data).__name__}")
    if data.get("format", BUNDLE_FORMAT) != BUNDLE_FORMAT:
        raise BundleError(f"{yaml_path}: format is {shown(data.get('format'))}, expected {BUNDLE_FORMAT!r}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise BundleError(
            f"{yaml_path}: bundle schema version {shown(version)} is not supported (this pose_regressor "
            f"reads version {SCHEMA_VERSION}); re-export the model with a matching pose-train"
        )
    try:
        bundle = _bundle_from_mapping(root, data)
    except BundleError as exc:
        raise BundleError(f"{yaml_path}: {exc}") from None
    _check_onnx_file(bundle)
    return bundle


def _check_onnx_file(bundle: ModelBundle) -> None:
    onnx_path = bundle.onnx_path
    if not onnx_path.is_file():
        raise BundleError(f"{bundle.path} has no {ONNX_FILE}")
    size = onnx_path.stat().st_size
    if size == 0:
        raise BundleError(f"{onnx_path} is empty (an interrupted export or copy?)")
    expected = bundle.onnx.get("bytes")
    if isinstance(expected, int) and not isinstance(expected, bool) and size != expected:
        raise BundleError(
            f"{onnx_path} has {size} bytes, bundle.yaml records {expected}: truncated or replaced; "
            "copy the bundle again or re-export it"
        )
    with onnx_path.open("rb") as handle:
        first = handle.read(1)
    if first[0] != _ONNX_FIRST_BYTE:
        raise BundleError(f"{onnx_path} is not an ONNX model (unexpected header byte 0x{first[0]:02x})")


def _bundle_from_mapping(root: Path, data: dict[str, Any]) -> ModelBundle:
    cameras = _cameras(data.get("cameras"))
    image = _mapping(data, "input")
    model = _mapping(data, "model")
    preprocessing = _mapping(data, "preprocessing")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in preprocessing.items()):
        raise BundleError("preprocessing must map names to strings")
    fusion = model.get("fusion")
    if fusion not in FUSIONS:
        raise BundleError(f"model.fusion must be one of {', '.join(FUSIONS)}, got {shown(fusion)}")
    dof = _int(model, "dof", "model.dof", Bound(3, 6))
    if dof not in (3, 6):
        raise BundleError(f"model.dof must be 6 or 3, got {dof}")
    dropout = _float(model, "dropout", "model.dropout", Bound(0.0, 1.0, hi_open=True))
    scale = parse_covariance_scale(data.get("covariance_scale"))
    flag = uncertain_flag(data["uncertain_flag"]) if "uncertain_flag" in data else None
    prior = _distance_prior(root, data["distance_prior"]) if "distance_prior" in data else None
    variance_head = model.get("variance_head", False)
    if not isinstance(variance_head, bool):
        raise BundleError(f"model.variance_head must be true or false, got {shown(variance_head)}")
    shift_variance = model.get("shift_variance", False)
    if not isinstance(shift_variance, bool):
        raise BundleError(f"model.shift_variance must be true or false, got {shown(shift_variance)}")
    members = 1
    if "ensemble_members" in model:
        members = _int(model, "ensemble_members", "model.ensemble_members", Bound(2, MAX_ENSEMBLE_MEMBERS))
    input_width = _int(image, "width", "input.width", Bound(1, MAX_INPUT_SIDE))
    input_height = _int(image, "height", "input.height", Bound(1, MAX_INPUT_SIDE))
    input_bytes = len(cameras) * input_width * input_height * 3
    if input_bytes > MAX_INPUT_BYTES:
        raise BundleError(
            f"the images input ({len(cameras)} cameras x {input_height} x {input_width} x 3) would take "
            f"{input_bytes} bytes per camera set; at most {MAX_INPUT_BYTES} bytes"
        )
    onnx = data.get("onnx", {})
    provenance = data.get("provenance", {})
    if not isinstance(onnx, dict) or not isinstance(provenance, dict):
        raise BundleError("onnx and provenance must be mappings")
    if "file" in onnx:
        _check_model_file(onnx["file"])
    bundle = ModelBundle(
        path=root,
        schema_version=SCHEMA_VERSION,
        cameras=cameras,
        input_width=input_width,
        input_height=input_height,
        preprocessing=dict(preprocessing),
        fusion=str(fusion),
        dof=dof,
        dropout=dropout,
        hidden_dim=_int(model, "hidden_dim", "model.hidden_dim", Bound(1, MAX_HIDDEN_DIM)),
        covariance_scale=scale,
        provenance=provenance,
        mc_samples=(
            _int(model, "mc_samples", "model.mc_samples", Bound(1, MAX_MC_SAMPLES))
            if "mc_samples" in model
            else 32
        ),
        onnx=onnx,
        variance_head=variance_head,
        shift_variance=shift_variance,
        uncertain_flag=flag,
        ensemble_members=members,
        distance_prior=prior,
    )
    problem = bundle.samples_problem(bundle.mc_samples)
    if problem is not None:
        raise BundleError(f"model.mc_samples: {problem}")
    return bundle


def uncertain_flag(value: Any) -> UncertainFlag:
    """`uncertain_flag`: exactly ``{max_position_std: m, max_rotation_std: rad}``, each positive
    (the position at most 10⁶ m, the rotation at most π rad); raises `BundleError` naming the key."""
    keys = {"max_position_std", "max_rotation_std"}
    if not isinstance(value, dict) or set(value) != keys:
        got = shown(sorted(str(k) for k in value)) if isinstance(value, dict) else shown(value)
        raise BundleError(
            f"uncertain_flag must be a mapping of exactly max_position_std and max_rotation_std, got {got}"
        )
    position = Bound(0.0, MAX_POSITION_STD, lo_open=True)
    rotation = Bound(0.0, math.pi, lo_open=True)
    return UncertainFlag(
        _float(value, "max_position_std", "uncertain_flag.max_position_std", position),
        _float(value, "max_rotation_std", "uncertain_flag.max_rotation_std", rotation),
    )


def _distance_prior(root: Path, value: Any) -> DistancePrior:
    """`distance_prior`: exactly ``{variance_per_squared_distance, file, positions}``, the file
    train_positions.npy in the bundle, a plain float array of that many rows of 3."""
    keys = {"variance_per_squared_distance", "file", "positions"}
    if not isinstance(value, dict) or set(value) != keys:
        got = sorted(map(str, value)) if isinstance(value, dict) else type(value).__name__
        raise BundleError(f"distance_prior must be a mapping of exactly {', '.join(sorted(keys))}, got {got}")
    if value["file"] != TRAINING_POSITIONS_FILE:
        raise BundleError(
            f"distance_prior.file must be {TRAINING_POSITIONS_FILE}, got {shown(value['file'])}"
        )
    count = _int(value, "positions", "distance_prior.positions", Bound(1, MAX_TRAINING_POSITIONS))
    k = _float(
        value,
        "variance_per_squared_distance",
        "distance_prior.variance_per_squared_distance",
        Bound(0.0, MAX_VARIANCE_PER_SQUARED_DISTANCE, lo_open=True),
    )
    path = root / TRAINING_POSITIONS_FILE
    if not path.is_file():
        raise BundleError(f"distance_prior: {path} does not exist (copy the whole bundle directory)")
    if path.stat().st_size > 1024 + count * 3 * 8:
        raise BundleError(f"distance_prior: {path} is larger than {count} positions")
    try:
        positions = np.load(path)  # numpy's default refuses pickled (object) arrays
    except (OSError, ValueError) as exc:
        raise BundleError(f"distance_prior: cannot read {path}: {exc}") from None
    if positions.dtype.kind != "f" or positions.shape != (count, 3):
        raise BundleError(
            f"distance_prior: {path} must hold float positions of shape ({count}, 3), got "
            f"{positions.dtype} {positions.shape}"
        )
    try:
        return DistancePrior(positions, k)
    except ValueError as exc:
        raise BundleError(f"distance_prior: {path}: {exc}") from None


def parse_covariance_scale(value: Any) -> CovarianceScale:
    """bundle.yaml's `covariance_scale` (BundleError naming the key that is wrong): one number for
    both axis groups, ``{position: p, rotation: r}``, or that with each group's
    ``<group>_exponent`` and ``<group>_reference_std`` (`CovarianceScale`)."""
    bound = Bound(0.0, MAX_COVARIANCE_SCALE, lo_open=True)
    if isinstance(value, dict):
        problems = mapping_problems(value)
        if problems:
            raise BundleError(problems[0])
        exponent = Bound(MIN_COVARIANCE_EXPONENT, MAX_COVARIANCE_EXPONENT)
        reference = {
            "position": Bound(0.0, MAX_POSITION_STD, lo_open=True),
            "rotation": Bound(0.0, math.pi, lo_open=True),
        }
        fields = {}
        for key in value:
            group = str(key).split("_")[0]
            if key in ("position", "rotation"):
                fields[key] = _float(value, key, f"covariance_scale.{key}", bound)
            elif str(key).endswith("_exponent"):
                fields[key] = _float(value, key, f"covariance_scale.{key}", exponent)
            else:
                fields[key] = _float(value, key, f"covariance_scale.{key}", reference[group])
        return CovarianceScale(**fields)
    return CovarianceScale.uniform(_float({"v": value}, "v", "covariance_scale", bound))


def _check_model_file(name: Any) -> None:
    """`onnx.file` must name model.onnx inside the bundle: a bundle.yaml (which may come from
    anywhere) never makes the loader or an engine read a file outside the bundle directory.
    (Lexical check: a model.onnx that is a symbolic link, e.g. into a shared cache, stays allowed.)"""
    if not isinstance(name, str) or not name:
        raise BundleError(f"onnx.file must be a file name, got {shown(name)}")
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts or "\\" in name or "\0" in name:
        raise BundleError(
            f"onnx.file {shown(name)} points outside the bundle directory; the model must be {ONNX_FILE} "
            "inside the bundle"
        )
    if relative != Path(ONNX_FILE):
        raise BundleError(
            f"onnx.file is {shown(name)}, but schema version {SCHEMA_VERSION} bundles keep the model in "
            f"{ONNX_FILE}"
        )


def _cameras(value: Any) -> tuple[BundleCamera, ...]:
    if not isinstance(value, list) or not value:
        raise BundleError(f"cameras must be a non-empty list, got {shown(value)}")
    if len(value) > MAX_CAMERAS:
        raise BundleError(f"cameras may list at most {MAX_CAMERAS} cameras, got {len(value)}")
    cameras = []
    for i, entry in enumerate(value):
        where = f"cameras[{i}]"
        if not isinstance(entry, dict):
            raise BundleError(f"{where} must be a mapping, got {shown(entry)}")
        name = entry.get("name")
        if not isinstance(name, str) or not name or "/" in name:
            raise BundleError(f"{where}.name must be a non-empty string without '/', got {shown(name)}")
        topic = entry.get("topic", f"/{name}/image_raw")
        if not isinstance(topic, str) or not topic.startswith("/"):
            raise BundleError(f"{where}.topic must be an absolute topic name, got {shown(topic)}")
        width = _int(entry, "width", f"{where}.width", Bound(1, MAX_IMAGE_SIDE))
        height = _int(entry, "height", f"{where}.height", Bound(1, MAX_IMAGE_SIDE))
        cameras.append(BundleCamera(name, topic, width, height))
    names = [c.name for c in cameras]
    if len(set(names)) != len(names):
        raise BundleError(f"camera names must be unique, got {names}")
    return tuple(cameras)


def _mapping(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise BundleError(f"{key} must be a mapping, got {shown(value)}")
    return value


def _int(data: Mapping[str, Any], key: str, where: str, bound: Bound) -> int:
    value = data.get(key)
    if not is_number(value) or not isinstance(value, int):
        raise BundleError(f"{where} must be an integer, got {shown(value)}")
    problem = out_of_range(value, bound)
    if problem:
        raise BundleError(f"{where} {problem}")
    return value


def _float(data: Mapping[str, Any], key: str, where: str, bound: Bound) -> float:
    value = data.get(key)
    if not is_number(value):
        raise BundleError(f"{where} must be a finite number, got {shown(value)}")
    assert isinstance(value, int | float)  # is_number, for the type checker
    problem = out_of_range(value, bound)
    if problem:
        raise BundleError(f"{where} {problem}")
    return float(value)


# ------------------------------------------------------------------------------ preprocessing
def preprocess(
    images: Sequence[NDArray[np.uint8]],
    bundle: ModelBundle,
    out: NDArray[np.uint8] | None = None,
) -> NDArray[np.uint8]:
    """THE preprocessing shared by all engines: T RGB images -> the graph's ``images`` input [T, H, W, 3].

    ``images[k]`` is camera ``k``'s RGB ``uint8`` image ``(h, w, 3)`` of any size (bundle order).
    Each is resized to (``bundle.input_width``, ``bundle.input_height``) with ``cv2.INTER_AREA``
    whenever its size differs, shrinking or enlarging, which is exactly what training's
    ``read_image_rgb`` does (resizing is per channel, so BGR there and RGB here give the same
    pixels); images already at the input size are copied unchanged. Normalization happens inside
    the graph. ``out``, a C-contiguous ``uint8`` array of the result's shape, is filled and
    returned instead of a new array (no allocation per frame).

    Raises:
        ValueError: wrong number of images, or an image that is not ``uint8`` ``(h, w, 3)``.
    """
    shape = bundle.images_shape
    if len(images) != shape[0]:
        raise ValueError(
            f"expected {shape[0]} images (cameras {', '.join(bundle.camera_names)}), got {len(images)}"
        )
    if out is None:
        out = np.empty(shape, dtype=np.uint8)
    elif out.shape != shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be a C-contiguous uint8 array of shape {shape}, got {out.dtype} {out.shape}"
        )
    for k, (image, camera) in enumerate(zip(images, bundle.cameras, strict=True)):
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            kind = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"image of camera {camera.name!r} must be a uint8 array, got {kind}")
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(
                f"image of camera {camera.name!r} must be RGB (h, w, 3), got shape {image.shape}"
            )
        out[k] = resize_to_input(image, bundle)
    return out


def resize_to_input(image: NDArray[np.uint8], bundle: ModelBundle) -> NDArray[np.uint8]:
    """One RGB image at the bundle's input size (``cv2.INTER_AREA``; unchanged when already there).

    `preprocess` uses it for every camera; the node also calls it as each image arrives, so that
    only the last image of a set is resized after the set completes.
    """
    size = (bundle.input_width, bundle.input_height)
    if (image.shape[1], image.shape[0]) == size:
        return image
    resized = cv2.resize(np.ascontiguousarray(image), size, interpolation=cv2.INTER_AREA)
    return np.asarray(resized, dtype=np.uint8)
