"""One-shot GPU acceptance run (issue 13): export, TensorRT plans, parity, bench, node run, report.

Trains nothing: bundles are exported from freshly initialised weights (a small CNN bundle, and
resnet18 224x224 bundles with 1 and 4 cameras), and two small bundles of the uncertainty graphs the
recipes ship: the default's (no dropout at inference, track-shift averaging and spread, a two-layer
variance head plus an error head: the log-variance output) and a deep ensemble of two such models.
Their log-variance output is checked for parity as well as the pose.

On a machine without a usable GPU the CPU part runs (export, PyTorch reference vs ONNX Runtime
CPU parity, ONNX Runtime CPU bench, the node run with onnxruntime) and every GPU step is reported
as skipped with its reason. Writes gpu_report.json and gpu_report.md to --out; exit 1 when a plan
does not build, a parity check fails or the node run fails, 0 otherwise.

    scripts/gpu_check.sh            # everything this machine can run (budget: 8 min on a GPU)
    scripts/gpu_check.sh --quick    # the small bundles only, few repetitions (CI: ~1 min on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pose_regressor.files import json_text

ROOT = Path(__file__).resolve().parents[1]
FloatArray = NDArray[np.float64]
TRANSLATION_TOL_M = 1e-3  # FP32 TensorRT (and the PyTorch reference) vs ONNX Runtime CPU
ROTATION_TOL_DEG = 0.01
LOG_VARIANCE_TOL = 1e-3  # ln(m^2), ln(rad^2): FP32 engines vs ONNX Runtime CPU
BAG_FPS = 30.0
TARGETS = (  # issue 13 item 6: (measure, upper bound); filled from the resnet18_t4 rows
    ("4-camera resnet18 224x224, S=32, FP16: engine p50 (ms)", 3.0),
    ("same, end-to-end node latency p50 at 30 Hz (ms)", 8.0),
    ("MC cost ratio (S=32 vs S=1)", 1.10),
    ("TensorRT FP16 vs ONNX Runtime CPU FP32, median translation difference (m)", 0.01),
    ("TensorRT FP16 vs ONNX Runtime CPU FP32, median rotation difference (deg)", 0.1),
)


@dataclass
class Report:
    machine: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    parity: list[dict[str, Any]] = field(default_factory=list)
    bench: list[dict[str, Any]] = field(default_factory=list)
    evaluate: dict[str, Any] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def step(self, name: str, seconds: float, **extra: Any) -> None:
        self.steps.append({"step": name, "seconds": round(seconds, 1), **extra})
        print(f"gpu_check: {name} ({seconds:.1f} s)", flush=True)

    def skip(self, name: str, why: str) -> None:
        self.skipped.append({"step": name, "reason": why})
        print(f"gpu_check: SKIPPED {name}: {why}", flush=True)


def gpu_status() -> tuple[list[str], list[str]]:
    """(why TensorRT cannot run, why ONNX Runtime CUDA cannot run); empty lists: they can."""
    import onnxruntime as ort

    from pose_regressor.engines import tensorrt_unavailable_reasons
    from pose_regressor.engines.base import cuda_device_count

    ort_cuda = []
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        ort_cuda.append("this onnxruntime build has no CUDAExecutionProvider (run `make setup-gpu`)")
    if cuda_device_count() == 0:
        ort_cuda.append("no CUDA GPU (the CUDA driver reports no device or is not installed)")
    return tensorrt_unavailable_reasons(), ort_cuda


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "host": platform.node()}
    smi = shutil.which("nvidia-smi")
    if smi:
        out = subprocess.run(
            [smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        info["gpu"] = out.stdout.strip() or None
    else:
        info["gpu"] = None
    return info


# ----------------------------------------------------------------------------------------------
# Bundles from freshly initialised weights
# ----------------------------------------------------------------------------------------------


def spread_output_layer(model: Any, cameras: int, width: int, height: int) -> None:
    """Re-draws the output layer of an untrained model so that its poses vary by metres and by
    arbitrary rotations from one camera set to the next, as a trained model's do.

    Training initialises that layer near zero (poses within ~1e-6 m of each other), which would make
    any parity tolerance meaningless. The new weights are scaled by the spread of the hidden vector
    over random camera sets, and the bias centres the outputs; no data is fitted."""
    import torch
    from torch import nn

    from pose_regressor_training.export import ExportWrapper

    hidden: list[torch.Tensor] = []
    hook = model.fc_out.register_forward_hook(lambda _m, args, _out: hidden.append(args[0].detach()))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        wrapper = ExportWrapper(model)
        for _ in range(8):
            images = torch.randint(
                0, 256, (cameras, height, width, 3), dtype=torch.uint8, generator=generator
            )
            wrapper(images, torch.ones(1, model.config.hidden_dim))
        hook.remove()
        h = torch.cat([x.reshape(-1, x.shape[-1]) for x in hidden])
        spread = float(h.std(dim=0).mean().clamp_min(1e-12))
        weight = model.fc_out.weight
        nn.init.normal_(weight, std=1.0 / (spread * weight.shape[1] ** 0.5), generator=generator)
        model.fc_out.bias.copy_(-(weight @ h.mean(dim=0)))
        model.set_translation_stats(torch.tensor([4.0, 3.0, 1.5]), torch.tensor([2.0, 1.5, 0.5]))


def spread_variance_heads(model: Any, seed: int) -> None:
    """Re-draws the last layer of the variance head and of the error head so that both vary from
    one camera set to the next by several ln units and meet in the graph's log-sum-exp: untrained,
    the error head adds exp(-16) and the variance head a near-constant, which no parity check sees."""
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for head, level in ((model.fc_log_variance, -3.0), (model.fc_error_log_variance, -4.0)):
            last = [m for m in head.modules() if isinstance(m, nn.Linear)][-1]
            nn.init.normal_(last.weight, std=3.0 / last.weight.shape[1] ** 0.5, generator=generator)
            last.bias.fill_(level)


def export_fresh_bundle(
    out: Path, name: str, backbone: str, cameras: int, width: int, height: int, uncertainty: str = ""
) -> Path:
    """A checkpoint of an untrained, seeded model (output layer spread out) exported with S = 32;
    for `uncertainty` "heads" the default recipe's inference graph with an error head (dropout 0
    at inference, S = 1), for "ensemble" two such models of other seeds as one bundle (S = 2)."""
    import math

    import torch

    from pose_regressor.rig import preset_rig
    from pose_regressor_training.checkpoint import Checkpoint, save_checkpoint
    from pose_regressor_training.export import export_bundle
    from pose_regressor_training.models import ModelConfig, build_model

    rig = preset_rig("quad" if cameras == 4 else "mono", 160, 120)
    config = ModelConfig(backbone=backbone, num_cameras=cameras, image_width=width, image_height=height)
    if backbone == "small_cnn":  # a few-second export on two CPU cores
        config = replace(config, small_cnn_width=8, hidden_dim=64)
    if uncertainty:  # training/configs/synth_quad.yaml's model section, smaller, plus an error head
        config = replace(
            config, rotation="rot6d", track_tta=True, track_yaw_step=2 * math.pi / cameras,
            variance_head=True, variance_head_hidden=16, shift_variance=True, covariance="heads",
            error_head=True, error_head_hidden=16,
        )  # fmt: skip
    checkpoints = []
    for seed in range(2 if uncertainty == "ensemble" else 1):
        torch.manual_seed(seed)
        model = build_model(config).eval()
        spread_output_layer(model, cameras, width, height)
        if uncertainty:
            spread_variance_heads(model, seed)
        checkpoint = out / "checkpoints" / f"{name}{'' if seed == 0 else seed}.pt"
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(checkpoint, Checkpoint(model_config=config, model=model.state_dict(), rig=rig))
        checkpoints.append(checkpoint)
    bundle = out / "bundles" / name
    samples = None if uncertainty else 32  # heads: the bundle's own S (1, or one row per member)
    export_bundle(checkpoints[0], bundle, mc_samples=samples, overwrite=True, ensemble=checkpoints[1:])
    return bundle


# ----------------------------------------------------------------------------------------------
# Parity: the same inputs and masks through every engine, against ONNX Runtime CPU
# ----------------------------------------------------------------------------------------------


def rotation_deg(q1: FloatArray, q2: FloatArray) -> FloatArray:
    """Angle between unit quaternions, per row, in degrees (q and -q are the same rotation)."""
    dot = np.abs(np.sum(q1 * q2, axis=1) / (np.linalg.norm(q1, axis=1) * np.linalg.norm(q2, axis=1)))
    angle: FloatArray = np.degrees(2.0 * np.arccos(np.clip(dot, 0.0, 1.0)))
    return angle


def parity(bundle_dir: Path, engines: dict[str, Any], sets: int = 4) -> list[dict[str, Any]]:
    from pose_regressor.bundle import load_bundle
    from pose_regressor.engines import load_engine
    from pose_regressor.uncertainty import dropout_masks

    bundle = load_bundle(bundle_dir)
    rng = np.random.default_rng(1)
    shape = (len(bundle.cameras), bundle.input_height, bundle.input_width, 3)
    inputs = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(sets)]
    if bundle.dropout > 0:  # S = 32: the deterministic mask and 31 MC-dropout masks
        masks = np.concatenate(
            [
                np.ones((1, bundle.hidden_dim), np.float32),
                dropout_masks(31, bundle.hidden_dim, bundle.dropout, rng),
            ]
        )
    else:  # scored without dropout: the bundle's own rows (1, or one per ensemble member), all ones
        masks = np.ones((bundle.mc_samples, bundle.hidden_dim), np.float32)
    reference = load_engine(bundle, "onnxruntime", providers=["CPUExecutionProvider"])
    expected = [reference.infer_outputs(images, masks) for images in inputs]
    rows = []
    for label, engine in engines.items():
        t_err, r_err, lv_err = [], [], []
        for images, ref in zip(inputs, expected, strict=True):
            got = engine.infer_outputs(images, masks)
            t_err.append(np.linalg.norm(got.translation - ref.translation, axis=1))
            r_err.append(rotation_deg(got.rotation, ref.rotation))
            if ref.log_variance is not None and got.log_variance is not None:
                lv_err.append(np.abs(got.log_variance - ref.log_variance).max(axis=1))
        t_all, r_all = np.concatenate(t_err), np.concatenate(r_err)
        row = {
            "bundle": bundle_dir.name,
            "engine": label,
            "ran_on": str(engine.describe()),
            "reference": "onnxruntime CPU FP32",
            "rows": len(masks),
            "translation_m_max": float(t_all.max()),
            "translation_m_median": float(np.median(t_all)),
            "rotation_deg_max": float(r_all.max()),
            "rotation_deg_median": float(np.median(r_all)),
        }
        if bundle.log_variance_output:
            # an engine that dropped the output is a failure, not a pass on the pose alone
            row["log_variance_max"] = float(np.concatenate(lv_err).max()) if lv_err else float("inf")
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------
# Bench, node run
# ----------------------------------------------------------------------------------------------


def bench(
    bundle_dir: Path, label: str, backend: str, options: dict[str, Any], repeats: int
) -> dict[str, Any]:
    from pose_regressor.bench import run_bench

    # settle 10 ms instead of 50 between rows: ~100 s less over the run's cells (8-minute budget)
    result = run_bench(
        bundle_dir,
        backend,
        mc_samples=32,
        repeats=repeats,
        warmup=5,
        engine_options=options,
        settle_s=0.01,
        quiet=True,
    )
    rows = {r.name: r for r in result.rows}
    return {
        "bundle": bundle_dir.name,
        "engine": label,
        "ran_on": result.settings["engine"],  # e.g. shows a CUDA provider that fell back to the CPU
        "T": rows["mc"].cameras,
        "S1_total_ms": {
            "p50": rows["deterministic"].stats["total"][0],
            "p99": rows["deterministic"].stats["total"][1],
        },
        "S32_total_ms": {"p50": rows["mc"].stats["total"][0], "p99": rows["mc"].stats["total"][1]},
        "S32_infer_ms": {"p50": rows["mc"].stats["infer"][0], "p99": rows["mc"].stats["infer"][1]},
        "mc_cost_ratio": result.mc_cost_ratio,
        "naive_over_ours": result.naive_over_ours,
    }


def run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def synth_bag(out: Path, seconds: float, width: int, height: int) -> tuple[Path, Path]:
    data, bag = out / "synth", out / "synth_quad.bag"
    frames = int(seconds * BAG_FPS)
    result = run(
        [
            sys.executable, "-m", "pose_regressor_training.cli", "synth", "--out", str(data), "--rig", "quad",
            "--frames", str(frames), "--frames-per-trajectory", str(frames), "--fps", str(BAG_FPS),
            "--width", str(width), "--height", str(height), "--bag", str(bag), "--split", "all",
            "--overwrite", "--quiet",
        ],
        timeout=300,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"pose-train synth failed: {result.stderr.strip()[-500:]}")
    return data, bag


def evaluate(bag: Path, bundle_dir: Path, backend: str, out: Path) -> dict[str, Any]:
    result = run(
        [
            sys.executable, "-m", "pose_regressor.cli", "eval-node", "--bag", str(bag), "--bundle",
            str(bundle_dir), "--backend", backend, "--out", str(out),
        ],
        timeout=300,
    )  # fmt: skip
    metrics_file = out / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    keys = ("output_rate_ratio", "e2e_latency_ms_p50", "e2e_latency_ms_p99", "engine_ms_p50", "dropped_sets")
    summary = {k: metrics.get(k) for k in keys}
    summary.update(backend=backend, bundle=bundle_dir.name, exit_code=result.returncode)
    if result.returncode != 0:
        summary["error"] = (result.stderr.strip() or result.stdout.strip())[-800:]
    return summary


# ----------------------------------------------------------------------------------------------
# The run: plan, steps, report
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleSpec:
    name: str
    backbone: str
    cameras: int
    width: int
    height: int
    plans: tuple[str, ...]  # TensorRT precisions built and checked (on a GPU)
    bench_plans: tuple[str, ...]  # TensorRT precisions benchmarked
    uncertainty: str = ""  # "", or "heads" / "ensemble": `export_fresh_bundle`; parity only, no bench


SMALL = BundleSpec("small", "small_cnn", 4, 64, 48, ("fp32",), ())
# The graphs the recipes ship, small: log-sum-exp of two heads, the shift spread, rot6d, S = 1 or K.
HEADS = BundleSpec("small_heads", "small_cnn", 4, 64, 48, ("fp32", "fp16"), (), "heads")
ENSEMBLE = BundleSpec("small_ensemble", "small_cnn", 4, 64, 48, ("fp32",), (), "ensemble")
# T = 1 and 4 of the same network for the bench; every precision on the 4-camera target bundle only
# (TensorRT builds dominate the 8-minute budget).
RESNET_T1 = BundleSpec("resnet18_t1", "resnet18", 1, 224, 224, ("fp16",), ("fp16",))
RESNET_T4 = BundleSpec("resnet18_t4", "resnet18", 4, 224, 224, ("fp32", "fp16", "int8"), ("fp32", "fp16"))
CPU = {"providers": ["CPUExecutionProvider"]}
CUDA = {"providers": ["CUDAExecutionProvider"]}


class Check:
    """The acceptance run: each method one step, results and skips collected in `report`."""

    def __init__(self, out: Path, quick: bool, repeats: int, cpu_repeats: int) -> None:
        self.out, self.quick = out, quick
        self.repeats, self.cpu_repeats = repeats, cpu_repeats
        self.report = Report(machine=machine_info())
        self.trt_missing, self.cuda_missing = gpu_status()
        self.report.machine.update(
            tensorrt_unavailable=self.trt_missing, onnxruntime_cuda_unavailable=self.cuda_missing
        )
        self.trt_why, self.cuda_why = "; ".join(self.trt_missing), "; ".join(self.cuda_missing)

    def timed(self, name: str, action: Any, *args: Any) -> Any:
        began = time.monotonic()
        result = action(*args)
        self.report.step(name, time.monotonic() - began)
        return result

    def export(self, specs: list[BundleSpec]) -> dict[str, Path]:
        bundles = {}
        for s in specs:
            what = f"export {s.name} ({s.backbone}, T={s.cameras}, {s.width}x{s.height}, untrained)"
            if s.uncertainty:
                what += f", {s.uncertainty}: variance and error heads, without dropout"
            bundles[s.name] = self.timed(
                what,
                export_fresh_bundle,
                self.out,
                s.name,
                s.backbone,
                s.cameras,
                s.width,
                s.height,
                s.uncertainty,
            )
        return bundles

    def build_plans(self, spec: BundleSpec, bundle: Path, calibration: Path) -> list[str]:
        """Builds the spec's TensorRT plans with `pose-train build-engine`; the precisions built."""
        built = []
        for precision in spec.plans:
            command = [
                sys.executable, "-m", "pose_regressor_training.cli", "build-engine",
                "--bundle", str(bundle), "--precision", precision,
            ]  # fmt: skip
            if precision == "int8":
                command += ["--calib-data", str(calibration), "--calib-frames", "64"]
            result = self.timed(f"build-engine {spec.name} {precision}", run, command, 600)
            if result.returncode != 0:
                self.report.failures.append(
                    f"build-engine {spec.name} {precision}: {result.stderr.strip()[-300:]}"
                )
            else:
                built.append(precision)
        return built

    def check_parity(self, spec: BundleSpec, bundle: Path, calibration: Path) -> list[str]:
        """Every engine this machine runs vs ONNX Runtime CPU; returns the TensorRT plans built."""
        from pose_regressor.engines import load_engine

        engines: dict[str, Any] = {"torch reference (CPU)": load_engine(bundle, "torch", device="cpu")}
        built: list[str] = []
        if self.trt_missing:
            self.report.skip(
                f"TensorRT plans {'/'.join(spec.plans).upper()} and their parity ({spec.name})", self.trt_why
            )
        else:
            built = self.build_plans(spec, bundle, calibration)
            for precision in built:
                engines[f"tensorrt {precision.upper()}"] = load_engine(
                    bundle, "tensorrt", precision=precision
                )
        if self.cuda_missing:
            self.report.skip(f"ONNX Runtime CUDA parity ({spec.name})", self.cuda_why)
        else:
            engines["onnxruntime CUDA"] = load_engine(bundle, "onnxruntime", **CUDA)
        rows = self.timed(f"parity {spec.name}: {', '.join(engines)}", parity, bundle, engines)
        for row in rows:
            row["checked"] = "FP16" not in row["engine"] and "INT8" not in row["engine"]  # those: reported
            if row["checked"]:
                log_variance = row.get("log_variance_max", 0.0)
                row["pass"] = (
                    row["translation_m_max"] <= TRANSLATION_TOL_M
                    and row["rotation_deg_max"] <= ROTATION_TOL_DEG
                    and log_variance <= LOG_VARIANCE_TOL
                )
                if not row["pass"]:
                    self.report.failures.append(
                        f"parity {row['bundle']} {row['engine']}: {row['translation_m_max']:.2e} m, "
                        f"{row['rotation_deg_max']:.2e} deg, log-variance {log_variance:.2e} "
                        f"(tolerance {TRANSLATION_TOL_M} m, {ROTATION_TOL_DEG} deg, {LOG_VARIANCE_TOL})"
                    )
        self.report.parity.extend(rows)
        return built

    def bench(self, spec: BundleSpec, bundle: Path, plans: list[str]) -> None:
        cells: list[tuple[str, str, dict[str, Any], int]] = [
            ("onnxruntime CPU", "onnxruntime", CPU, self.cpu_repeats)
        ]
        if not self.cuda_missing and spec is not SMALL:  # the small bundle is the CI one: CPU only
            cells.append(("onnxruntime CUDA", "onnxruntime", CUDA, self.repeats))
        for precision in (p for p in spec.bench_plans if p in plans):
            cells.append(
                (f"tensorrt {precision.upper()}", "tensorrt", {"precision": precision}, self.repeats)
            )
        for label, backend, options, repeats in cells:
            row = self.timed(f"bench {spec.name} {label}", bench, bundle, label, backend, options, repeats)
            self.report.bench.append(row)

    def node_run(self, bag: Path, bundle: Path) -> None:
        backend = "onnxruntime" if self.trt_missing else "tensorrt"
        if self.trt_missing:
            self.report.skip(
                "evaluate --backend tensorrt", f"{self.trt_why}; ran --backend onnxruntime instead"
            )
        result = self.timed(
            f"evaluate --backend {backend} on {bundle.name}",
            evaluate,
            bag,
            bundle,
            backend,
            self.out / "evaluate",
        )
        self.report.evaluate = result
        if result["exit_code"] != 0:
            self.report.failures.append(
                f"node run (evaluate --backend {backend}) exited {result['exit_code']}"
            )

    def run(self, bag_seconds: float) -> Report:
        specs = [SMALL, HEADS, ENSEMBLE]
        if self.quick:
            self.report.skip("resnet18 224x224 bundles (T=1, T=4)", "--quick: the small bundles only")
        else:
            specs += [RESNET_T1, RESNET_T4]
        bundles = self.export(specs)
        size = (64, 48) if self.quick else (160, 120)
        data, bag = self.timed(
            f"synth quad-rig bag, {bag_seconds:g} s at {BAG_FPS:g} Hz",
            synth_bag,
            self.out,
            bag_seconds,
            *size,
        )
        for spec in specs:
            plans = self.check_parity(spec, bundles[spec.name], data)
            if not spec.uncertainty:  # the uncertainty graphs are checked for parity only
                self.bench(spec, bundles[spec.name], plans)
        if self.cuda_missing:
            self.report.skip("bench ONNX Runtime CUDA", self.cuda_why)
        if self.trt_missing:
            self.report.skip("bench TensorRT", self.trt_why)
        # the target bundle where TensorRT runs; the small one on the CPU (resnet18 at 30 Hz is a GPU load)
        self.node_run(
            bag, bundles[RESNET_T4.name] if not self.trt_missing and not self.quick else bundles[SMALL.name]
        )
        fill_targets(self.report)
        return self.report


