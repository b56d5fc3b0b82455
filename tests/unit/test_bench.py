"""`pose-regressor bench` on small hand-built bundles, and `pose-train build-engine` failing cleanly here.

`conv_bundle` builds a bundle whose graph has a real (if small) convolutional backbone in front of
the MC-dropout head, so that inference time is dominated by the backbone, as in the real models:
there, S separate passes (the naive baseline) must cost clearly more than one pass with S masks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pose_regressor import bench as bench_module
from pose_regressor.bench import STAGES, format_table, run_bench
from pose_regressor.bundle import (
    ONNX_FILE,
    PREPROCESSING,
    SCHEMA_VERSION,
    BundleCamera,
    ModelBundle,
    write_bundle,
)
from pose_regressor.cli import main
from pose_regressor.engines import tensorrt_unavailable_reasons
from tests.unit.bundle_fixtures import make_bundle

JSON_KEYS = {"mc_cost_ratio", "naive_over_ours", "compare_ratio", "rows", "settings"}


def conv_graph(
    cameras: int, width: int, height: int, hidden: int, channels: int, layers: int
) -> onnx.ModelProto:
    """images uint8 [T, H, W, 3] -> /255 -> `layers` 3x3 convolutions (ReLU) -> global average pool ->
    h [1, D] -> h * dropout_mask [S, D] -> translation [S, 3], rotation [S, 4] (unit, components >= 0)."""
    rng = np.random.default_rng(7)
    images = helper.make_tensor_value_info("images", TensorProto.UINT8, [cameras, height, width, 3])
    masks = helper.make_tensor_value_info("dropout_mask", TensorProto.FLOAT, ["S", hidden])
    outputs = [
        helper.make_tensor_value_info("translation", TensorProto.FLOAT, ["S", 3]),
        helper.make_tensor_value_info("rotation", TensorProto.FLOAT, ["S", 4]),
    ]
    init = [
        numpy_helper.from_array(np.array(1 / 255, np.float32), "scale"),
        numpy_helper.from_array(np.array([1, cameras * channels], np.int64), "flat"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("Cast", ["images"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["xf"], ["xt"], perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["xt", "scale"], ["x0"]),
    ]
    c_in = 3
    for k in range(layers):
        w = (rng.standard_normal((channels, c_in, 3, 3)) * np.sqrt(2 / (9 * c_in))).astype(np.float32)
        init.append(numpy_helper.from_array(w, f"conv{k}"))
        nodes.append(helper.make_node("Conv", [f"x{k}", f"conv{k}"], [f"c{k}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{k}"], [f"x{k + 1}"]))
        c_in = channels
    weights = {
        "W_H": rng.standard_normal((cameras * channels, hidden)) / np.sqrt(cameras * channels),
        "W_T": rng.standard_normal((hidden, 3)) / np.sqrt(hidden),
        "W_Q": rng.standard_normal((hidden, 4)) / np.sqrt(hidden),
    }
    init += [numpy_helper.from_array(w.astype(np.float32), name) for name, w in weights.items()]
    nodes += [
        helper.make_node("GlobalAveragePool", [f"x{layers}"], ["pooled"]),
        helper.make_node("Reshape", ["pooled", "flat"], ["feat"]),
        helper.make_node("MatMul", ["feat", "W_H"], ["h"]),
        helper.make_node("Mul", ["dropout_mask", "h"], ["hm"]),
        helper.make_node("MatMul", ["hm", "W_T"], ["translation"]),
        helper.make_node("MatMul", ["hm", "W_Q"], ["r"]),
        helper.make_node("Mul", ["r", "r"], ["r2"]),
        helper.make_node("Mul", ["r2", "r2"], ["r4"]),
        helper.make_node("ReduceSum", ["r4", "axis1"], ["n2"], keepdims=1),
        helper.make_node("Sqrt", ["n2"], ["n"]),
        helper.make_node("Div", ["r2", "n"], ["rotation"]),
    ]
    graph = helper.make_graph(nodes, "conv", [images, masks], outputs, init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def conv_bundle(
    root: Path,
    channels: int = 32,
    size: tuple[int, int] = (64, 48),
    cameras: int = 2,
    hidden: int = 64,
    layers: int = 2,
    mc_samples: int = 8,
    camera_size: tuple[int, int] = (128, 96),
    dropout: float = 0.2,
) -> ModelBundle:
    """A valid bundle at `root` (created) around `conv_graph`; cameras ``cam0``.. at `camera_size`."""
    root.mkdir(parents=True, exist_ok=True)
    onnx_path = root / ONNX_FILE
    onnx.save(conv_graph(cameras, size[0], size[1], hidden, channels, layers), str(onnx_path))
    bundle = ModelBundle(
        path=root,
        schema_version=SCHEMA_VERSION,
        cameras=tuple(BundleCamera(f"cam{k}", f"/cam{k}/image_raw", *camera_size) for k in range(cameras)),
        input_width=size[0],
        input_height=size[1],
        preprocessing=dict(PREPROCESSING),
        fusion="input",
        dof=6,
        dropout=dropout,
        hidden_dim=hidden,
        covariance_scale=1.0,
        provenance={},
        mc_samples=mc_samples,
        onnx={"file": ONNX_FILE, "opset": 17, "bytes": onnx_path.stat().st_size},
    )
    write_bundle(bundle)
    return bundle


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelBundle, ModelBundle]:
    root = tmp_path_factory.mktemp("bench")
    return conv_bundle(root / "t2", cameras=2), conv_bundle(root / "t1", cameras=1)


def test_bench_cli_prints_the_table_and_writes_json(
    bundles: tuple[ModelBundle, ModelBundle], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "--bundle", str(bundles[0].path), "--backend", "onnxruntime", "--mc-samples", "8"]
    assert main([*args, "--repeats", "6", "--warmup", "1", "--threads", "1", "--json", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert header[:5] == ["row", "backend", "T", "S", "passes"]
    assert [f"{stage} p50/p99" for stage in STAGES] == [
        " ".join(header[5 + 2 * i : 7 + 2 * i]) for i in range(4)
    ]
    rows = {line.split()[0]: line for line in lines[2:5]}
    assert set(rows) == {"deterministic", "mc", "naive"}
    assert rows["naive"].split()[1:8] == ["onnxruntime", "on", "cpu", "(fp32)", "2", "8", "8"]
    assert "engine: onnxruntime on cpu (fp32) (backend 'onnxruntime' requested)" in lines
    assert any(line.startswith("MC cost          total(S=8) / total(S=1):") for line in lines)
    assert any(line.startswith("naive over ours  8 passes of S=1 / one pass with S=8:") for line in lines)
    assert lines[-1] == f"bench: wrote {out}"
    data = json.loads(out.read_text())
    assert set(data) == JSON_KEYS and data["compare_ratio"] is None
    assert data["mc_cost_ratio"] > 0 and data["naive_over_ours"] > 1
    assert [(r["name"], r["T"], r["S"], r["forward_passes"]) for r in data["rows"]] == [
        ("deterministic", 2, 1, 1),
        ("mc", 2, 8, 1),
        ("naive", 2, 8, 8),
    ]
    for row in data["rows"]:
        for stage in STAGES:
            timing = row[f"{stage}_ms"]
            assert 0 < timing["p50"] <= timing["p99"]
        assert row["total_ms"]["p50"] >= row["infer_ms"]["p50"]
    settings = data["settings"]
    assert (settings["mc_samples"], settings["repeats"], settings["warmup"]) == (8, 6, 1)
    assert settings["engine"] == "onnxruntime on cpu (fp32)" and settings["engine_options"] == {
        "threads": "1"
    }


def test_bench_auto_names_the_engine_chosen_and_why(
    bundles: tuple[ModelBundle, ModelBundle], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["bench", "--bundle", str(bundles[0].path), "--mc-samples", "2", "--repeats", "1", "--warmup", "0"]
    assert main([*args, "--threads", "1"]) == 0  # --backend auto is the default
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("engine: ")]
    # No TensorRT or CUDA here: auto says it fell back to the CPU and why it skipped the others.
    assert line.startswith("engine: onnxruntime on cpu (fp32) (auto: CPU fallback; skipped tensorrt (")
    for reason in tensorrt_unavailable_reasons():
        assert reason in line
    assert "onnxruntime CUDA (" in line


def test_compare_gives_the_ratio_of_two_bundles(bundles: tuple[ModelBundle, ModelBundle]) -> None:
    result = run_bench(
        bundles[0].path,
        backend="onnxruntime",
        mc_samples=4,
        repeats=4,
        warmup=1,
        compare=bundles[1].path,
        engine_options={"threads": 1},
        settle_s=0.0,
    )
    assert [r.name for r in result.rows] == ["deterministic", "mc", "naive", "compare"]
    other = result.row("compare")
    assert (other.cameras, other.samples, other.passes) == (1, 4, 1)
    assert result.compare_ratio is not None and result.compare_ratio > 0
    assert result.compare_ratio == pytest.approx(result.row("mc").stats["total"][0] / other.stats["total"][0])
    assert result.to_json()["compare_ratio"] == result.compare_ratio
    table = format_table(result)
    assert f"total(T=2, S=4) / total(T=1, S=4 bundle {bundles[1].path}):" in table


def test_a_bundle_without_dropout_is_benched_at_its_own_rows(
    bundles: tuple[ModelBundle, ModelBundle], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dropout: 0`, `mc_samples: 1` (the synthetic default's bundle since 2026-12-06): S = 1 is its
    path, there is no naive row, and --compare runs the other bundle at its own S."""
    plain = conv_bundle(tmp_path / "plain", cameras=1, mc_samples=1, dropout=0.0)
    result = run_bench(
        plain.path,
        backend="onnxruntime",
        repeats=3,
        warmup=1,
        compare=bundles[1].path,
        engine_options={"threads": 1},
        settle_s=0.0,
    )
    assert [r.name for r in result.rows] == ["deterministic", "mc", "compare"]
    assert (result.row("mc").samples, result.row("compare").samples) == (1, bundles[1].mc_samples)
    assert result.naive_over_ours is None and result.to_json()["naive_over_ours"] is None
    table = format_table(result)
    assert "naive over ours  none: the bundle has no dropout" in table
    assert f"total(T=1, S=1) / total(T=1, S={bundles[1].mc_samples} bundle" in table
    with pytest.raises(ValueError, match="mc_samples must be >= 1"):
        run_bench(plain, backend="onnxruntime", mc_samples=0)
    with pytest.raises(ValueError, match=r"the --compare bundle .*: mc_samples must be >= 2"):
        run_bench(plain, backend="onnxruntime", mc_samples=1, compare=bundles[1].path)
    assert main(["bench", "--bundle", str(plain.path), "--backend", "onnxruntime", "--repeats", "2"]) == 0
    assert "MC cost          total(S=1) / total(S=1):" in capsys.readouterr().out


