"""A deep ensemble of K models trained alike (seeds): one module, one exported graph, one bundle.

Row s of the masks (and of every output) goes to member s mod K, so S rows with S a multiple of
K give each member S / K rows. What the rows carry is the ensemble's covariance source
(`models.config.COVARIANCES`):

* ``dropout``: each row is an MC-dropout sample of its member. The sample covariance the node
  computes over the S rows is the members' MC spread plus their disagreement about the pose (the
  law of total variance). The members' variance heads are left out: the form for members
  without one. (On small real image sets, docs/results.md's bonsai, the disagreement ranks the
  position errors where one model's std does not; there ``dropout`` and ``heads`` tie.)
* ``heads``: the members run without dropout (the ensemble's dropout is 0, so its masks are
  ones and S = K rows are all there is), and each row also carries its member's variance head
  (with the track-shift spread where the members have it) in the ``log_variance`` output. The
  node's covariance is then the members' disagreement plus the mean of their predicted variances:
  the deep ensemble of Lakshminarayanan et al. (2017). On the 16,000-frame synthetic room the heads
  rank the errors better than any MC spread, which only lowers the ranking (docs/results.md).

``auto`` (the commands' default) is ``heads`` for members with a log-variance output (a variance
head or the track-shift spread), else ``dropout``.

`EnsembleRegressor` has the interface the exporter, the ONNX checks, the PyTorch reference engine
and the evaluation use of a `PoseRegressor`: `config` (a member's, without the log-variance
output for ``dropout``, with dropout 0 for ``heads``), `mask_dim`, `forward`, `inference_outputs`
and `random_masks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from pose_regressor.bundle import MAX_ENSEMBLE_MEMBERS
from pose_regressor_training.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from pose_regressor_training.models import ModelConfig, PoseRegressor

# What the commands take: where an ensemble's covariance comes from (models.config.COVARIANCES,
# the module docstring) or auto (`resolve_covariance`); defined with the model's config, torch-free.
from pose_regressor_training.models.config import ENSEMBLE_COVARIANCE_CHOICES as ENSEMBLE_COVARIANCE_CHOICES
from pose_regressor_training.models.model import PoseOutput, row_group_one_hot
from pose_regressor_training.typed_config import to_mapping


class EnsembleError(ValueError):
    """Checkpoints that cannot form one ensemble."""


def resolve_covariance(member: ModelConfig, requested: str) -> str:
    """`requested`, or for ``auto`` ``heads`` when the members output a log-variance, else ``dropout``."""
    if requested == "auto":
        return "heads" if member.log_variance_output else "dropout"
    return requested


def scored_as_heads(config: ModelConfig, requested: str) -> bool:
    """Whether eval or export treats one model as the ensemble of its heads (`configure_heads`):
    a model of K > 1 heads, an explicit `--ensemble-covariance`, or a recipe that chose
    `model.covariance: heads`."""
    return config.heads > 1 or requested != "auto" or config.covariance == "heads"


def configure_heads(model: PoseRegressor, requested: str) -> str:
    """One model as an ensemble of its K heads (`model.heads`; K = 1 for the usual one head): row s
    of its outputs is head s mod K. Returns `requested` resolved as for an ensemble (``auto`` is
    the model's `covariance` for a model of one head, ``dropout`` unless its recipe chose
    ``heads``); for ``heads`` the model's
    dropout is switched off, so that its masks are ones and S = K rows, one per head, are all there
    is: the deterministic pose(s), and the covariance from the variance head (and track-shift
    spread), plus the heads' disagreement for K > 1."""
    if requested not in ENSEMBLE_COVARIANCE_CHOICES:
        raise EnsembleError(
            f"an ensemble's covariance is one of {', '.join(ENSEMBLE_COVARIANCE_CHOICES)}, got {requested!r}"
        )
    if requested == "auto" and model.config.heads == 1:
        requested = model.config.covariance  # the recipe's choice (model.covariance)
        if requested == "dropout":
            return "dropout"
    covariance = resolve_covariance(model.config, requested)
    if covariance == "heads":
        if not model.config.log_variance_output:
            raise EnsembleError(
                "--ensemble-covariance heads needs a variance head (model.variance_head) or the "
                "track-shift spread (model.shift_variance); this model has neither: use dropout"
            )
        model.config = replace(model.config, dropout=0.0)
    return covariance


def ensemble_config(member: ModelConfig, covariance: str = "dropout") -> ModelConfig:
    """What the ensemble's graph is, as a `ModelConfig`: for ``dropout`` a member's without the
    log-variance output, for ``heads`` a member's with dropout 0 (its masks are ones)."""
    if covariance == "heads":
        return replace(member, dropout=0.0)
    return replace(member, variance_head=False, shift_variance=False, error_head=False)


