"""Fuzzing the command-line tools with malformed bags, configs and params files (fixed seed).

Every case runs a tool's real `main(argv)` (`fuzz_worker.py`: one process, so that the imports
are paid once) on a damaged input made here from a valid one:
* bags: truncated, bytes flipped or zeroed, magic only, random bytes, empty, metadata.yaml broken,
  fed to `pose-regressor replay`, `pose-train from-bag` and (bags that cannot be opened)
  `pose-regressor eval-node`;
* training configs with out-of-range, non-finite or mistyped values, invalid YAML, deep nesting
  or binary contents, fed to `pose-train fit`;
* params files with the same kinds of damage for the node's parameters, fed to `pose-regressor run`.

Every case must end within its time bound without a traceback. A non-zero exit must come with
exactly one line on stderr; a damaged bag may still be readable in part, and then the tool may
succeed (it counts what it skipped). A few cases are repeated as separate processes, to check
that the in-process results match the real command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pose_regressor.bagio import RigBagWriter
from tests.unit.bundle_fixtures import make_bundle

pytestmark = pytest.mark.ros

SEED = 20261202
WORKER = Path(__file__).with_name("fuzz_worker.py")
CAMERAS = ("left", "right")
TOPICS = [f"/{name}/image_raw" for name in CAMERAS]


# ---------------------------------------------------------------------------------- inputs
def _valid_bag(root: Path) -> Path:
    rng = np.random.default_rng(SEED)
    bag = root / "valid"
    with RigBagWriter(bag, list(CAMERAS)) as writer:
        for k in range(6):
            stamp = 1_700_000_000_000_000_000 + k * 100_000_000
            writer.write_ground_truth(stamp, np.array([0.1 * k, 0.0, 0.0]), np.array([0.0, 0.0, 0.0, 1.0]))
            writer.write_set(stamp, [rng.integers(0, 256, (12, 16, 3), dtype=np.uint8) for _ in CAMERAS])
    return bag


def _mcap(bag: Path) -> Path:
    return next(bag.glob("*.mcap"))


def _damaged_bags(valid: Path, root: Path, rng: np.random.Generator) -> list[tuple[str, Path, bool]]:
    """(name, bag folder, opens: whether the bag's index may still be readable)."""
    data = _mcap(valid).read_bytes()
    metadata = (valid / "metadata.yaml").read_text()
    variants: list[tuple[str, bytes | None, str | None, bool]] = []
    for fraction in (0.0, 0.01, 0.5, 0.9, 0.99):
        variants.append((f"truncated at {fraction:.0%}", data[: int(len(data) * fraction)], None, False))
    variants.append(("magic only", data[:8], None, False))
    variants.append(("all zeros", bytes(len(data)), None, False))
    variants.append(("random bytes", rng.bytes(len(data)), None, False))
    for k in range(16):  # bytes flipped somewhere: the index may survive, records may not
        damaged = bytearray(data)
        at = int(rng.integers(0, len(data) - 64))
        damaged[at : at + int(rng.integers(1, 64))] = rng.bytes(int(rng.integers(1, 64)))[:64]
        variants.append((f"bytes flipped #{k}", bytes(damaged[: len(data)]), None, True))
    for k in range(4):  # a chunk of zeros in the middle
        damaged = bytearray(data)
        at = int(rng.integers(len(data) // 4, 3 * len(data) // 4))
        damaged[at : at + 512] = bytes(len(damaged[at : at + 512]))
        variants.append((f"zeroed block #{k}", bytes(damaged), None, True))
    broken_metadata = [
        ("metadata not YAML", "rosbag2_bagfile_information: [\n"),
        ("metadata empty", ""),
        ("metadata a string", "hello\n"),
        ("metadata nested", "a: " + "[" * 3000 + "]" * 3000 + "\n"),
        ("metadata wrong version", metadata.replace("version: ", "version: 999 #")),
        ("metadata binary", "\x00\xff\xfe garbage"),
    ]
    variants += [(name, None, text, False) for name, text in broken_metadata]
    bags = []
    for k, (name, mcap, meta, opens) in enumerate(variants):
        bag = root / f"bag{k}"
        bag.mkdir()
        (bag / _mcap(valid).name).write_bytes(data if mcap is None else mcap)
        (bag / "metadata.yaml").write_text(metadata if meta is None else meta, errors="surrogateescape")
        bags.append((name, bag, opens))
    missing = root / "no mcap"
    missing.mkdir()
    (missing / "metadata.yaml").write_text(metadata)
    bags.append(("mcap file missing", missing, False))
    bags.append(("bag is a file", _mcap(valid), True))
    return bags


BAD_NUMBERS: list[Any] = [float("nan"), float("inf"), -float("inf"), "text", [1, 2], {"a": 1}, -1e300, 1e300]


def _numeric_leaves(mapping: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            keys += _numeric_leaves(value, path + ".")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            keys.append(path)
    return keys


def _set(mapping: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    result = json.loads(json.dumps(mapping))
    node = result
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node[key]
    node[leaf] = value
    return result


def _yaml(value: Any) -> str:
    # yaml.safe_dump cannot write nan/inf of the JSON round trip: write them as YAML's .nan/.inf.
    return yaml.safe_dump(value, allow_unicode=True)


def _fit_configs(root: Path, rng: np.random.Generator) -> list[tuple[str, Path]]:
    from pose_regressor_training.train_config import TrainConfig
    from pose_regressor_training.typed_config import to_mapping

    defaults = to_mapping(TrainConfig())
    numeric = _numeric_leaves(defaults)
    configs = []
    picks = rng.choice(len(numeric), size=min(len(numeric), 40), replace=False)
    for k, index in enumerate(picks):
        key = numeric[int(index)]
        value = BAD_NUMBERS[k % len(BAD_NUMBERS)]
        path = root / f"fit{k}.yaml"
        path.write_text(_yaml(_set(defaults, key, value)))
        configs.append((f"{key} = {value!r}", path))
    raw = {
        "not YAML": "optim: [\n",
        "nested": "a: " + "[" * 3000 + "]" * 3000 + "\n",
        "a list": "- 1\n- 2\n",
        "unknown key": "optim:\n  lr_typo: 0.1\n",
        "binary": "\x00\x01\x02\xff",
        "empty data root": "data:\n  root: ''\n",
    }
    return configs + _raw_files(root, "fit_", len(configs), raw)


def _params_files(root: Path) -> list[tuple[str, Path]]:
    from pose_regressor.params import PARAMETERS

    files = []
    for spec in PARAMETERS:
        if spec.name in ("bundle",):
            continue
        for value in (["x"] if isinstance(spec.default, list) else []) + ["nonsense", 1e300, -5, [3.5]]:
            if isinstance(spec.default, str) and isinstance(value, str) and not spec.choices:
                continue  # any string is a valid frame name or bundle path candidate
            if isinstance(spec.default, list) and isinstance(value, list) and spec.name == "camera_topics":
                continue
            if value == ["x"] and spec.name == "camera_topics":
                continue
            path = root / f"params{len(files)}.yaml"
            path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {spec.name: value}}}))
            files.append((f"{spec.name} = {value!r}", path))
    raw = {
        "not YAML": "/**:\n  ros__parameters:\n    a: [\n",
        "alias": "/**:\n  ros__parameters:\n    map_frame: &m map\n    base_frame: *m\n",
        "a string": "text\n",
        "binary": "\x00\xff",
    }
    return files + _raw_files(root, "params", len(files), raw)


def _raw_files(root: Path, prefix: str, first: int, texts: dict[str, str]) -> list[tuple[str, Path]]:
    """(name, file) for each malformed text, written as is (bytes beyond UTF-8 included)."""
    files = []
    for k, (name, text) in enumerate(texts.items(), start=first):
        path = root / f"{prefix}{k}.yaml"
        path.write_text(text, errors="surrogateescape")
        files.append((name, path))
    return files


# ---------------------------------------------------------------------------------- the test
def _cases(tmp_path: Path) -> list[dict[str, Any]]:
    rng = np.random.default_rng(SEED)
    bags = _damaged_bags(_valid_bag(tmp_path), tmp_path, rng)
    rig = tmp_path / "rig.yaml"
    rig.write_text(
        yaml.safe_dump({"cameras": [{"name": n, "width": 16, "height": 12, "hfov_deg": 90} for n in CAMERAS]})
    )
    bundle = make_bundle(tmp_path / "bundle").path
    cases: list[dict[str, Any]] = []
    for k, (name, bag, opens) in enumerate(bags):
        cases.append(
            {
                "name": f"replay: {name}",
                "tool": "pose-regressor",
                "argv": ["replay", str(bag), "--start-delay", "0", "--duration", "2", "--rate", "50"],
                "bound_s": 20,
            }
        )
        cases.append(
            {
                "name": f"from-bag: {name}",
                "tool": "pose-train",
                "argv": [
                    *("from-bag", "--bag", str(bag), "--camera-topics", *TOPICS),
                    *("--gt-topic", "/ground_truth/pose", "--rig", str(rig)),
                    *("--out", str(tmp_path / f"dataset{k}"), "--quiet"),
                ],
                "bound_s": 30,
            }
        )
        if not opens and k % 3 == 0:  # the node would start for a readable bag: costly, few of those
            cases.append(
                {
                    "name": f"evaluate: {name}",
                    "tool": "pose-regressor",
                    "argv": [
                        *("eval-node", "--bag", str(bag), "--bundle", str(bundle)),
                        *("--camera-topics", *TOPICS, "--out", str(tmp_path / f"eval{k}")),
                    ],
                    "bound_s": 60,
                }
            )
    for name, config in _fit_configs(tmp_path, rng):
        cases.append(
            {
                "name": f"fit: {name}",
                "tool": "pose-train",
                "argv": ["fit", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"],
                "bound_s": 30,
            }
        )
    for name, params in _params_files(tmp_path):
        cases.append(
            {
                "name": f"run: {name}",
                "tool": "pose-regressor",
                "argv": ["run", "--params", str(params), "--bundle", str(bundle)],
                "bound_s": 30,
            }
        )
    return cases


def _problems(result: dict[str, Any]) -> list[str]:
    problems = []
    if result["raised"]:
        problems.append(f"raised: {result['raised'].strip().splitlines()[-1]}")
    if "Traceback" in result["stderr"]:
        problems.append("a traceback on stderr")
    lines = [line for line in result["stderr"].splitlines() if line.strip()]
    if result["code"] not in (0, None) and len(lines) != 1:
        problems.append(f"exit {result['code']} with {len(lines)} lines on stderr")
    if result["code"] is None and not result["raised"]:
        problems.append("main returned None")
    return problems


def test_fuzzed_inputs_give_one_line_and_a_non_zero_exit(tmp_path: Path, ros_env: dict[str, str]) -> None:
    cases = _cases(tmp_path)
    assert len(cases) >= 200, len(cases)
    cases_file, results_file = tmp_path / "cases.json", tmp_path / "results.json"
    cases_file.write_text(json.dumps(cases))
    subprocess.run(
        [sys.executable, str(WORKER), str(cases_file), str(results_file)],
        env=ros_env,
        check=True,
        timeout=600,
        cwd=tmp_path,
    )
    results = json.loads(results_file.read_text())
    failures = [
        f"{r['name']}: {'; '.join(p)}\n    {r['stderr'].strip()[:300]}"
        for r in results
        for p in [_problems(r)]
        if p
    ]
    codes = Counter(str(r["code"]) for r in results)
    slowest = max(results, key=lambda r: r["seconds"])
    total = sum(r["seconds"] for r in results)
    print(f"fuzz: {len(results)} cases in {total:.0f} s, exit codes {dict(codes)}, slowest {slowest['name']}")
    assert not failures, f"{len(failures)} of {len(results)} cases failed:\n" + "\n".join(failures)

    # A sample as real processes: the same exit code and the same one line.
    for result in [r for r in results if r["code"] not in (0, None)][::40]:
        command = (
            "pose_regressor.cli" if result["tool"] == "pose-regressor" else "pose_regressor_training.cli"
        )
        real = subprocess.run(
            [sys.executable, "-m", command, *result["argv"]],
            env=ros_env,
            capture_output=True,
            text=True,
            timeout=result["bound_s"] + 30,
            cwd=tmp_path,
        )
        assert real.returncode == result["code"], (result["name"], real.stderr)
        lines = [line for line in real.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in real.stderr, (result["name"], real.stderr)