def test_a_compare_bundle_is_held_to_the_sample_count_its_node_takes(
    bundles: tuple[ModelBundle, ModelBundle], tmp_path: Path
) -> None:
    ensemble = make_bundle(tmp_path / "ensemble", ensemble_members=2, mc_samples=4)  # with dropout
    with pytest.raises(ValueError) as caught:
        run_bench(bundles[0], backend="onnxruntime", mc_samples=3, compare=ensemble.path, quiet=True)
    assert str(caught.value) == (
        f"the --compare bundle {ensemble.path}: mc_samples: 3 samples for an ensemble of 2 models; the "
        "samples go to the members in turn, so use a multiple of 2 (the bundle's mc_samples: 4)"
    )


def test_rows_are_interleaved_and_primed(
    bundles: tuple[ModelBundle, ModelBundle], monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, str, bool]] = []
    frame, prime = bench_module._Case.frame, bench_module._Case.prime

    def spy_frame(case: bench_module._Case, repetition: int, record: bool) -> None:
        events.append(("frame", case.name, record))
        frame(case, repetition, record)

    def spy_prime(case: bench_module._Case, repetition: int) -> None:
        events.append(("prime", case.name, False))
        prime(case, repetition)

    monkeypatch.setattr(bench_module._Case, "frame", spy_frame)
    monkeypatch.setattr(bench_module._Case, "prime", spy_prime)
    result = run_bench(
        bundles[1], backend="onnxruntime", mc_samples=2, repeats=3, warmup=1, seed=3, settle_s=0
    )
    assert [e[0] for e in events] == ["prime", "frame"] * 12
    assert all(events[i][1] == events[i + 1][1] for i in range(0, 24, 2))  # each frame primed by its row
    names = [name for kind, name, _ in events if kind == "frame"]
    repetitions = [names[i : i + 3] for i in range(0, 12, 3)]
    assert all(sorted(r) == ["deterministic", "mc", "naive"] for r in repetitions)  # each row once
    assert len({tuple(r) for r in repetitions}) > 1  # in varying orders
    assert [record for kind, _, record in events if kind == "frame"] == [False] * 3 + [True] * 9
    assert [row.name for row in result.rows] == ["deterministic", "mc", "naive"]


def test_bad_arguments_fail_with_one_line(
    bundles: tuple[ModelBundle, ModelBundle], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="mc_samples must be >= 2"):
        run_bench(bundles[1], backend="onnxruntime", mc_samples=1)
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        run_bench(bundles[1], backend="onnxruntime", repeats=0)
    assert main(["bench", "--bundle", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err == f"pose-regressor bench: error: model bundle {tmp_path / 'missing'} does not exist\n"
    if not tensorrt_unavailable_reasons():
        return  # TensorRT can run here
    assert main(["bench", "--bundle", str(bundles[1].path), "--backend", "tensorrt", "--repeats", "1"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("pose-regressor bench: error: TensorRT backend unavailable: ") and err.count("\n") == 1
    )


def test_build_engine_fails_here_with_one_clear_line(bundles: tuple[ModelBundle, ModelBundle]) -> None:
    if not tensorrt_unavailable_reasons():
        pytest.skip("TensorRT and a CUDA GPU are present: build-engine would build")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pose_regressor_training.cli",
            "build-engine",
            "--bundle",
            str(bundles[1].path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        "pose-train build-engine: error: cannot build a TensorRT plan on this machine: "
    )
    assert "`tensorrt` Python package is not installed" in result.stderr
