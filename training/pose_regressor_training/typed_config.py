"""Typed configuration from YAML: nested frozen dataclasses, unknown keys are errors.

`from_mapping(cls, data, bounds=...)` builds a dataclass from a mapping, checking every key
against the dataclass fields (with the dotted path in the error message), coercing YAML scalars to
the annotated types and checking numbers against their `Bound` (keyed by dotted path);
`apply_overrides(data, ["optim.lr=3e-4", ...])` edits the raw mapping first, parsing each value as
YAML (config files are read with `pose_regressor.files.read_yaml`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import yaml

from pose_regressor.bounds import Bound, is_number, out_of_range
from pose_regressor.files import MAX_YAML_DEPTH, load_yaml, nesting_depth, yaml_problem

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names its dotted path."""


def check_bound(path: str, value: Any, bounds: Mapping[str, Bound]) -> None:
    """Raises `ConfigError` naming `path`, its range and `value` when a number is out of range.

    Values that are not numbers (or lists of numbers) are left to the type checks; a mapping
    (e.g. ``loss.params``) has each of its entries checked under ``path.key``.
    """
    if isinstance(value, Mapping):
        for key, item in value.items():
            check_bound(f"{path}.{key}", item, bounds)
        return
    bound = bounds.get(path)
    if bound is None:
        return
    if isinstance(value, list | tuple):
        if len(value) > bound.max_items:
            raise ConfigError(f"{path} may have at most {bound.max_items} values, got {len(value)}")
        for item in value:
            _check_number(path, item, bound)
        return
    _check_number(path, value, bound)


def _check_number(path: str, value: Any, bound: Bound) -> None:
    problem = out_of_range(value, bound) if is_number(value) else None  # other types: `_coerce`
    if problem is not None:
        raise ConfigError(f"{path} {problem}")


def check_bounds(obj: Any, bounds: Mapping[str, Bound], path: str = "") -> None:
    """`check_bound` on every field of the dataclass `obj`, recursively (dotted paths from `path`)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        where = f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_bounds(value, bounds, where)
        else:
            check_bound(where, value, bounds)


def _coerce(value: Any, annotation: Any, path: str, bounds: Mapping[str, Bound]) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return from_mapping(annotation, value, path, bounds)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path, bounds)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{path}: invalid value {value!r}")
    if origin is tuple:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{path}[{i}]", bounds) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} values, got {len(value)}")
        return tuple(
            _coerce(v, a, f"{path}[{i}]", bounds) for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin is dict or annotation is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported annotation {annotation!r}")


def from_mapping(
    cls: type[T], data: Mapping[str, Any], path: str = "", bounds: Mapping[str, Bound] | None = None
) -> T:
    """Builds dataclass `cls` from `data`; missing keys take their defaults.

    `bounds` maps dotted paths (from the top of the config: ``optim.lr``, ``loss.params.beta``) to
    the ranges their values must lie in; each given value is checked right after its type, before
    the dataclass's own checks, so the message names the key, the range and the value.
    """
    bounds = bounds or {}
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(str(key) for key in data if key not in fields)
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(where + k for k in unknown)}; "
            f"valid keys{' under ' + path if path else ''}: {', '.join(fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        where = f"{path}.{name}" if path else name
        kwargs[name] = _coerce(value, hints[name], where, bounds)
        check_bound(where, kwargs[name], bounds)
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Returns a copy of `data` with `a.b.c=value` overrides applied (values parsed as YAML)."""
    result: dict[str, Any] = yaml.safe_load(yaml.safe_dump(data)) or {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
            node = child
        try:
            node[parts[-1]] = load_yaml(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {key}: the value is not valid YAML: {yaml_problem(exc)}") from None
        except RecursionError:
            raise ConfigError(f"override {key}: the value is nested too deeply") from None
        if nesting_depth(result) > MAX_YAML_DEPTH:
            raise ConfigError(
                f"override {key}: the value is nested too deeply (at most {MAX_YAML_DEPTH} levels)"
            )
    return result


def to_mapping(obj: Any) -> dict[str, Any]:
    """A dataclass as plain YAML-safe data (tuples become lists)."""
    converted: dict[str, Any] = yaml.safe_load(yaml.safe_dump(_plain(dataclasses.asdict(obj))))
    return converted


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
