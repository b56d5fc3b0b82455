"""The loss registry: every loss by its config name, built from a plain mapping of parameters.

A config names a loss and gives its parameters, e.g. ``{"name": "relative", "params": {"tuple_length": 3}}``;
``build_loss(name, params, camera)`` checks the keys and value types against the loss's frozen parameter
dataclass (lists become tuples, ints become floats where a float is expected) and constructs it.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, Literal

from pose_regressor_training.losses.absolute import CoupledLoss, HomoscedasticLoss, PoseNetLoss
from pose_regressor_training.losses.base import CameraSpec, PoseLoss
from pose_regressor_training.losses.relative import GeometricConsistencyLoss, RelativeLoss
from pose_regressor_training.losses.reprojection import ReprojectionLoss
from pose_regressor_training.losses.siamese import SiameseMetricLoss

#: Loss classes by config name.
LOSSES: dict[str, type[PoseLoss]] = {
    cls.name: cls
    for cls in (
        PoseNetLoss,
        HomoscedasticLoss,
        RelativeLoss,
        GeometricConsistencyLoss,
        CoupledLoss,
        ReprojectionLoss,
        SiameseMetricLoss,
    )
}


def loss_class(name: str) -> type[PoseLoss]:
    """The class registered as ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return LOSSES[name]
    except KeyError:
        # from None: the KeyError adds nothing to the one-line message
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}") from None


def parse_params(name: str, params: Mapping[str, Any] | None = None) -> Any:
    """The parameter dataclass of loss ``name`` built from ``params`` (defaults for missing keys).

    Raises ``ValueError`` naming the loss, the key and the valid keys on an unknown key, and naming the
    key and expected type on a value of the wrong type.
    """
    params_type = loss_class(name).params_type
    fields = {f.name for f in dataclasses.fields(params_type)}
    hints = typing.get_type_hints(params_type)
    values: dict[str, Any] = {}
    for key, value in (params or {}).items():
        if key not in fields:
            raise ValueError(
                f"{name} loss: unknown parameter {key!r}; valid parameters: {', '.join(sorted(fields))}"
            )
        values[key] = _coerce(name, key, value, hints[key])
    return params_type(**values)


def build_loss(
    name: str, params: Mapping[str, Any] | None = None, camera: CameraSpec | None = None
) -> PoseLoss:
    """Construct loss ``name`` with ``params``; ``camera`` (the reference camera) is needed by
    ``reprojection`` only and ignored by the others. Learned weights are ``nn.Parameter`` of the returned
    module."""
    return loss_class(name).from_params(parse_params(name, params), camera)


def required_tuple_length(name: str, params: Mapping[str, Any] | None = None) -> int:
    """Frames ``K`` per sample the data pipeline must provide: 1 for ``posenet``, ``homoscedastic``,
    ``coupled``, ``reprojection``; ``tuple_length`` (default 3) for ``relative``; 2 for
    ``geometric_consistency`` and ``siamese_metric``."""
    return loss_class(name).tuple_length(parse_params(name, params))


def _coerce(loss: str, key: str, value: Any, hint: Any) -> Any:
    """``value`` converted to the annotated type ``hint`` or a ``ValueError``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    ok = True
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        # bool is an int subclass: a YAML `true` must not pass as 1
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    elif origin is Literal:
        ok = isinstance(value, str | int) and value in args
    elif origin is tuple:
        homogeneous = len(args) == 2 and args[1] is Ellipsis
        ok = isinstance(value, list | tuple) and (homogeneous or len(value) == len(args))
        if ok:
            items = args[:1] * len(value) if homogeneous else args
            value = tuple(_coerce(loss, key, v, h) for v, h in zip(value, items, strict=True))
    if not ok:
        expected = f"one of {list(args)}" if origin is Literal else getattr(hint, "__name__", str(hint))
        if origin is tuple:
            expected = str(hint)
        raise ValueError(f"{loss} loss: parameter {key!r} must be {expected}, got {value!r}")
    return value
