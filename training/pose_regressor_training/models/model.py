"""`PoseRegressor`: camera images -> pose samples, with MC dropout driven by explicit masks.

    images [B, T, 3, H, W] float in [0, 1] (cameras in rig order, RGB)
      -> ImageNet normalization
      -> fusion (input: 3T channels | mosaic: T images side by side | late: per-camera backbone)
      -> backbone -> embedding [B, F]
      (embedding_dropout) -> embedding * mask[..., :F]
      -> Linear(F, D) -> ReLU -> h [B, D]
      -> h * mask (masks [B or 1, S, M]: S Monte-Carlo samples; M = D, or F + D with
         embedding_dropout, the hidden layer's part last) -> Linear(D, outputs)
      -> de-normalized translation [B, S, 3] (metres, map frame)
         and rotation [B, S, 4] (xyzw, unit, w >= 0) of T_map_base
      (variance_head) h * mask (detached; variance_feature_gradient: w times its gradient passes)
         -> Linear(D, 6), or Linear(D, H) -> ReLU -> Linear(H, 6)
         with variance_head_hidden H -> log-variance [B, S, 6] (m^2, rad^2), clamped
      (error_head) a second such head on the same input, fitted after training on cross-fitted
         errors (`pose-train error-head`); the two variances are added (log-sum-exp)

Dropout lives only in the head (and on its input with `embedding_dropout`) and is applied by
multiplying with a mask that the caller passes in: during training masks are
Bernoulli(1 - p) / (1 - p) per sample; at inference a mask of ones gives the deterministic
prediction and S random masks give S MC samples from one backbone pass. Exported graphs take
the masks as an input (TensorRT and ONNX Runtime drop Dropout nodes), so every engine gives the
same numbers for the same masks.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import torch
from torch import nn

from pose_regressor_training.models.backbones import build_backbone
from pose_regressor_training.models.config import ModelConfig
from pose_regressor_training.rig_symmetry import yaw_quaternions

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class PoseOutput:
    t: torch.Tensor  # [B, S, 3] metres
    q: torch.Tensor  # [B, S, 4] xyzw, unit, w >= 0
    embedding: torch.Tensor  # [B, F] backbone features (metric losses)
    odometry_features: torch.Tensor | None = None  # [B, F_odo] with aux_odometry, training only
    log_variance: torch.Tensor | None = None  # [B, S, 6] with variance_head: x, y, z, rot-x, rot-y, rot-z


# The clamp of the predicted log-variance: std from 3.4e-4 to 7.4 (m or rad); the same range as
# pose_regressor.uncertainty's MIN/MAX_LOG_VARIANCE.
MIN_LOG_VARIANCE, MAX_LOG_VARIANCE = -16.0, 4.0


def _unit(v: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    # eps under the root: a zero vector stays finite (no 0/0) and so does sqrt's gradient
    return v / torch.sqrt((v * v).sum(dim=-1, keepdim=True) + eps)


def _quat_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b of xyzw quaternions (broadcasting), written out for plain ONNX."""
    ax, ay, az, aw = a[..., 0:1], a[..., 1:2], a[..., 2:3], a[..., 3:4]
    bx, by, bz, bw = b[..., 0:1], b[..., 1:2], b[..., 2:3], b[..., 3:4]
    return torch.cat(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        dim=-1,
    )


