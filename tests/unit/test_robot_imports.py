"""The robot package imports neither torch nor the training package, anywhere: an AST scan of every
import in pose_regressor/, at module level and inside functions (lazy imports included), and of
``importlib.import_module`` / ``__import__`` calls with a literal name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROBOT_PACKAGE = Path(__file__).resolve().parents[2] / "ros2_ws" / "src" / "pose_regressor" / "pose_regressor"
FORBIDDEN = ("torch", "torchvision", "pose_regressor_training")  # top-level module names


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module name) of every import statement and literal dynamic import in `tree`."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            if name in ("import_module", "__import__", "find_spec") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def test_the_scanner_sees_lazy_and_dynamic_imports() -> None:
    source = (
        "import os\n"
        "def f():\n"
        "    import torch.nn\n"
        "    from pose_regressor_training.models import build_model\n"
        "    return importlib.import_module('torchvision')\n"
    )
    assert [name for _, name in imported_modules(ast.parse(source))] == [
        "os",
        "torch.nn",
        "pose_regressor_training.models",
        "torchvision",
    ]


@pytest.mark.parametrize(
    "path", sorted(ROBOT_PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROBOT_PACKAGE))
)
def test_robot_module_imports_no_torch_and_no_training(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    offending = [
        f"{path.name}:{line} imports {name}"
        for line, name in imported_modules(tree)
        if name.split(".")[0] in FORBIDDEN
    ]
    assert not offending, "; ".join(offending)


def test_the_scan_covers_the_engines() -> None:
    names = {p.name for p in (ROBOT_PACKAGE / "engines").glob("*.py")}
    assert {"tensorrt_engine.py", "cuda_memory.py", "onnxruntime_engine.py"} <= names
    assert "torch_engine.py" not in names  # it lives in the training distribution
