"""The last lines of `make demo`: what the trained model and the running node achieved, against
the demo's targets, and how to get the full-quality model.

    .venv/bin/python scripts/demo_summary.py --run out/demo/run --node out/demo/evaluate --seconds 512
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# What the demo's model must reach on the node (held-out trajectories replayed from the bag).
TARGET_NODE_M, TARGET_NODE_DEG = 0.35, 6.0
TARGET_SECONDS = 600


def read(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def number(value: float | None, digits: int = 2) -> str:
    """A metric as printed: metrics.json holds null for an undefined one (a constant std's Spearman)."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def covariance_line(u: dict[str, Any], mean_nees: float) -> str:
    """`spearman(std, error) position 0.47, rotation 0.61; mean NEES 5.2 (ideal 6), ...`."""
    return (
        "spearman(std, error) "
        f"position {number(u['spearman_position_std_vs_error'])}, "
        f"rotation {number(u['spearman_rotation_std_vs_error'])}; "
        f"mean NEES {number(mean_nees, 1)} (ideal 6), "
        f"{number(100 * u['inside_95_ellipsoid']['6dof'], 1)}% inside the 95% ellipsoid, "
        f"gross-error flag AUROC {number(u['uncertain_flag']['auroc_uncertain_flag'])}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--run", type=Path, required=True, help="the fit run folder (with eval_heads_test/ or eval_test/)"
    )
    parser.add_argument("--node", type=Path, required=True, help="the eval-node output folder")
    parser.add_argument("--seconds", type=int, required=True, help="the demo's wall time")
    args = parser.parse_args()
    # eval-checkpoint's folder: eval_heads_test/ for the default (model.covariance: heads),
    # eval_test/ for a recipe scored by MC dropout
    scored = [args.run / name for name in ("eval_heads_test", "eval_test") if (args.run / name).is_dir()]
    if not scored:
        raise SystemExit(f"demo_summary: {args.run} has no eval_heads_test/ or eval_test/ folder")
    offline = read(scored[0] / "metrics.json")
    node = read(args.node / "metrics.json")
    uncertainty = offline.get("uncertainty", {})
    baseline = offline.get("retrieval_baseline", {})
    met = node["median_translation_m"] <= TARGET_NODE_M and node["median_rotation_deg"] <= TARGET_NODE_DEG
    print(f"demo done in {args.seconds} s (target {TARGET_SECONDS} s)")
    print(
        f"  offline, {offline['frames']} held-out test frames: "
        f"median {offline['median_translation_m']:.3f} m "
        f"{offline['median_rotation_deg']:.2f} deg"
        + (
            f"; nearest-training-frame retrieval {baseline['median_translation_m']:.3f} m "
            f"{baseline['median_rotation_deg']:.2f} deg"
            if baseline
            else ""
        )
    )
    if uncertainty:
        print(f"  uncertainty: {covariance_line(uncertainty, uncertainty['mean_nees_after'])}")
    print(
        f"  node over ROS 2, {node['published']} poses: median {node['median_translation_m']:.3f} m "
        f"{node['median_rotation_deg']:.2f} deg (target <= {TARGET_NODE_M} m, <= {TARGET_NODE_DEG:g} deg: "
        f"{'met' if met else 'NOT met'})"
    )
    if "uncertain_flag" in node:  # eval-node scores the covariances the node published
        print(f"  the node's published covariance: {covariance_line(node, node['mean_nees'])}")
    print("full-quality model (0.124-0.126 m, 1.68-1.81 deg over 3 seeds, 80 held-out trajectories):")
    print(
        "  16,000 frames at 128x96, the default config: 40 epochs in at most 15 min (fewer epochs "
        "on a slower CPU), about 20 min in all: DEMO_FULL=1 make demo"
    )


if __name__ == "__main__":
    main()
