"""Security hygiene of everything that reads files a user may have been handed (bundles, checkpoints):
no pickled code runs, YAML is parsed with safe_load, and a bundle cannot make the robot read outside
its directory."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
import yaml
from onnx import TensorProto

from pose_regressor.bundle import BundleError, load_bundle
from pose_regressor.engines import EngineError, load_engine
from pose_regressor.files import load_yaml
from pose_regressor_training.checkpoint import FORMAT, VERSION, CheckpointError, load_checkpoint
from pose_regressor_training.torch_engine import WEIGHTS_FORMAT
from pose_regressor_training.train_config import load_train_config
from pose_regressor_training.typed_config import ConfigError
from tests.unit.bundle_fixtures import make_bundle

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "ros2_ws" / "src", ROOT / "training"]


class Payload:
    """Unpickling this object runs os.system (creates `marker`): what a hostile file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    """(dotted name, call) of every call whose callee is a plain dotted name."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts: list[str] = []
            func: ast.expr = node.func
            while isinstance(func, ast.Attribute):
                parts.append(func.attr)
                func = func.value
            if isinstance(func, ast.Name):
                parts.append(func.id)
                found.append((".".join(reversed(parts)), node))
    return found


def test_no_unsafe_deserialization_in_the_sources() -> None:
    """yaml only through safe_load/safe_dump, no pickle, torch.load always with weights_only=True."""
    problems = []
    torch_loads = 0
    files = [path for root in SOURCES for path in root.rglob("*.py") if ".venv" not in path.parts]
    assert len(files) > 20
    for path in files:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib") for n in names):
                    problems.append(f"{path}:{node.lineno}: imports a pickle module")
        # yaml.load is safe with a loader class of this file that derives from yaml.SafeLoader
        safe_loaders = {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef) and any(ast.unparse(b) == "yaml.SafeLoader" for b in node.bases)
        }
        for name, call in _calls(tree):
            where = f"{path}:{call.lineno}: {name}"
            keywords = {k.arg: k.value for k in call.keywords}
            loader = keywords.get("Loader")
            safe_load = name == "yaml.load" and isinstance(loader, ast.Name) and loader.id in safe_loaders
            unsafe = ("yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load", "yaml.Loader")
            if name in unsafe and not safe_load:
                problems.append(f"{where} (use yaml.safe_load)")
            if name == "torch.load":
                torch_loads += 1
                value = keywords.get("weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    problems.append(f"{where} without weights_only=True")
            if name in ("np.load", "numpy.load") and "allow_pickle" in keywords:
                problems.append(f"{where} with allow_pickle")
    assert not problems, "\n".join(problems)
    assert torch_loads >= 2  # the checkpoint loader and the torch engine: the scan sees them


def test_a_checkpoint_holding_a_pickled_object_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "version": VERSION, "model": {}, "extra": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match=r"cannot be read: .*[Ww]eights only load failed"):
        load_checkpoint(path)
    assert not marker.exists()
    # The same file with the default of torch < 2.6 (weights_only=False) would have run the payload.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_bundle_weights_holding_a_pickled_object_are_refused_and_run_nothing(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    marker = tmp_path / "pwned"
    torch.save({"format": WEIGHTS_FORMAT, "payload": Payload(marker)}, bundle.torch_path)
    with pytest.raises(EngineError, match=r"cannot read .*model.pt"):
        load_engine(bundle, "torch")
    assert not marker.exists()


def test_bundle_yaml_with_python_tags_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    marker = tmp_path / "pwned"
    text = bundle.yaml_path.read_text()
    bundle.yaml_path.write_text(text + f"evil: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(BundleError, match="is not valid YAML"):
        load_bundle(bundle.path)
    assert not marker.exists()
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load(bundle.yaml_path.read_text())
    with pytest.raises(yaml.constructor.ConstructorError):  # the loader every file and override goes through
        load_yaml(bundle.yaml_path.read_text())
    with pytest.raises(ConfigError, match=r"override optim\.lr: the value is not valid YAML"):
        load_train_config(None, [f"optim.lr=!!python/object/apply:os.system ['touch {marker}']"])
    assert not marker.exists()


def test_onnx_external_data_outside_the_bundle_is_refused(tmp_path: Path) -> None:
    """A model.onnx may keep weights in external files; one that names a file outside the bundle
    (path traversal) must not load (ONNX Runtime checks it; this test pins that behaviour)."""
    bundle = make_bundle(tmp_path / "bundle")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(12, dtype=np.float32).tobytes())
    model = onnx.load(str(bundle.onnx_path))
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.name == "W_T":
            external = onnx.TensorProto()
            external.name, external.data_type = "W_T", TensorProto.FLOAT
            external.dims.extend(tensor.dims)
            external.data_location = TensorProto.EXTERNAL
            for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "48")):
                entry = external.external_data.add()
                entry.key, entry.value = key, value
            model.graph.initializer[index].CopyFrom(external)
    bundle.onnx_path.write_bytes(model.SerializeToString())
    data = yaml.safe_load(bundle.yaml_path.read_text())
    data["onnx"].pop("bytes")  # the size changed; only ONNX Runtime's own check is left
    bundle.yaml_path.write_text(yaml.safe_dump(data))
    with pytest.raises(EngineError, match=r"(?i)external data.*(outside|escapes)"):
        load_engine(bundle.path, "onnxruntime")
