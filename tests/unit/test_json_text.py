"""metrics.json and the other reports are strict JSON: an undefined value is null, not NaN."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pose_regressor.files import json_text


def strict_loads(text: str) -> object:
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinities_become_null_at_any_depth_and_the_rest_is_unchanged() -> None:
    value = {
        "spearman": float("nan"),
        "numpy": np.float64("nan"),
        "thresholds": {"max_position_std": float("inf"), "max_rotation_std": 0.05},
        "curve": [1.0, float("-inf"), (2, float("nan"))],
        "count": 3,
        "name": "NaN",
        "flag": True,
        "none": None,
    }
    text = json_text(value)
    assert text.endswith("}\n")
    assert strict_loads(text) == {
        "spearman": None,
        "numpy": None,
        "thresholds": {"max_position_std": None, "max_rotation_std": 0.05},
        "curve": [1.0, None, [2, None]],
        "count": 3,
        "name": "NaN",
        "flag": True,
        "none": None,
    }


def test_python_alone_would_write_a_file_strict_readers_refuse() -> None:
    with pytest.raises(ValueError, match="not JSON: NaN"):
        strict_loads(json.dumps({"spearman": float("nan")}))
