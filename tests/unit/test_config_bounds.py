"""Every number of a training config has a documented range (`train_config.BOUNDS`), and values
outside it are refused with one line naming the key, the range and the value (issue 14, item 5).

The regression tests that run the real `pose-train fit` on such inputs are in
tests/integration/test_cli_bounds.py; these check the table itself and the message forms.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import Any

import pytest

from pose_regressor.bounds import Bound
from pose_regressor.files import MAX_YAML_DEPTH, nesting_depth, read_yaml
from pose_regressor_training.losses.registry import LOSSES
from pose_regressor_training.train_config import BOUNDS, TrainConfig, load_train_config
from pose_regressor_training.typed_config import ConfigError, check_bounds

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "training" / "configs").glob("*.yaml"))


def _is_numeric(annotation: Any) -> bool:
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) is tuple:
        return all(arg in (int, float, Ellipsis) for arg in typing.get_args(annotation))
    return False


def numeric_fields(cls: type, prefix: str = "") -> list[str]:
    """Dotted paths of every int, float or tuple-of-numbers field of a config dataclass, recursively."""
    paths = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        annotation = hints[f.name]
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
            paths += numeric_fields(annotation, path + ".")
        elif _is_numeric(annotation):
            paths.append(path)
    return paths


def test_every_numeric_config_entry_has_a_range() -> None:
    fields = numeric_fields(TrainConfig)
    assert "optim.min_lr_ratio" in fields and "eval_every" in fields and "augment.crop_scale" in fields
    assert [f for f in fields if f not in BOUNDS] == []
    for loss in LOSSES.values():
        params = [f"loss.params.{name}" for name in numeric_fields(loss.params_type)]
        assert [p for p in params if p not in BOUNDS] == [], loss.name
    # and nothing in the table that no config has (a renamed field would leave a dead entry)
    loss_params = {f"loss.params.{n}" for loss in LOSSES.values() for n in numeric_fields(loss.params_type)}
    assert set(BOUNDS) - set(fields) - loss_params == set()


def test_defaults_and_shipped_configs_are_within_range() -> None:
    check_bounds(TrainConfig(), BOUNDS)
    for loss in LOSSES.values():
        defaults = dataclasses.asdict(loss.params_type())
        for name, value in defaults.items():
            bound = BOUNDS.get(f"loss.params.{name}")
            if bound is not None and not isinstance(value, str | bool):
                values = value if isinstance(value, tuple) else (value,)
                assert all(bound.contains(float(v)) for v in values), (loss.name, name, value)
    for path in CONFIGS:
        load_train_config(path, ["data.root=/tmp/anywhere"])  # raises if any value is out of range


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.min_lr_ratio=-5", "optim.min_lr_ratio must be in [0, 1], got -5.0"),
        ("eval_every=0", "eval_every must be in [1, 100000], got 0"),
        ("optim.lr=.nan", "optim.lr must be in (0, 10], got nan"),
        ("optim.lr=.inf", "optim.lr must be in (0, 10], got inf"),
        ("optim.lr=0", "optim.lr must be in (0, 10], got 0.0"),
        ("optim.step_gamma=1.0e+30", "optim.step_gamma must be in (0, 1], got 1e+30"),
        ("optim.batch_size=100000", "optim.batch_size must be in [1, 4096], got 100000"),
        ("model.hidden_dim=100000", "model.hidden_dim must be in [1, 16384], got 100000"),
        ("model.image_width=100000", "model.image_width must be in [16, 4096], got 100000"),
        ("augment.crop_scale=[0.5, 2]", "augment.crop_scale must be in (0, 1], got 2.0"),
        ("augment.blur_sigma=[0.1, .inf]", "augment.blur_sigma must be in (0, 100], got inf"),
        ("loss.params={beta: -1}", "loss.params.beta must be in [0, 10000], got -1"),
        ("loss.params={depths: [1, -2]}", "loss.params.depths must be in (0, 10000], got -2"),
        ("seed=-1", "seed must be in [0, 4294967295], got -1"),
        (f"seed={10**400}", "seed must be in [0, 4294967295], got an integer of 401 digits"),
        ("num_workers=100000", "num_workers must be in [0, 64], got 100000"),
    ],
)
def test_out_of_range_values_name_key_range_and_value(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_train_config(None, ["data.root=/d", override])
    assert str(caught.value) == message


def test_bound_text_and_membership() -> None:
    assert str(Bound(0, 1)) == "[0, 1]"
    assert str(Bound(0, 10, lo_open=True)) == "(0, 10]"
    assert str(Bound(0, 0.5, hi_open=True)) == "[0, 0.5)"
    assert str(Bound(-2 * math.pi, 2 * math.pi)) == "[-6.28319, 6.28319]"
    b = Bound(0, 1, lo_open=True)
    assert not b.contains(0.0) and b.contains(1.0) and not b.contains(math.nan) and not b.contains(math.inf)


def test_a_config_built_in_code_is_checked_by_fit_too() -> None:
    from pose_regressor_training.train_config import validate_train_config

    config = dataclasses.replace(TrainConfig(), eval_every=0)
    with pytest.raises(ConfigError, match=r"^eval_every must be in \[1, 100000\], got 0$"):
        validate_train_config(config)


def test_deep_or_foreign_config_files_are_one_line_naming_the_file(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")  # PyYAML itself recurses on this
    shallow_deep = tmp_path / "deep2.yaml"
    shallow_deep.write_text("a: " + "[" * 50 + "]" * 50 + "\n")  # parses, but deeper than allowed
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"optim:\n  lr: 1\n\xff\xfe\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("optim: [\n")
    cases = {
        deep: f"config {deep} is nested too deeply (at most {MAX_YAML_DEPTH} levels)",
        shallow_deep: f"config {shallow_deep} is nested too deeply (at most {MAX_YAML_DEPTH} levels)",
        binary: f"config {binary} is not UTF-8 text (at byte 15: invalid start byte)",
        broken: f"config {broken} is not valid YAML: expected the node content, but found "
        "'<stream end>' at line 2, column 1",
    }
    for path, message in cases.items():
        with pytest.raises(ConfigError) as caught:
            load_train_config(path)
        assert str(caught.value) == message
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(ConfigError, match=r"has \d+ bytes; at most 1048576 are read$"):
        read_yaml(big, "config", ConfigError)


def test_overrides_that_are_not_yaml_or_too_deep() -> None:
    with pytest.raises(ConfigError, match=r"^override optim.lr: the value is not valid YAML: "):
        load_train_config(None, ["optim.lr=["])
    with pytest.raises(ConfigError, match=r"^override loss.params: the value is nested too deeply"):
        load_train_config(None, ["loss.params=" + "[" * 5000 + "]" * 5000])
    with pytest.raises(ConfigError, match=r"^override loss.params: the value is nested too deeply"):
        load_train_config(None, ["loss.params=" + "[" * 20 + "]" * 20])


def test_non_string_keys_are_named_not_a_traceback() -> None:
    with pytest.raises(ConfigError, match=r"^unknown keys optim.1, optim.a; valid keys under optim: "):
        load_train_config(None, ["optim={1: 2, a: 3}"])


def test_nesting_depth_counts_without_recursion() -> None:
    value: Any = 1
    for _ in range(100_000):  # far deeper than Python's recursion limit
        value = [value]
    assert nesting_depth(value) == MAX_YAML_DEPTH + 1  # stops counting past the limit
    assert nesting_depth({"a": [1, {"b": 2}]}) == 3
    assert nesting_depth(5) == 0


def test_a_config_of_nested_aliases_is_read_at_once(tmp_path: Path) -> None:
    """9 levels of 10 aliases each: 10^9 paths through a few dozen nodes ("billion laughs")."""
    lines = ["a0: &a0 [1, 2]"]
    for level in range(1, 9):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]")
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"^unknown keys a0, a1, .*; valid keys: data, model"):
        load_train_config(path)
