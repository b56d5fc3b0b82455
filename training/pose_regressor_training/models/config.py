"""The model's typed configuration (saved inside every checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass

from pose_regressor.bundle import MAX_ENSEMBLE_MEMBERS
from pose_regressor.distance_prior import MAX_VARIANCE_PER_SQUARED_DISTANCE

BACKBONES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "small_cnn",
)
FUSIONS = ("input", "mosaic", "late")
ROTATIONS = ("quaternion", "logq", "rot6d")
# a model of K heads exports as an ensemble of K rows (bundle.yaml's ensemble_members)
MAX_HEADS = MAX_ENSEMBLE_MEMBERS
VARIANCE_NLLS = ("gaussian", "laplace")  # as pose_regressor_training.losses.variance
# a model's default inference covariance, and where an ensemble's comes from
# (pose_regressor_training.ensemble); the commands also take auto. Here, not in ensemble.py,
# because every command line lists them and ensemble.py imports torch (seconds).
COVARIANCES = ("dropout", "heads")
ENSEMBLE_COVARIANCE_CHOICES = ("auto", *COVARIANCES)


@dataclass(frozen=True)
class ModelConfig:
    """How to build a `PoseRegressor`.

    backbone: a torchvision backbone or `small_cnn` (a compact from-scratch CNN for CPU budgets:
        `small_cnn_stages` stride-2 stages of widths `small_cnn_width` x 1, 2, 4, ...), averaged
        over a `small_cnn_pool` grid of (rows, columns) cells of its last feature map: (2, 2) keeps
        a coarse layout; the whole map (its size: the input halved per stage, rounded up) keeps
        where every feature is (tried on the default: worse rotation, docs/results.md).
    pretrained: load torchvision's ImageNet weights (from the local torch hub cache when offline).
    fusion: `input` stacks the T images as 3T channels into a widened first convolution;
        `mosaic` tiles them side by side into one image; `late` runs one shared backbone per
        camera and concatenates the embeddings.
    hidden_dim: D, the width of the MC-dropout layer (the `dropout_mask` is [S, D]).
    dropout: p, the probability of dropping a hidden unit (training masks are scaled 1/(1-p)).
    rotation: `quaternion` (4 outputs, normalized, w >= 0), `logq` (3 outputs, MapNet's log-quaternion)
        or `rot6d` (6 outputs: the first two columns of the rotation matrix, Gram-Schmidt; the
        continuous representation of Zhou et al. 2019). The model always outputs quaternions.
    dof: 6, or 3 for ground robots (x, y, yaw regressed; z fixed at the training set's mean height,
        roll and pitch zero).
    aux_odometry: VLocNet-style auxiliary learning: a relative-pose head on pairs of consecutive
        frames whose branch shares the first `aux_shared_stages` backbone stages with the global
        branch; its loss (weight `aux_weight`) is added to the main loss (`aux_mode: joint`) or
        trained on alternate steps (`alternate`). Training-time only: never exported.
    track_tta: at inference (eval, export, the node), average the prediction over the T cyclic
        camera shifts of a rig evenly spaced in yaw (the symmetry `augment.track` trains with),
        each turned back by its yaw. T backbone passes per camera set. `track_yaw_step` (radians)
        is the rig's yaw step, set by `fit` from the rig's extrinsics.
    variance_head: also predict a per-axis log-variance [B, S, 6] (x, y, z, rot-x, rot-y, rot-z;
        m^2 and rad^2) from the same dropout-masked hidden layer as the pose (aleatoric
        uncertainty, Kendall & Gal 2017), trained by the negative log-likelihood `variance_nll`
        (`gaussian` or `laplace`) of the detached pose residual, added to the pose loss. The head
        reads the hidden layer detached, so the NLL never changes the pose model.
    variance_head_hidden: 0 makes the variance head one linear layer; H > 0 a two-layer
        perceptron (Linear(D, H), ReLU, Linear(H, 6)): the log-variance of a ReLU layer's
        features is not a linear function of them (issue 16: H 64 on the default model took the
        rotation std's Spearman from 0.53 to about 0.6 and the flag's AUROC up).
    embedding_dropout: also drop the backbone embedding's F units (the head's input) with the
        same p, as Bayesian PoseNet drops after the last convolutional stage: the MC samples
        then vary the whole head, not only its last layer. The dropout mask becomes [S, F + D]
        (embedding part first), and each MC sample pays one Linear(F, D) more (issue 16).
    shift_variance: with `track_tta`, also output as the log-variance [B, S, 6] the variance of
        the T shift predictions about their mean (per axis, map frame; added to the variance
        head's when there is one): the rig's symmetry gives a T-member ensemble for free, and
        where the shifted views disagree the pose is unreliable. Inference only; training and
        the pose are unchanged.
    heads: K > 1 splits the hidden layer into K equal groups of units, each with its own part of
        the output layers: K heads on one backbone, a deep ensemble of heads (issue 16). Row s of
        the masks (and of every output) is head s mod K; training runs every head on every set
        (the loss is their mean), inference gives one row per head and MC sample. With a variance
        head the heads' disagreement plus their mean predicted variance is the covariance, as for
        a deep ensemble of models, for one backbone pass.
    variance_feature_gradient: w in [0, 1]: the variance head's NLL also trains the hidden layer
        and the backbone, its gradient there scaled by w (the residual stays detached, so the NLL
        never moves the pose directly). 0, the default: the head alone learns from it, as before.
        Shaping the features to predict the pose's own error (issue 16); the forward pass and
        the exported graph are the same either way.
    covariance: how eval and export score the model unless told (`--ensemble-covariance auto`):
        `dropout`, MC dropout (S masked samples: their mean pose, their spread plus the
        log-variance); `heads`, no dropout at inference (one row per head: the deterministic
        pose, the covariance from the log-variance output and, for K > 1, the heads'
        disagreement). `heads` needs a log-variance output. A model of K > 1 heads with one is
        scored as `heads` either way, as before.
    error_head: a second log-variance head (`error_head_hidden` units, the variance head's form),
        its variance added to the variance head's per axis (log-sum-exp of the two log-variances,
        in the graph). It is not trained by `fit` (which refuses it) but by `pose-train
        error-head` after training, on the errors that models of the same recipe trained without
        part of the training trajectories make on that part (cross-fitted errors, in the manner
        of DEUP, Lahlou et al. 2023): the variance head learns from the model's own training
        residuals, which are small and say little about where a new view goes wrong. On the
        synthetic default (three seeds) the position Spearman went up by 0.006-0.031 (test 0.485-
        0.511) and the uncertain flag's AUROC down by 0.002-0.042: an option.
    position_distance_variance: k >= 0: eval and export add k d^2 to each position axis' raw
        variance, d the distance from the predicted position to the nearest training position
        (`pose_regressor.distance_prior`; the bundle carries the positions). 0, the default: off.
        It changes no weight; only how the covariance is scored.
    """

    backbone: str = "resnet18"
    pretrained: bool = False
    fusion: str = "input"
    num_cameras: int = 1
    image_width: int = 64
    image_height: int = 48
    hidden_dim: int = 256
    dropout: float = 0.2
    rotation: str = "quaternion"
    dof: int = 6
    small_cnn_width: int = 32
    small_cnn_stages: int = 4
    small_cnn_pool: tuple[int, int] = (2, 2)
    aux_odometry: bool = False
    aux_shared_stages: int = 3
    aux_weight: float = 1.0
    aux_mode: str = "joint"
    track_tta: bool = False
    track_yaw_step: float = 0.0
    variance_head: bool = False
    variance_nll: str = "gaussian"
    variance_head_hidden: int = 0
    shift_variance: bool = False
    embedding_dropout: bool = False
    heads: int = 1
    covariance: str = "dropout"
    variance_feature_gradient: float = 0.0
    position_distance_variance: float = 0.0
    error_head: bool = False
    error_head_hidden: int = 64

    def __post_init__(self) -> None:
        checks = [
            (
                self.backbone in BACKBONES,
                f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}",
            ),
            (self.fusion in FUSIONS, f"fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}"),
            (
                self.rotation in ROTATIONS,
                f"rotation must be one of {', '.join(ROTATIONS)}, got {self.rotation!r}",
            ),
            (self.dof in (3, 6), f"dof must be 6 or 3, got {self.dof}"),
            (self.num_cameras >= 1, f"num_cameras must be >= 1, got {self.num_cameras}"),
            (
                self.image_width >= 16 and self.image_height >= 16,
                "image_width and image_height must be >= 16",
            ),
            (self.hidden_dim >= 1, f"hidden_dim must be >= 1, got {self.hidden_dim}"),
            (0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}"),
            (
                not (self.dof == 3 and self.rotation in ("logq", "rot6d")),
                "dof 3 regresses yaw only; use rotation: quaternion",
            ),
            (1 <= self.small_cnn_stages <= 6, f"small_cnn_stages must be 1..6, got {self.small_cnn_stages}"),
            (
                self.backbone != "small_cnn"
                or (
                    len(self.small_cnn_pool) == 2
                    and all(
                        1 <= n <= side
                        for n, side in zip(self.small_cnn_pool, self.small_cnn_map, strict=True)
                    )
                ),
                f"small_cnn_pool must be (rows, columns), each from 1 to the last feature map's "
                f"{self.small_cnn_map[0]} x {self.small_cnn_map[1]} (the input halved "
                f"{self.small_cnn_stages} times), got {list(self.small_cnn_pool)}",
            ),
            (self.aux_shared_stages >= 1, "aux_shared_stages must be >= 1"),
            (
                self.aux_mode in ("joint", "alternate"),
                f"aux_mode must be joint or alternate, got {self.aux_mode!r}",
            ),
            (self.aux_weight >= 0, "aux_weight must be >= 0"),
            (
                self.variance_nll in VARIANCE_NLLS,
                f"variance_nll must be one of {', '.join(VARIANCE_NLLS)}, got {self.variance_nll!r}",
            ),
            (
                self.variance_head_hidden >= 0,
                f"variance_head_hidden must be >= 0, got {self.variance_head_hidden}",
            ),
            (
                not self.track_tta or self.num_cameras == 1 or self.track_yaw_step != 0.0,
                "track_tta needs track_yaw_step (fit sets it from the rig's extrinsics)",
            ),
            (
                1 <= self.heads <= MAX_HEADS and self.hidden_dim % self.heads == 0,
                f"heads must be 1..{MAX_HEADS} and divide hidden_dim ({self.hidden_dim}), got {self.heads}",
            ),
            (
                self.covariance in COVARIANCES,
                f"covariance must be one of {', '.join(COVARIANCES)}, got {self.covariance!r}",
            ),
            (
                self.covariance != "heads" or self.log_variance_output,
                "covariance heads scores the model without dropout, from its log-variance output: "
                "it needs variance_head or shift_variance",
            ),
            (
                0.0 <= self.variance_feature_gradient <= 1.0,
                f"variance_feature_gradient must be in [0, 1], got {self.variance_feature_gradient}",
            ),
            (
                self.variance_feature_gradient == 0.0 or self.variance_head,
                "variance_feature_gradient passes the variance head's gradient into the features: "
                "it needs variance_head",
            ),
            (
                0.0 <= self.position_distance_variance <= MAX_VARIANCE_PER_SQUARED_DISTANCE,
                f"position_distance_variance must be in [0, {MAX_VARIANCE_PER_SQUARED_DISTANCE:g}], "
                f"got {self.position_distance_variance}",
            ),
            (
                self.error_head_hidden >= 0,
                f"error_head_hidden must be >= 0, got {self.error_head_hidden}",
            ),
            (
                not self.error_head or self.variance_head,
                "error_head adds to the variance head's log-variance: it needs variance_head",
            ),
            (
                not self.shift_variance or self.track_tta,
                "shift_variance is the spread of the track_tta shifts: it needs track_tta",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"model config: {message}")

    @property
    def small_cnn_map(self) -> tuple[int, int]:
        """(rows, columns) of small_cnn's last feature map: each stride-2 stage halves, rounding up
        (mosaic fusion puts the T images side by side into one input T times as wide)."""
        rows = self.image_height
        columns = self.image_width * (self.num_cameras if self.fusion == "mosaic" else 1)
        for _ in range(self.small_cnn_stages):
            rows, columns = -(-rows // 2), -(-columns // 2)
        return rows, columns

    @property
    def log_variance_output(self) -> bool:
        """Whether inference (and the exported graph) gives a log-variance [B, S, 6]."""
        return self.variance_head or self.shift_variance

    @property
    def rotation_outputs(self) -> int:
        if self.dof == 3:
            return 2  # (qz, qw) of a yaw-only quaternion
        return {"quaternion": 4, "logq": 3, "rot6d": 6}[self.rotation]

    @property
    def translation_outputs(self) -> int:
        return 3 if self.dof == 6 else 2