def _shift_variance(
    t: torch.Tensor, q: torch.Tensor, t_mean: torch.Tensor, q_mean: torch.Tensor
) -> torch.Tensor:
    """Per-axis variance [B, S, 6] of the shift predictions t [B, K, S, 3], q [B, K, S, 4] about
    their mean t_mean [B, S, 3], q_mean [B, S, 4]: the translation differences and the map-frame
    rotation vectors r with R_k = Exp(r) R_mean (the residual convention of the covariance)."""
    conjugate = q_mean * q_mean.new_tensor([-1.0, -1.0, -1.0, 1.0])
    q_rel = _hemisphere(_quat_product(q, conjugate[:, None]))
    vector, w = q_rel[..., :3], q_rel[..., 3:4]
    # angle = 2 atan(|v| / w) with w >= 0 (ONNX has no Atan2). The floor on |v| keeps v = 0 finite,
    # also in FP16 (TensorRT's default precision), where |v|^2 of shifts that agree to a few
    # thousandths of a degree underflows to 0 and an epsilon under the root (1e-12) is 0 too: 0/0.
    # Below the floor the factor is 2 atan(f/w)/f = 2/w to within f^2/3 = 3e-9, the small-angle limit.
    norm = torch.sqrt(vector.square().sum(dim=-1, keepdim=True)).clamp_min(1e-4)
    rotvec = vector * (2.0 * torch.atan(norm / w.clamp_min(1e-4)) / norm)
    residual = torch.cat([t - t_mean[:, None], rotvec], dim=-1)
    return residual.square().mean(dim=1)


def row_group_one_hot(masks: torch.Tensor, groups: int) -> torch.Tensor:
    """[..., S, K] one-hot (float) for masks [..., S, M]: row s belongs to group s mod K (an
    ensemble's member, a model's head). Built from CumSum and constants so that S stays the exported
    graph's only dynamic axis (no Range operator)."""
    row = torch.ones_like(masks[..., 0]).cumsum(-1) - 1.0  # [..., S]: 0, 1, ..., S - 1
    k = float(groups)
    group = row - k * torch.floor(row / k)
    ids = torch.arange(groups, dtype=masks.dtype, device=masks.device)
    return (group.unsqueeze(-1) == ids).to(masks.dtype)


def log_add_exp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(exp(a) + exp(b)), written with Max, Abs, Exp and Log for plain ONNX (TensorRT has no
    LogSumExp over two tensors); exp(-|a - b|) <= 1, so nothing overflows."""
    return torch.maximum(a, b) + torch.log(1.0 + torch.exp(-(a - b).abs()))


def _hemisphere(q: torch.Tensor) -> torch.Tensor:
    """Flip quaternions (..., 4) with w < 0 (a Where, not Sign: Sign(0) would zero them)."""
    return torch.where(q[..., 3:4] < 0, -q, q)


def rot6d_to_quaternion(r: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The continuous 6-D rotation representation (Zhou et al., "On the Continuity of Rotation
    Representations in Neural Networks", CVPR 2019) -> unit quaternion xyzw.

    r (..., 6) holds two 3-vectors, the first two columns of R (the base x and y axes in the map
    frame) before Gram-Schmidt. Why it helps here: a quaternion of a drone that turns through
    every heading has a seam (q and -q) the network must jump across, and its x/y components are
    roll and pitch multiplied by functions of yaw; in R's columns the tilt is the z components,
    independent of heading. Matrix -> quaternion is Shepperd's method with all four branches
    computed and one chosen by `where` (no argmax or gather: exports to plain ONNX for TensorRT).
    """
    a, b = r[..., 0:3], r[..., 3:6]
    x = _unit(a, eps)
    y = _unit(b - (x * b).sum(dim=-1, keepdim=True) * x, eps)
    x0, x1, x2 = x[..., 0:1], x[..., 1:2], x[..., 2:3]
    y0, y1, y2 = y[..., 0:1], y[..., 1:2], y[..., 2:3]
    # z = x cross y, written out (the exporter has no cross product op)
    z0, z1, z2 = x1 * y2 - x2 * y1, x2 * y0 - x0 * y2, x0 * y1 - x1 * y0
    # R = [x y z] as columns: R[i][j] = column j, row i.
    r00, r10, r20 = x0, x1, x2
    r01, r11, r21 = y0, y1, y2
    r02, r12, r22 = z0, z1, z2
    trace = r00 + r11 + r22

    def root(v: torch.Tensor) -> torch.Tensor:  # 2 sqrt(1 + v), floored: finite in unused branches
        return 2.0 * torch.sqrt(torch.clamp(1.0 + v, min=eps))

    s_w = root(trace)
    q_w = torch.cat([(r21 - r12) / s_w, (r02 - r20) / s_w, (r10 - r01) / s_w, s_w / 4], dim=-1)
    s_x = root(r00 - r11 - r22)
    q_x = torch.cat([s_x / 4, (r01 + r10) / s_x, (r02 + r20) / s_x, (r21 - r12) / s_x], dim=-1)
    s_y = root(r11 - r00 - r22)
    q_y = torch.cat([(r01 + r10) / s_y, s_y / 4, (r12 + r21) / s_y, (r02 - r20) / s_y], dim=-1)
    s_z = root(r22 - r00 - r11)
    q_z = torch.cat([(r02 + r20) / s_z, (r12 + r21) / s_z, s_z / 4, (r10 - r01) / s_z], dim=-1)
    # The branch whose square root is largest is the well-conditioned one.
    use_w = (trace >= r00) & (trace >= r11) & (trace >= r22)
    use_x = (r00 >= r11) & (r00 >= r22)
    use_y = r11 >= r22
    q = torch.where(use_w, q_w, torch.where(use_x, q_x, torch.where(use_y, q_y, q_z)))
    return _unit(q)


