"""One experiment run in its own folder: trained with `fit`, evaluated on val and test, resumable.

A folder is reused only for the run it was made for, so that a table never mixes settings: where
it holds a checkpoint, the whole training config stored in it must equal the one the run resolves
to now (the config file with the overrides), so that a change of the config file itself (a new
default) is noticed too; where it holds none, RUN_DIR/run.json's overrides must equal the run's.
`NOT_IDENTITY_KEYS` do not change the weights and are not compared. A folder made for another run
is refused with one line that names what differs. A run whose two metrics files exist is finished
and is not touched again; one with a last.pt continues from it (`fit`'s resume), one without
restarts.
Shared by ablation.py and synth_results.py.

Runs train the epochs they name: `optim.time_budget_minutes` (which synth_quad.yaml sets) is off
here unless a run's overrides set it, so a slow machine cannot shorten one run of a table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pose_regressor_training.checkpoint import CheckpointError, load_checkpoint
from pose_regressor_training.evaluate import evaluate_checkpoint_splits, write_evaluation
from pose_regressor_training.train import fit
from pose_regressor_training.train_config import TrainConfig, load_train_config
from pose_regressor_training.typed_config import to_mapping

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
#: Every run trains its epochs whatever the machine's speed (a run's own overrides may set a budget).
NO_TIME_BUDGET = "optim.time_budget_minutes=0"
DEFAULT_CONFIG = CONFIGS / "synth_quad.yaml"
SPLITS = ("val", "test")


class RunFolderError(RuntimeError):
    """A run folder cannot be used (made with other settings); the message says which and why."""


@dataclass(frozen=True)
class RunResult:
    """What a finished run folder holds: its val and test metrics and its per-epoch history."""

    folder: Path
    val: dict[str, Any]
    test: dict[str, Any]
    history: list[dict[str, Any]]

    @property
    def train_minutes(self) -> float:
        """Wall time of training, validation included, summed over resumes (history.json)."""
        return float(self.history[-1]["seconds"]) / 60 if self.history else float("nan")


def is_finished(folder: Path) -> bool:
    return all((folder / f"eval_{split}" / "metrics.json").is_file() for split in SPLITS)


def ensure_run(
    folder: Path,
    overrides: list[str],
    mc_samples: int,
    config: Path = DEFAULT_CONFIG,
    plots: bool = True,
    eval_frames: int = 0,
) -> tuple[RunResult, bool]:
    """The run of `config` + `overrides` in `folder`, trained and evaluated unless already finished;
    `plots`: also the evaluation's plots (trajectory, error CDF, error vs std) beside the metrics;
    `eval_frames` > 0: val and test scored on about that many frames each (whole trajectories).

    Returns the result and whether this call trained or evaluated anything (False: skipped).
    Raises RunFolderError for a folder made for another run; `fit`'s errors pass through.
    """
    train_config = load_train_config(config, [NO_TIME_BUDGET, *overrides])
    _check_settings(folder, overrides, train_config)
    if is_finished(folder):
        return read_run(folder), False
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps({"overrides": overrides}, indent=1) + "\n")
    fit(train_config, folder, resume=(folder / "last.pt").is_file(), progress=False)
    # No retrieval baseline: it reads every training image and is the same for every run.
    evaluations = evaluate_checkpoint_splits(
        folder / "best.pt", SPLITS, mc_samples=mc_samples, baseline=False, max_frames=eval_frames
    )
    for split, evaluation in zip(SPLITS, evaluations, strict=True):
        if plots:
            write_evaluation(evaluation, folder / f"eval_{split}")
        else:
            (folder / f"eval_{split}").mkdir(exist_ok=True)
            metrics = json.dumps(evaluation.metrics, indent=2)
            (folder / f"eval_{split}" / "metrics.json").write_text(metrics + "\n")
    return read_run(folder), True


def read_run(folder: Path) -> RunResult:
    """The metrics and history of a finished run folder."""
    metrics = {split: json.loads((folder / f"eval_{split}" / "metrics.json").read_text()) for split in SPLITS}
    history_path = folder / "history.json"
    history = json.loads(history_path.read_text()) if history_path.is_file() else []
    return RunResult(folder, metrics["val"], metrics["test"], history)


#: Config keys that do not change what a run trains: validation reads the model with its own
#: random generator, so the weights are the same bit for bit whatever `eval_every` is (only which
#: validated epoch becomes best.pt can differ). A mode that pins one of them later (the full mode's
#: eval_every=2, which synth_quad.yaml said when its first runs were made) keeps their folders.
NOT_IDENTITY_KEYS = ("eval_every",)

#: Overrides that a mode added later to keep what synth_quad.yaml said when its first runs were
#: made (ablation_plan.FIRST_HEAD): with exactly this value they train what those runs trained.
PINNED_LATER = {"model.hidden_dim": "256", "model.covariance": "dropout"}


def _identity(overrides: list[str]) -> list[str]:
    kept = []
    for item in overrides:
        key, _, value = (part.strip() for part in item.partition("="))
        if key not in NOT_IDENTITY_KEYS and PINNED_LATER.get(key) != value:
            kept.append(item)
    return kept


def _check_settings(folder: Path, overrides: list[str], config: TrainConfig) -> None:
    stored = _stored_config(folder)
    if stored is not None:
        differences = _differences(stored, _flat(to_mapping(config)))
        if differences:
            raise RunFolderError(
                f"{folder} was made with other settings ({'; '.join(differences)}); "
                "choose another --out or remove that folder"
            )
        return
    settings = folder / "run.json"
    if not settings.is_file():
        return
    try:
        before = json.loads(settings.read_text()).get("overrides")
        same = isinstance(before, list) and _identity(before) == _identity(overrides)
    except (OSError, ValueError, AttributeError):
        same = False
    if not same:
        raise RunFolderError(
            f"{folder} was made with other settings ({settings}); choose another --out or remove that folder"
        )


def _stored_config(folder: Path) -> dict[str, Any] | None:
    """The flattened training config of the folder's checkpoint (last.pt, else best.pt); None where
    there is none or it cannot be read (then run.json decides)."""
    for name in ("last.pt", "best.pt"):
        path = folder / name
        if path.is_file():
            try:
                return _flat(to_mapping(load_checkpoint(path).config))
            except CheckpointError:
                return None
    return None


def _flat(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys as overrides spell them; a loss's or a loader's free-form params stay one value."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and key not in ("params", "options"):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _differences(stored: dict[str, Any], now: dict[str, Any], shown: int = 3) -> list[str]:
    """'key: X there, Y now' for the first `shown` keys that differ (besides NOT_IDENTITY_KEYS)."""
    keys = sorted(key for key in stored.keys() | now.keys() if key not in NOT_IDENTITY_KEYS)
    differing = [key for key in keys if stored.get(key) != now.get(key)]
    lines = [f"{key}: {stored.get(key)!r} there, {now.get(key)!r} now" for key in differing[:shown]]
    if len(differing) > shown:
        lines.append(f"and {len(differing) - shown} more")
    return lines