def fill_targets(report: Report) -> None:
    def find(rows: list[dict[str, Any]], engine: str) -> dict[str, Any] | None:
        return next((r for r in rows if r["bundle"] == RESNET_T4.name and r["engine"] == engine), None)

    fp16, par16 = find(report.bench, "tensorrt FP16"), find(report.parity, "tensorrt FP16")
    node = report.evaluate if report.evaluate.get("backend") == "tensorrt" else {}
    measured = [
        fp16["S32_infer_ms"]["p50"] if fp16 else None,
        node.get("e2e_latency_ms_p50"),
        fp16["mc_cost_ratio"] if fp16 else None,
        par16["translation_m_median"] if par16 else None,
        par16["rotation_deg_median"] if par16 else None,
    ]
    for (measure, target), value in zip(TARGETS, measured, strict=True):
        verdict = None if value is None else bool(value <= target)
        report.targets.append({"measure": measure, "target": target, "measured": value, "pass": verdict})


def target_rows(report: Report) -> list[str]:
    rows = ["| measure | target | measured | result |", "|---|---|---|---|"]
    for t in report.targets:
        value = "unmeasured" if t["measured"] is None else f"{t['measured']:.4g}"
        verdict = "unmeasured" if t["pass"] is None else ("pass" if t["pass"] else "miss")
        rows.append(f"| {t['measure']} | <= {t['target']:g} | {value} | {verdict} |")
    return rows