def log_quaternion_to_quaternion(u: torch.Tensor) -> torch.Tensor:
    """MapNet's log-quaternion: u = (angle / 2) * axis, so q = (sin|u| * u / |u|, cos|u|)."""
    # 1e-16 keeps θ > 0, so sin θ / θ → 1 and the sqrt gradient stays finite at u = 0
    theta = torch.sqrt((u * u).sum(dim=-1, keepdim=True) + 1e-16)
    vec = torch.sin(theta) / theta * u
    return torch.cat([vec, torch.cos(theta)], dim=-1)


def _variance_head(hidden_dim: int, head_hidden: int) -> nn.Module:
    """The variance head: Linear(D, 6), or with head_hidden H > 0 Linear(D, H) -> ReLU -> Linear(H, 6)."""
    if head_hidden == 0:
        return nn.Linear(hidden_dim, 6)
    return nn.Sequential(nn.Linear(hidden_dim, head_hidden), nn.ReLU(), nn.Linear(head_hidden, 6))


class PoseRegressor(nn.Module):
    """See the module docstring. Build with `build_model(config)`; set translation statistics
    from the training set with `set_translation_stats` before training."""

    image_mean: torch.Tensor
    image_std: torch.Tensor
    t_mean: torch.Tensor
    t_std: torch.Tensor
    shift_index: torch.Tensor
    shift_unyaw: torch.Tensor
    head_units: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        # Set by the trainer (optim.cpu_bf16), not part of the model: training passes run the
        # backbone in bfloat16 autocast; inference and export never do.
        self.train_backbone_bf16 = False
        t_cams = config.num_cameras
        in_channels = 3 * t_cams if config.fusion == "input" else 3
        self.backbone = build_backbone(
            config.backbone,
            config.pretrained,
            in_channels,
            config.small_cnn_width,
            config.small_cnn_stages,
            config.small_cnn_pool,
        )
        backbone_features = int(self.backbone.out_features)  # type: ignore[arg-type]
        self.feature_dim = backbone_features * (t_cams if config.fusion == "late" else 1)
        # The dropout mask's width: the hidden layer's D, after the embedding's F when it drops those too.
        self.mask_dim = config.hidden_dim + (self.feature_dim if config.embedding_dropout else 0)
        self.fc_hidden = nn.Linear(self.feature_dim, config.hidden_dim)
        self.fc_out = nn.Linear(config.hidden_dim, config.translation_outputs + config.rotation_outputs)
        self.odometry: OdometryBranch | None = None
        if config.aux_odometry:
            self.odometry = OdometryBranch(
                self.backbone, config.aux_shared_stages, t_cams if config.fusion == "late" else 1
            )
        # Created only when configured: models without it keep their exact parameters and state dicts.
        self.fc_log_variance: nn.Module | None = None
        if config.variance_head:
            self.fc_log_variance = _variance_head(config.hidden_dim, config.variance_head_hidden)
        self.fc_error_log_variance: nn.Module | None = None
        if config.error_head:
            self.fc_error_log_variance = _variance_head(config.hidden_dim, config.error_head_hidden)
        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1))
        self.register_buffer("t_mean", torch.zeros(3))
        self.register_buffer("t_std", torch.ones(3))
        # Track averaging: row k of shift_index lists the source camera of each camera after a
        # cyclic shift by k (as `rig_symmetry.apply_track_shift`); shift_unyaw[k] is Rz(-k * step), xyzw.
        cams = torch.arange(t_cams)
        self.register_buffer("shift_index", (cams[None, :] + cams[:, None]) % t_cams, persistent=False)
        unyaw = yaw_quaternions(-config.track_yaw_step * cams.double()).float()
        self.register_buffer("shift_unyaw", unyaw, persistent=False)
        # heads: head_units[k] is 1 on the hidden units of head k (`heads` consecutive equal groups)
        group = torch.arange(config.hidden_dim) // (config.hidden_dim // config.heads)
        units = (group[None, :] == torch.arange(config.heads)[:, None]).float()
        self.register_buffer("head_units", units, persistent=False)
        self._init_head()

    def _init_head(self) -> None:
        nn.init.kaiming_normal_(self.fc_hidden.weight, nonlinearity="relu")
        nn.init.zeros_(self.fc_hidden.bias)
        # tiny weights: the first predictions sit at the bias (mean translation, identity rotation)
        nn.init.normal_(self.fc_out.weight, std=1e-3)
        bias = torch.zeros(self.fc_out.out_features)
        bias[-1] = 1.0  # start at the identity rotation: w = 1 for quaternion and yaw outputs
        if self.config.rotation == "logq" and self.config.dof == 6:
            # the log-quaternion of the identity is the zero vector
            bias[-1] = 0.0
        if self.config.rotation == "rot6d" and self.config.dof == 6:
            bias[-6:] = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])  # identity: R's columns x, y
        with torch.no_grad():
            self.fc_out.bias.copy_(bias)
        if self.fc_log_variance is not None:
            layers = [m for m in self.fc_log_variance.modules() if isinstance(m, nn.Linear)]
            for layer in layers[:-1]:
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
            # start at std ~ 0.37 of the normalized translation and ~ 0.37 rad, nearly constant
            nn.init.normal_(layers[-1].weight, std=1e-3)
            nn.init.constant_(layers[-1].bias, -2.0)
        if self.fc_error_log_variance is not None:
            # untrained, it adds nothing (`pose-train error-head` fits it)
            last = [m for m in self.fc_error_log_variance.modules() if isinstance(m, nn.Linear)][-1]
            nn.init.zeros_(last.weight)
            nn.init.constant_(last.bias, MIN_LOG_VARIANCE)

    def set_translation_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Translation normalization from the training set (metres); std is floored at 1 cm."""
        with torch.no_grad():
            self.t_mean.copy_(mean.to(self.t_mean))
            # an axis the training set never moves along would get std 0 and be frozen at its mean
            self.t_std.copy_(std.to(self.t_std).clamp_min(0.01))

    # ------------------------------------------------------------------ stages
    def fuse(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, T, 3, H, W] in [0, 1] -> normalized backbone input ([B, 3T, H, W], [B, 3, H, TW]
        or [B*T, 3, H, W] for input, mosaic and late fusion)."""
        b, t, c, h, w = images.shape
        if t != self.config.num_cameras or c != 3:
            raise ValueError(
                f"expected images [B, {self.config.num_cameras}, 3, H, W], got {list(images.shape)}"
            )
        x = (images - self.image_mean) / self.image_std
        if self.config.fusion == "input":
            return x.reshape(b, t * c, h, w)
        if self.config.fusion == "mosaic":
            return x.permute(0, 2, 3, 1, 4).reshape(b, c, h, t * w)
        return x.reshape(b * t, c, h, w)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, T, 3, H, W] in [0, 1] -> embedding [B, F]."""
        features = self.backbone(self.fuse(images))
        return features.reshape(images.shape[0], -1)  # type: ignore[no-any-return]

    def hidden(self, embedding: torch.Tensor) -> torch.Tensor:
        """embedding [B, F] -> h [B, D], the layer the dropout masks act on."""
        return torch.relu(self.fc_hidden(embedding))

    def decode(self, hidden: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h [B, D] and masks [B or 1, S, D] -> (t [B, S, 3] metres, q [B, S, 4] xyzw).

        Also h [B, K, 1, D] with masks [B or 1, 1, S, D] -> [B, K, S, 3] and [B, K, S, 4]."""
        t, q, _ = self.decode_all(hidden, masks)
        return t, q

    def decode_embedding(
        self, embedding: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """embedding [B, F] and masks [B or 1, S, M] -> `decode_all`'s (t, q, log-variance) [B, S, .];
        also embedding [B, K, 1, F] with masks [B or 1, 1, S, M] -> [B, K, S, .]."""
        if not self.config.embedding_dropout:
            return self.decode_all(self.hidden(embedding), masks)
        if embedding.dim() == 2:
            embedding = embedding[:, None, :]
        f = self.feature_dim
        return self.decode_all(self.hidden(embedding * masks[..., :f]), masks[..., f:])

    def decode_all(
        self, hidden: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """`decode` plus the log-variance [B, S, 6] (None without `variance_head`) of the same masks."""
        if hidden.dim() == 2:
            hidden = hidden[:, None, :]
        masked = hidden * self._route_to_heads(masks)
        t, q = self._pose(self.fc_out(masked))
        return t, q, self._log_variance(masked)

    def _route_to_heads(self, masks: torch.Tensor) -> torch.Tensor:
        """masks [..., S, D] -> the same with row s kept to the units of head s mod K (`heads`).
        The row index comes from a CumSum, so S stays the exported graph's only dynamic axis."""
        if self.config.heads == 1:
            return masks
        return masks * (row_group_one_hot(masks, self.config.heads) @ self.head_units)

    def _log_variance(self, masked: torch.Tensor) -> torch.Tensor | None:
        if self.fc_log_variance is None:
            return None
        # Detached: the NLL trains this head only. Its gradient through the shared layers cost the
        # pose (quad synth, 12 epochs: test rotation median 83 deg against 39 deg without the head).
        # variance_feature_gradient lets w times that gradient through in training; the value is the
        # same, and out of training (export included) the graph is that of w 0.
        w = self.config.variance_feature_gradient
        features = masked.detach()
        if w > 0.0 and self.training:
            features = features + w * (masked - masked.detach())
        raw = self.fc_log_variance(features)
        if self.fc_error_log_variance is not None:
            raw = log_add_exp(raw, self.fc_error_log_variance(masked.detach()))
        # the translation part is learned in normalized units (as the translation itself): back to m^2
        offset = torch.cat([2.0 * torch.log(self.t_std), torch.zeros_like(self.t_std)])
        return torch.clamp(raw + offset, MIN_LOG_VARIANCE, MAX_LOG_VARIANCE)

    def _pose(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's raw outputs [..., outputs] -> (t [..., 3] metres, q [..., 4] xyzw, w >= 0)."""
        n_t = self.config.translation_outputs
        t_norm, r = out[..., :n_t], out[..., n_t:]
        if self.config.dof == 6:
            t = t_norm * self.t_std + self.t_mean
        else:
            xy = t_norm * self.t_std[:2] + self.t_mean[:2]
            t = torch.cat([xy, self.t_mean[2].expand_as(xy[..., :1])], dim=-1)
        if self.config.dof == 3:
            zw = _unit(r)
            q = torch.cat([torch.zeros_like(zw), zw], dim=-1)
        elif self.config.rotation == "logq":
            q = log_quaternion_to_quaternion(r)
        elif self.config.rotation == "rot6d":
            q = rot6d_to_quaternion(r)
        else:
            q = _unit(r)
        return t, _hemisphere(q)

    def forward(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> PoseOutput:
        if masks is None:  # the deterministic pose: of each head, one row per head
            masks = torch.ones(1, self.config.heads, self.mask_dim, device=images.device, dtype=images.dtype)
        if self.config.track_tta and not self.training:
            t, q, log_variance, embedding = self._track_averaged(images, masks)
            return PoseOutput(t, q, embedding, log_variance=log_variance)
        odometry_features = None
        head_dtype = self.fc_hidden.weight.dtype  # the backbone's bf16 features back to the head's
        with self._backbone_precision():
            if self.odometry is not None and self.training:
                embedding, odometry_features = self.odometry.shared_forward(
                    self.backbone, self.fuse(images), images.shape[0]
                )
                odometry_features = odometry_features.to(head_dtype)
            else:
                embedding = self.embed(images)
        embedding = embedding.to(head_dtype)
        t, q, log_variance = self.decode_embedding(embedding, masks)
        return PoseOutput(t, q, embedding, odometry_features, log_variance)

    def _backbone_precision(self) -> contextlib.AbstractContextManager[object]:
        if self.training and self.train_backbone_bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def poses(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What inference (and the exported graph) computes: images [B, T, 3, H, W] in [0, 1] and
        masks [B or 1, S, M] -> (t [B, S, 3], q [B, S, 4]), averaged over track shifts if configured."""
        t, q, _ = self.inference_outputs(images, masks)
        return t, q

    def inference_outputs(
        self, images: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """`poses` plus the log-variance [B, S, 6] (None without `variance_head`)."""
        if self.config.track_tta:
            t, q, log_variance, _ = self._track_averaged(images, masks)
            return t, q, log_variance
        return self.decode_embedding(self.embed(images), masks)

    def _track_averaged(
        self, images: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Test-time averaging over the rig's symmetry (`track_tta`): the T cyclic camera shifts of
        the input are each what the rig would see after yawing by k * step, so the k-th prediction
        turned back by -k * step is another estimate of the same pose; their mean (per MC mask) is
        the prediction. One backbone pass per shift, one head pass per shift and mask. Returns
        t [B, S, 3], q [B, S, 4], the log-variance [B, S, 6] or None and the unshifted input's
        embedding [B, F]. The log-variance is the mean over shifts: the map-frame residual of a
        shift's pose turned back by its yaw (a right factor) is the same vector, so the axes agree.
        With `shift_variance` the variance of the shifts about their mean is added to it."""
        b, t_cams = images.shape[:2]
        shifted = images[:, self.shift_index].reshape(b * t_cams, *images.shape[1:])
        embedding = self.embed(shifted)
        per_shift = embedding.reshape(b, t_cams, 1, -1)
        t, q, log_variance = self.decode_embedding(per_shift, masks[:, None])  # [B, K, S, .] for shift K = k
        q = _quat_product(q, self.shift_unyaw[None, :, None, :])
        # Each shift's quaternion in the hemisphere of the first shift's, then the normalized sum:
        # for estimates a few degrees apart this is the quaternion mean to within their spread squared.
        q = torch.where((q * q[:, :1]).sum(dim=-1, keepdim=True) < 0, -q, q)
        unshifted = embedding.reshape(b, t_cams, -1)[:, 0]
        mean_log_variance = None if log_variance is None else log_variance.mean(dim=1)
        t_mean, q_mean = t.mean(dim=1), _hemisphere(_unit(q.sum(dim=1)))
        if self.config.shift_variance:
            variance = _shift_variance(t, q, t_mean, q_mean)
            if mean_log_variance is not None:
                variance = variance + torch.exp(mean_log_variance)
            # floored after the log: exp(MIN_LOG_VARIANCE) is subnormal in FP16, log(0) = -inf is not NaN
            mean_log_variance = torch.clamp(torch.log(variance), MIN_LOG_VARIANCE, MAX_LOG_VARIANCE)
        return t_mean, q_mean, mean_log_variance, unshifted

    def random_masks(
        self,
        batch: int,
        samples: int,
        generator: torch.Generator | None = None,
        device: torch.device | None = None,
    ) -> torch.Tensor:
        """Dropout masks [batch, samples, M] (`mask_dim`): Bernoulli(1 - p) scaled by 1 / (1 - p)."""
        p = self.config.dropout
        shape = (batch, samples, self.mask_dim)
        if p == 0:
            return torch.ones(shape, device=device)
        keep = torch.rand(shape, generator=generator, device=device) >= p
        # inverted dropout: E[mask] = 1, so the all-ones mask gives the mean prediction
        return keep.float() / (1.0 - p)


class OdometryBranch(nn.Module):
    """VLocNet-style auxiliary odometry: the backbone's first `shared` stages feed both the global
    branch and a copy of the remaining stages; `head` regresses the relative pose T_i^-1 T_j of
    a pair from the two frames' odometry features (translation in metres, quaternion xyzw)."""

    def __init__(self, backbone: nn.Module, shared: int, feature_groups: int) -> None:
        super().__init__()
        stages = list(backbone.features.children())  # type: ignore[union-attr]
        if shared > len(stages):
            raise ValueError(f"aux_shared_stages {shared} exceeds the backbone's {len(stages)} stages")
        self.shared = shared
        self.stages = copy.deepcopy(nn.Sequential(*stages[shared:]))
        features = int(backbone.out_features) * feature_groups  # type: ignore[arg-type]
        self.head = nn.Sequential(nn.Linear(2 * features, 256), nn.ReLU(inplace=True), nn.Linear(256, 7))
        # Learned homoscedastic weights of the odometry loss (Kendall & Cipolla 2017 form).
        self.s_t = nn.Parameter(torch.tensor(0.0))
        self.s_q = nn.Parameter(torch.tensor(-3.0))
        with torch.no_grad():
            # start near zero motion and the identity rotation (bias w = 1)
            self.head[-1].weight.mul_(1e-2)  # type: ignore[operator]
            self.head[-1].bias.copy_(torch.tensor([0.0, 0, 0, 0, 0, 0, 1.0]))  # type: ignore[operator]

    def shared_forward(
        self, backbone: nn.Module, x: torch.Tensor, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused input -> (global embedding [B, F], odometry features [B, F_odo]) sharing the first stages."""
        stages = list(backbone.features.children())  # type: ignore[union-attr]
        shared = nn.Sequential(*stages[: self.shared])(x)
        main = nn.Sequential(*stages[self.shared :])(shared)
        odo = self.stages(shared)
        pool: nn.Module = backbone.get_submodule("pool")
        embedding = torch.flatten(pool(main), 1).reshape(batch, -1)
        return embedding, torch.flatten(pool(odo), 1).reshape(batch, -1)

    def loss(
        self, t_pred: torch.Tensor, q_pred: torch.Tensor, t_true: torch.Tensor, q_true: torch.Tensor
    ) -> torch.Tensor:
        """L1 translation and quaternion errors of relative poses, weighted by the learned s_t, s_q."""
        # q and -q are one rotation: compare the target in the prediction's hemisphere
        q_true = torch.where((q_true * q_pred).sum(-1, keepdim=True) < 0, -q_true, q_true)
        l_t = (t_pred - t_true).abs().sum(-1).mean()
        l_q = (q_pred - q_true).abs().sum(-1).mean()
        return l_t * torch.exp(-self.s_t) + self.s_t + l_q * torch.exp(-self.s_q) + self.s_q

    def relative_pose(self, first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Odometry features of frames i and j ([N, F_odo] each) -> (t_ij [N, 3], q_ij [N, 4])."""
        out = self.head(torch.cat([first, second], dim=-1))
        return out[:, :3], _hemisphere(_unit(out[:, 3:]))


def build_model(config: ModelConfig) -> PoseRegressor:
    return PoseRegressor(config)


def images_to_unit_float(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [B, T, H, W, 3] (as loaded and as the robot receives them) -> float [B, T, 3, H, W] in [0, 1]."""
    return images_uint8.permute(0, 1, 4, 2, 3).float() / 255.0
