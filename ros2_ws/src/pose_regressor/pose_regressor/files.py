"""Reading YAML and writing files safely, for every tool of both packages.

`read_yaml` turns every way a YAML file can be bad into one line naming the file, raised as the
caller's own error type; `load_yaml` is the parser both use; `atomic_write_bytes` /
`atomic_write_text` leave either the old file or the whole new one, never a part; `json_text` is
JSON that strict readers accept.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

#: Largest YAML file read (bytes): configs, dataset files, rigs and bundle.yaml are a few kB.
MAX_YAML_BYTES = 1 << 20
#: Deepest nesting of mappings and lists accepted; deeper documents are refused before they can
#: exhaust the stack of the code that walks them.
MAX_YAML_DEPTH = 10


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, also reading `1e-4` as a number.

    PyYAML follows YAML 1.1, whose floats need a dot (`1.0e-4`), so `lr: 1e-4` or `optim.lr=1e-4`
    would arrive as the text '1e-4'; YAML 1.2, ROS 2's parameter files and every user write it
    without one.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def load_yaml(text: str) -> Any:
    """`text` as YAML: ``yaml.safe_load``, with `1e-4` read as a number (see `_Loader`)."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: no arbitrary objects


class YamlFileError(ValueError):
    """A YAML file that cannot be used, as one line naming the file."""


def read_yaml(
    path: Path,
    what: str,
    error: type[Exception] = YamlFileError,
    *,
    max_bytes: int = MAX_YAML_BYTES,
    max_depth: int = MAX_YAML_DEPTH,
) -> Any:
    """The YAML document in `path` (`load_yaml`).

    Raises:
        error: one line ``"<what> <path> ..."`` if the file is missing or unreadable, larger than
            `max_bytes`, not UTF-8, not valid YAML or nested deeper than `max_depth`.
    """
    name = f"{what} {path}" if what else str(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise error(f"{name} has {size} bytes; at most {max_bytes} are read")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {name}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{name} is not UTF-8 text (at byte {exc.start}: {exc.reason})") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise error(f"{name} is not valid YAML: {yaml_problem(exc)}") from None
    except RecursionError:
        raise error(f"{name} is nested too deeply (at most {max_depth} levels)") from None
    if nesting_depth(data, max_depth) > max_depth:
        raise error(f"{name} is nested too deeply (at most {max_depth} levels)")
    return data


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error as a short phrase with its line and column (PyYAML's own text spans lines)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return f"{exc.problem}{where}"
    return " ".join(str(exc).split())


def nesting_depth(value: Any, limit: int = MAX_YAML_DEPTH) -> int:
    """How deeply mappings and lists nest in `value` (a scalar: 0), counted without recursion
    and only up to `limit` + 1 (so a hostile input costs no more than a legal one).

    YAML aliases make a container appear in many places; each is walked again only when met
    deeper than before, so a "billion laughs" document costs no more than its distinct nodes.
    """
    deepest = 0
    walked: dict[int, int] = {}  # id of a container -> the deepest level it was walked from
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if walked.get(id(item), -1) >= depth:
            continue
        walked[id(item)] = depth
        deepest = max(deepest, depth + 1)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory and ``os.replace``:
    readers see the old file or the complete new one, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it private; outputs are meant to be shared
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)  # os.replace: atomic within one file system
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """`atomic_write_bytes` of `text` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def json_text(value: Any, indent: int | None = 2) -> str:
    """`value` as JSON text with a final newline, every NaN and infinity as null.

    Python writes them as NaN and Infinity, which no JSON standard allows: jq, browsers and most
    parsers refuse the whole file. They are real values here (the Spearman of stds that are the
    same for every frame, a flag threshold of inf that turns the flag off), so they become null:
    "not defined", which is what they mean in a report."""
    return json.dumps(_finite_or_none(value), indent=indent, allow_nan=False) + "\n"


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(item) for item in value]
    return value


def staging_sibling(path: Path) -> Path:
    """The hidden ``.NAME.partial-PID`` sibling that `path` (a file or folder) is written into
    before `publish` puts it in place: a failed run never leaves a half-written `path`."""
    path = path.absolute()  # a name to put the sibling beside, even for "."
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def staged_bag(path: Path) -> tuple[Path, Path]:
    """(hidden folder, where to write the bag in it) for a bag that `publish` puts at `path`.

    A bag's storage file is named after its folder when it is written (rosbags: NAME/NAME.mcap,
    listed in metadata.yaml) and keeps that name when the folder is renamed, so the bag is written
    under its final name inside a hidden ``.NAME.partial-PID`` folder, not as that folder itself:
    otherwise every published bag would hold a ``.NAME.partial-PID.mcap`` that looks like a leftover."""
    holder = staging_sibling(path)
    return holder, holder / path.absolute().name


def overlapping(a: Path, b: Path) -> bool:
    """Whether one of two paths is the other or lies inside it, links and ``..`` resolved."""
    ra, rb = a.resolve(), b.resolve()
    return ra == rb or ra in rb.parents or rb in ra.parents


def remove_path(path: Path) -> None:
    """Removes a file, link or folder tree if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def publish(staging: Path, target: Path) -> None:
    """Puts the complete `staging` at `target`, replacing what is there (the caller allowed it):
    the old one moves aside first and goes only once the new one is in place."""
    target = target.absolute()
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        remove_path(old)
        target.rename(old)
        staging.rename(target)
        remove_path(old)
        return
    staging.rename(target)