def write_reports(report: Report, out: Path) -> None:
    data = {name: getattr(report, name) for name in report.__dataclass_fields__}
    (out / "gpu_report.json").write_text(json_text(data))  # an infinite difference: null
    lines = ["# GPU acceptance report (scripts/gpu_check.sh)", ""]
    lines.append(f"GPU: {report.machine.get('gpu') or 'none'}; Python {report.machine['python']}")
    lines += ["", "## Skipped steps", ""]
    lines += [f"- {s['step']}: {s['reason']}" for s in report.skipped] or ["- none"]
    lines += ["", "## Parity vs ONNX Runtime CPU FP32 (same inputs and masks)", ""]
    lines += [
        "| bundle | engine | S | t max (m) | t median (m) | r max (deg) | r median (deg) | log-var max "
        "| result |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report.parity:
        verdict = ("pass" if r.get("pass") else "FAIL") if r["checked"] else "reported"
        log_variance = f"{r['log_variance_max']:.2e}" if "log_variance_max" in r else "none"
        lines.append(
            f"| {r['bundle']} | {r['engine']} | {r['rows']} "
            f"| {r['translation_m_max']:.2e} | {r['translation_m_median']:.2e} "
            f"| {r['rotation_deg_max']:.2e} | {r['rotation_deg_median']:.2e} | {log_variance} | {verdict} |"
        )
    lines += ["", "## Bench (ms per camera set: preprocess + infer + postprocess)", ""]
    lines += [
        "| bundle | engine | T | S=1 p50 / p99 | S=32 p50 / p99 | S=32 infer p50 | MC cost | naive/ours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b in report.bench:
        s1, s32 = b["S1_total_ms"], b["S32_total_ms"]
        lines.append(
            f"| {b['bundle']} | {b['engine']} | {b['T']} | {s1['p50']:.2f} / {s1['p99']:.2f} "
            f"| {s32['p50']:.2f} / {s32['p99']:.2f} | {b['S32_infer_ms']['p50']:.2f} "
            f"| {b['mc_cost_ratio']:.3f} | {b['naive_over_ours']:.2f} |"
        )
    lines += ["", "## Node run (pose-regressor eval-node, synthetic quad-rig bag at 30 Hz)", ""]
    lines += [f"- {key}: {value}" for key, value in report.evaluate.items()]
    lines += ["", "## Targets (issue 13)", "", *target_rows(report), "", "## Result", ""]
    lines += [f"- FAILED: {f}" for f in report.failures] or ["- parity and node run: OK"]
    (out / "gpu_report.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/gpu_check"), help="report folder")
    parser.add_argument(
        "--quick", action="store_true", help="the three small bundles only, few repetitions (CI)"
    )
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    repeats, cpu_repeats, bag_seconds = (10, 10, 2.0) if args.quick else (100, 20, 10.0)
    report = Check(out, args.quick, repeats, cpu_repeats).run(bag_seconds)
    write_reports(report, out)
    print("\n".join(["", *target_rows(report)]))
    for skipped in report.skipped:
        print(f"skipped: {skipped['step']}: {skipped['reason']}")
    print(f"gpu_check: wrote {out}/gpu_report.md and gpu_report.json in {time.monotonic() - started:.0f} s")
    for failure in report.failures:
        print(f"gpu_check: FAILED {failure}", file=sys.stderr)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