def ensemble_samples(members: int, requested: int, covariance: str = "dropout") -> int:
    """The largest multiple of `members` up to `requested` (at least `members`): every member gets
    the same number of MC samples. Members without dropout (``heads``) give one row each."""
    if covariance == "heads":
        return members
    return members * max(1, requested // members)


def ensemble_dir_tag(covariance: str) -> str:
    """What the evaluation directory's name adds for `covariance` (eval_ensemble<K><tag>_<split>)."""
    return "" if covariance == "dropout" else f"_{covariance}"


class EnsembleRegressor(nn.Module):
    """K `PoseRegressor`s of one architecture; output row s is member s mod K's, with mask row s."""

    def __init__(self, members: Sequence[PoseRegressor], covariance: str = "auto") -> None:
        super().__init__()
        if not 2 <= len(members) <= MAX_ENSEMBLE_MEMBERS:
            raise EnsembleError(f"an ensemble has 2 to {MAX_ENSEMBLE_MEMBERS} members, got {len(members)}")
        if covariance not in ENSEMBLE_COVARIANCE_CHOICES:
            raise EnsembleError(
                f"an ensemble's covariance is one of {', '.join(ENSEMBLE_COVARIANCE_CHOICES)}, "
                f"got {covariance!r}"
            )
        self.member_config = members[0].config
        _refuse_heads(self.member_config)
        covariance = resolve_covariance(self.member_config, covariance)
        if covariance == "heads" and not self.member_config.log_variance_output:
            raise EnsembleError(
                "--ensemble-covariance heads needs members with a variance head (model.variance_head) "
                "or the track-shift spread (model.shift_variance); these have neither: use dropout"
            )
        self.members = nn.ModuleList(members)
        self._typed = list(members)  # the same modules, typed (ModuleList items are plain Modules)
        self.covariance = covariance
        self.config = ensemble_config(self.member_config, covariance)
        self.mask_dim = members[0].mask_dim

    @property
    def size(self) -> int:
        return len(self.members)

    def random_masks(
        self,
        batch: int,
        samples: int,
        generator: torch.Generator | None = None,
        device: torch.device | None = None,
    ) -> torch.Tensor:
        """The members' dropout masks [batch, samples, M] (they share one dropout p); ones for
        ``heads``, whose members run without dropout."""
        if self.covariance == "heads":
            return torch.ones(batch, samples, self.mask_dim, device=device)
        return self._typed[0].random_masks(batch, samples, generator, device)

    def forward(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> PoseOutput:
        if masks is None:  # each member's deterministic pose
            masks = torch.ones(1, self.size, self.mask_dim, device=images.device, dtype=images.dtype)
        t, q, log_variance = self.inference_outputs(images, masks)
        # No embedding: it feeds the training losses, and an ensemble is assembled, never trained
        # (computing it would run every backbone a second time).
        return PoseOutput(t, q, images.new_zeros((images.shape[0], 0)), log_variance=log_variance)

    def poses(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t, q, _ = self.inference_outputs(images, masks)
        return t, q

    def inference_outputs(
        self, images: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """images [B, T, 3, H, W] in [0, 1], masks [B or 1, S, M] -> t [B, S, 3], q [B, S, 4] and,
        for ``heads``, the log-variance [B, S, 6] (else None). Every member runs its head on all S
        masks (cheap beside K backbones) and keeps its rows."""
        outputs = [member.inference_outputs(images, masks) for member in self._typed]
        member_of_row = row_group_one_hot(masks[0], self.size).T  # [K, S]
        t = _select_rows([out[0] for out in outputs], member_of_row)
        q = _select_rows([out[1] for out in outputs], member_of_row)
        if self.covariance != "heads":
            return t, q, None
        log_variances = [out[2] for out in outputs]
        assert all(lv is not None for lv in log_variances)  # checked in __init__
        return t, q, _select_rows([lv for lv in log_variances if lv is not None], member_of_row)


def _select_rows(outputs: list[torch.Tensor], member_of_row: torch.Tensor) -> torch.Tensor:
    """Row s of member s mod K, from K outputs [B, S, C] and the [K, S] one-hot."""
    stacked = torch.stack(outputs)  # [K, B, S, C]
    return (stacked * member_of_row[:, None, :, None]).sum(0)


def _refuse_heads(member: ModelConfig) -> None:
    if member.heads > 1:
        raise EnsembleError(
            f"these models have {member.heads} heads each (model.heads), an ensemble on one backbone "
            "already: evaluate or export one of them alone"
        )


#: ModelConfig keys that change how a member was trained or how it is scored alone, not what it
#: computes in an ensemble: members may differ in them (a member trained before a recipe changed
#: `model.covariance`, say). `--ensemble-covariance` chooses the ensemble's covariance.
NOT_ARCHITECTURE_KEYS = frozenset(
    {
        "pretrained",
        "covariance",
        "variance_nll",
        "variance_feature_gradient",
        "aux_weight",
        "position_distance_variance",
    }
)


def check_members(checkpoints: Sequence[Checkpoint], paths: Sequence[str]) -> None:
    """One line naming the first member that differs from the first in architecture or rig, or
    refusing members of several heads each (`NOT_ARCHITECTURE_KEYS` may differ)."""
    first, first_path = checkpoints[0], paths[0]
    _refuse_heads(first.model_config)
    architecture = to_mapping(first.model_config)
    for checkpoint, path in zip(checkpoints[1:], paths[1:], strict=True):
        other = to_mapping(checkpoint.model_config)
        differing = sorted(
            key
            for key in architecture
            if key not in NOT_ARCHITECTURE_KEYS and architecture[key] != other.get(key)
        )
        if differing:
            # this member's value first: the message names this member's file first
            shown = ", ".join(
                f"model.{key}: {other.get(key)!r} vs {architecture[key]!r}" for key in differing[:3]
            )
            raise EnsembleError(
                f"{path} is not the same model as {first_path} ({shown}); an ensemble's members share "
                "their architecture and differ in their seed"
            )
        if checkpoint.rig.to_dict() != first.rig.to_dict():
            raise EnsembleError(f"{path} was trained on another rig than {first_path}")
        # A member of an import without --scale predicts in the SfM model's units, one with it in
        # metres: their mean and disagreement would mix two scales.
        if checkpoint.dataset.length_unit != first.dataset.length_unit:
            raise EnsembleError(
                f"{path} was trained on positions in {checkpoint.dataset.length_unit!r}, {first_path} "
                f"in {first.dataset.length_unit!r}: an ensemble's members must share one map frame and scale"
            )


def check_member_paths(paths: Sequence[str | Path]) -> None:
    """One line when `paths` cannot be an ensemble's members whatever they hold: fewer than 2 or
    more than `MAX_ENSEMBLE_MEMBERS`, or one file named twice (by a link, `..` or another spelling
    of its path). Reads no checkpoint, so that a wrong command line is refused at once."""
    if not 2 <= len(paths) <= MAX_ENSEMBLE_MEMBERS:
        raise EnsembleError(f"an ensemble has 2 to {MAX_ENSEMBLE_MEMBERS} members, got {len(paths)}")
    seen: dict[Path, Path] = {}
    for path in map(Path, paths):
        resolved = path.resolve()
        # hard links resolve to different paths: samefile sees them
        earlier = seen.get(resolved) or next((p for p in seen.values() if _same_file(p, path)), None)
        if earlier is not None:
            same = "" if str(earlier) == str(path) else f": {path} is {earlier}"
            raise EnsembleError(
                f"an ensemble's members must be different checkpoints (one is named twice{same})"
            )
        seen[resolved] = path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:  # a missing member is named by load_checkpoint
        return False


def _same_weights(a: Checkpoint, b: Checkpoint) -> bool:
    if a.model.keys() != b.model.keys():
        return False
    return all(torch.equal(a.model[key], b.model[key]) for key in a.model)


def load_ensemble(
    paths: Sequence[str | Path], covariance: str = "auto"
) -> tuple[EnsembleRegressor, list[Checkpoint]]:
    """The ensemble of the checkpoints at `paths` (eval mode) and their `Checkpoint`s; its
    `covariance` resolved (`EnsembleRegressor.covariance`)."""
    check_member_paths(paths)
    names = [str(path) for path in paths]
    checkpoints = [load_checkpoint(path) for path in names]
    check_members(checkpoints, names)
    # A copy of a member adds no disagreement, only weight: its spread would look smaller than
    # it is. The weights are in memory already, and differing ones differ in their first tensor.
    for i in range(1, len(checkpoints)):
        for j in range(i):
            if _same_weights(checkpoints[j], checkpoints[i]):
                raise EnsembleError(
                    f"{names[i]} holds the same weights as {names[j]}: an ensemble's members are "
                    "different models (other seeds), not copies"
                )
    model = EnsembleRegressor([model_from_checkpoint(checkpoint) for checkpoint in checkpoints], covariance)
    return model.eval(), checkpoints
