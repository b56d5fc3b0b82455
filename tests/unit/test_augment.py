"""Augmentations: the track shift proven by rendering, the photometric/crop ops keep labels and layout."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from torchvision.transforms.v2 import functional as tvf

from pose_regressor.rig import R_BASE_OPTICAL_FORWARD, PinholeIntrinsics, Rig, RigCamera, preset_rig
from pose_regressor_training.augment import Augmenter
from pose_regressor_training.augment_config import AugmentConfig
from pose_regressor_training.rig_symmetry import apply_track_shift, track_shift_yaw
from pose_regressor_training.synth.render import RigRenderer
from pose_regressor_training.synth.scene import Scene

W, H = 64, 48
# A generic pose inside the default room, clear of the obstacles (yawed, slightly pitched and rolled).
T_P = np.array([0.2, -0.3, 1.3])
Q_P = Rotation.from_euler("zyx", [25.0, 4.0, -3.0], degrees=True).as_quat()

NO_PHOTOMETRIC = dict(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, blur_prob=0.0, noise_std=0.0)
NO_CROP = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
TRACK_ONLY = AugmentConfig(track=True, **NO_CROP, **NO_PHOTOMETRIC)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene()


def level_rig(
    yaws_deg: list[float], radii: list[float] | None = None, pitch_deg: float | list[float] = 0.0
) -> Rig:
    """Cameras at base height 0.05 m, `radii` out from the centre along their yaw, pitched by `pitch_deg`."""
    intr = PinholeIntrinsics.from_hfov(W, H, 90.0)
    radii = radii or [0.1] * len(yaws_deg)
    pitches = pitch_deg if isinstance(pitch_deg, list) else [pitch_deg] * len(yaws_deg)
    cams = []
    for i, (yaw, radius, pitch) in enumerate(zip(yaws_deg, radii, pitches, strict=True)):
        rz = Rotation.from_euler("z", yaw, degrees=True)
        rot = (
            rz * Rotation.from_euler("y", pitch, degrees=True) * Rotation.from_matrix(R_BASE_OPTICAL_FORWARD)
        )
        cams.append(RigCamera(f"cam{i}", intr, rz.apply([radius, 0.0, 0.05]), rot.as_quat()))
    return Rig(tuple(cams))


def render_batch(renderer: RigRenderer, t: np.ndarray, q: np.ndarray) -> torch.Tensor:
    """float [1, T, 3, H, W] in [0, 1], as the training loop feeds the augmenter."""
    views = renderer.render(t, q)
    stacked = torch.from_numpy(np.stack([v.image for v in views]))  # [T, H, W, 3] uint8
    return (stacked.permute(0, 3, 1, 2).float() / 255.0)[None]


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    return (images * 255.0).round().to(torch.uint8)


def fraction_equal(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((to_uint8(a) == to_uint8(b)).all(dim=-3).float().mean())


# ------------------------------------------------------------------------------------------ track


def test_track_shift_yaw_of_quad_and_of_the_reversed_order() -> None:
    assert track_shift_yaw(preset_rig("quad", W, H)) == pytest.approx(math.pi / 2)
    quad = preset_rig("quad", W, H).cameras
    reversed_rig = Rig((quad[0], quad[3], quad[2], quad[1]))  # front, right, back, left: turns right
    assert track_shift_yaw(reversed_rig) == pytest.approx(-math.pi / 2)
    assert track_shift_yaw(level_rig([30.0, 150.0, 270.0])) == pytest.approx(2 * math.pi / 3)


@pytest.mark.parametrize(
    ("rig", "k"),
    [
        (preset_rig("quad", W, H), 1),
        (preset_rig("quad", W, H), 3),
        (Rig(tuple(preset_rig("quad", W, H).cameras[i] for i in (0, 3, 2, 1))), 1),
        (level_rig([0.0, 120.0, 240.0], pitch_deg=-10.0), 1),  # all tilted alike: still exact
    ],
    ids=["quad-k1", "quad-k3", "quad-reversed-k1", "tilted-tri-k1"],
)
def test_track_shift_matches_rendering_at_the_shifted_label(scene: Scene, rig: Rig, k: int) -> None:
    renderer = RigRenderer(scene, rig)
    images = render_batch(renderer, T_P, Q_P)
    q = torch.tensor(Q_P, dtype=torch.float32)[None]
    shifted, q_new = apply_track_shift(images, q, torch.tensor([k]), track_shift_yaw(rig))

    # The label is T_map_base · Rz(kΔ): same position, base-frame yaw.
    delta = track_shift_yaw(rig)
    expected = Rotation.from_quat(Q_P) * Rotation.from_euler("z", k * delta)
    assert Rotation.from_quat(q_new[0].double().numpy()).approx_equal(expected, atol=1e-6)
    assert q_new[0, 3] >= 0 and q_new.dtype == torch.float32

    at_label = render_batch(renderer, T_P, q_new[0].double().numpy())
    assert fraction_equal(shifted, at_label) >= 0.99
    # The test can tell the directions apart: the opposite yaw does not reproduce the images.
    wrong = (Rotation.from_quat(Q_P) * Rotation.from_euler("z", -k * delta)).as_quat()
    if k * delta % (2 * math.pi) != pytest.approx(math.pi):
        assert fraction_equal(shifted, render_batch(renderer, T_P, wrong)) < 0.5


def test_augmenter_track_outputs_match_rendering(scene: Scene) -> None:
    rig = preset_rig("quad", W, H)
    renderer = RigRenderer(scene, rig)
    images = render_batch(renderer, T_P, Q_P).repeat(6, 1, 1, 1, 1)
    t = torch.tensor(T_P, dtype=torch.float32).repeat(6, 1)
    q = torch.tensor(Q_P, dtype=torch.float32).repeat(6, 1)
    out, t_out, q_out = Augmenter(TRACK_ONLY, rig, torch.Generator().manual_seed(3))(images, t, q)
    assert torch.equal(t_out, t)
    for b in range(6):
        assert fraction_equal(out[b : b + 1], render_batch(renderer, T_P, q_out[b].double().numpy())) >= 0.99


def test_shifts_zero_to_three_are_the_four_cyclic_orders() -> None:
    images = torch.arange(4.0).reshape(1, 4, 1, 1, 1).expand(1, 4, 3, 2, 2) / 10.0
    q = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    orders = []
    for k in range(-1, 5):
        shifted, q_new = apply_track_shift(images, q, torch.tensor([k]), math.pi / 2)
        orders.append([round(float(v) * 10) for v in shifted[0, :, 0, 0, 0]])
        yaw = Rotation.from_quat(q_new[0].double().numpy()).as_euler("zyx")[0]
        assert math.remainder(yaw - k * math.pi / 2, 2 * math.pi) == pytest.approx(0.0, abs=1e-6)
    assert orders[1:5] == [[0, 1, 2, 3], [1, 2, 3, 0], [2, 3, 0, 1], [3, 0, 1, 2]]
    assert orders[0] == orders[4] and orders[5] == orders[1]  # k = -1 is k = 3, k = 4 is k = 0

    # The augmenter draws every shift, each with its matching label.
    batch = 64
    many = images.expand(batch, 4, 3, 2, 2)
    out, _, q_out = Augmenter(TRACK_ONLY, preset_rig("quad", 8, 6), torch.Generator().manual_seed(0))(
        many, torch.zeros(batch, 3), q.expand(batch, 4)
    )
    firsts = [round(float(v) * 10) for v in out[:, 0, 0, 0, 0]]
    assert set(firsts) == {0, 1, 2, 3}
    yaws = Rotation.from_quat(q_out.double().numpy()).as_euler("zyx")[:, 0]
    np.testing.assert_allclose(
        np.remainder(yaws - np.array(firsts) * math.pi / 2 + 0.1, 2 * math.pi), 0.1, atol=1e-6
    )


def test_tuples_share_one_track_shift_so_their_relative_motion_is_kept() -> None:
    # 16 tuples of 3 consecutive frames of a drone turning 10 deg and moving 0.2 m per frame.
    tuples, k = 16, 3
    images = torch.arange(4.0).reshape(1, 1, 4, 1, 1, 1).expand(tuples, k, 4, 3, 2, 2) / 10.0
    yaw = torch.linspace(0.0, 0.2, k).repeat(tuples, 1) + torch.rand(tuples, 1) * 6.0
    rot = Rotation.from_euler("z", yaw.flatten().numpy()[:, None])
    q = torch.tensor(rot.as_quat(canonical=True), dtype=torch.float32)
    t = torch.stack([torch.arange(tuples * k) * 0.2, torch.zeros(tuples * k), torch.ones(tuples * k)], 1)

    def relative_angles(q_out: torch.Tensor) -> np.ndarray:
        r = Rotation.from_quat(q_out.double().numpy().reshape(tuples, k, 4)[:, :-1].reshape(-1, 4))
        s = Rotation.from_quat(q_out.double().numpy().reshape(tuples, k, 4)[:, 1:].reshape(-1, 4))
        return np.asarray((r.inv() * s).magnitude())

    augmenter = Augmenter(TRACK_ONLY, preset_rig("quad", 8, 6), torch.Generator().manual_seed(0))
    out, t_out, q_out = augmenter(images.flatten(0, 1), t, q, k)
    firsts = out[:, 0, 0, 0, 0].reshape(tuples, k)
    assert (firsts == firsts[:, :1]).all()  # one camera order per tuple
    assert len(set(firsts[:, 0].tolist())) > 1  # and not one for the whole batch
    np.testing.assert_allclose(relative_angles(q_out), 0.1, atol=1e-5)  # the true 0.1 rad per frame
    assert torch.equal(t_out, t)
    # One shift per frame would make the relative rotation jump by multiples of 90 deg.
    _, _, q_single = augmenter(images.flatten(0, 1), t, q)
    assert (np.abs(relative_angles(q_single) - 0.1) > 1.0).any()
    with pytest.raises(ValueError, match="not made of tuples of 5"):
        augmenter(images.flatten(0, 1), t, q, 5)


@pytest.mark.parametrize(
    ("rig", "message"),
    [
        (preset_rig("mono", W, H), "2 or more cameras"),
        (preset_rig("stereo", W, H), "evenly spaced in yaw"),
        (level_rig([0.0, 80.0, 180.0, 270.0]), "evenly spaced in yaw"),
        (level_rig([0.0, 90.0, 180.0, 270.0], radii=[0.1, 0.1, 0.15, 0.1]), "symmetric mounting positions"),
        (level_rig([0.0, 120.0, 240.0], pitch_deg=[0.0, 0.0, 15.0]), "evenly spaced in yaw"),
        (level_rig([0.0, 180.0], pitch_deg=[0.0, 15.0]), "another axis"),
    ],
    ids=["mono", "stereo", "uneven", "asymmetric-translation", "one-tilted", "tilted-pair"],
)
def test_track_refuses_rigs_without_the_symmetry(rig: Rig, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        track_shift_yaw(rig)
    with pytest.raises(ValueError, match=message):
        Augmenter(AugmentConfig(track=True), rig)
    Augmenter(AugmentConfig(track=False), rig)  # fine without the track shift


def test_track_refuses_different_intrinsics() -> None:
    quad = preset_rig("quad", W, H).cameras
    odd = dataclasses.replace(quad[2], intrinsics=PinholeIntrinsics.from_hfov(W, H, 70.0))
    with pytest.raises(ValueError, match="identical intrinsics"):
        track_shift_yaw(Rig((quad[0], quad[1], odd, quad[3])))

    # `fit` with synth_quad.yaml on a rig calibrated camera by camera: the line names what to turn off
    from pose_regressor_training.errors import TrainingError
    from pose_regressor_training.train_config import load_train_config
    from pose_regressor_training.training_data import _complete_model_config

    config = load_train_config(Path(__file__).parents[2] / "training" / "configs" / "synth_quad.yaml")
    with pytest.raises(
        TrainingError,
        match=r"^model.track_tta: .*identical intrinsics.* cameras calibrated one "
        r"by one: model.track_tta=false model.shift_variance=false augment.track=false\)$",
    ):
        _complete_model_config(config, Rig((quad[0], quad[1], odd, quad[3])))


# ------------------------------------------------------------------------------- other operations


def random_batch(batch: int = 3, cameras: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(123)
    images = torch.rand(batch, cameras, 3, 24, 32, generator=gen)
    t = torch.randn(batch, 3, generator=gen)
    q = torch.nn.functional.normalize(torch.randn(batch, 4, generator=gen), dim=-1)
    return images, t, torch.where(q[:, 3:] < 0, -q, q)


def test_default_augmentation_keeps_labels_shape_dtype_and_range() -> None:
    images, t, q = random_batch()
    out, t_out, q_out = Augmenter(AugmentConfig(), preset_rig("quad"), torch.Generator().manual_seed(1))(
        images, t, q
    )
    assert out.shape == images.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(t_out, t) and torch.equal(q_out, q)
    assert not torch.allclose(out, images)


def test_disabled_is_the_identity() -> None:
    images, t, q = random_batch()
    out, t_out, q_out = Augmenter(AugmentConfig(enabled=False, track=True), preset_rig("mono"))(
        images[:, :1], t, q
    )
    assert out is images[:, :1] or torch.equal(out, images[:, :1])
    assert torch.equal(t_out, t) and torch.equal(q_out, q)
    none = AugmentConfig(**NO_CROP, **NO_PHOTOMETRIC)  # type: ignore[arg-type]
    assert torch.equal(Augmenter(none, preset_rig("quad"))(images, t, q)[0], images)


def test_seeded_generator_reproduces_and_other_seeds_differ() -> None:
    images, t, q = random_batch()
    config = AugmentConfig(blur_prob=0.5, track=True)

    def run(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return Augmenter(config, preset_rig("quad"), torch.Generator().manual_seed(seed))(images, t, q)

    first, again, other = run(5), run(5), run(6)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], other[0])


def test_colour_jitter_differs_per_camera_and_crop_is_shared_by_the_cameras() -> None:
    images, t, q = random_batch(batch=2)
    same = images[:, :1].expand(-1, 4, -1, -1, -1).contiguous()  # every camera sees the same image
    colour_only = AugmentConfig(**NO_CROP, blur_prob=0.0, noise_std=0.0)  # type: ignore[arg-type]
    out, _, _ = Augmenter(colour_only, preset_rig("quad"), torch.Generator().manual_seed(2))(same, t, q)
    means = out.mean(dim=(2, 3, 4))  # [B, T]
    assert float((means[:, 1:] - means[:, :1]).abs().min()) > 1e-4

    crop_only = AugmentConfig(crop_scale=(0.5, 0.7), **NO_PHOTOMETRIC)  # type: ignore[arg-type]
    cropped, _, _ = Augmenter(crop_only, preset_rig("quad"), torch.Generator().manual_seed(2))(same, t, q)
    assert torch.equal(cropped, cropped[:, :1].expand_as(cropped))  # one crop for all cameras of a sample
    assert not torch.allclose(cropped[0, 0], same[0, 0])
    both = torch.stack([same[0], same[0]])  # two identical samples still get different crops
    twice, _, _ = Augmenter(crop_only, preset_rig("quad"), torch.Generator().manual_seed(2))(both, t, q)
    assert not torch.allclose(twice[0], twice[1])


def test_camera_dropout_blacks_out_one_whole_camera_of_the_chosen_sets_and_keeps_the_labels() -> None:
    images, t, q = random_batch(batch=400)
    images = images.clamp(0.01, 1.0)  # no pixel is black before the dropout
    config = AugmentConfig(camera_dropout=0.25, **NO_CROP, **NO_PHOTOMETRIC)  # type: ignore[arg-type]
    out, t_out, q_out = Augmenter(config, preset_rig("quad"), torch.Generator().manual_seed(3))(images, t, q)
    assert torch.equal(t_out, t) and torch.equal(q_out, q)
    black = (out == 0).all(dim=(2, 3, 4))  # [B, T]: cameras that are entirely black
    untouched = (out == images).all(dim=(2, 3, 4))
    assert torch.equal(black | untouched, torch.ones_like(black))  # a camera is kept or all black
    assert int(black.sum(dim=1).max()) == 1  # never more than one camera of a set
    dropped = int(black.any(dim=1).sum())
    assert 70 <= dropped <= 130  # 400 sets at 0.25: 100, binomial std 8.7
    assert all(int(n) > 10 for n in black.sum(dim=0))  # every camera of the rig gets dropped
    every = AugmentConfig(camera_dropout=1.0, **NO_CROP, **NO_PHOTOMETRIC)  # type: ignore[arg-type]
    all_sets, _, _ = Augmenter(every, preset_rig("quad"), torch.Generator().manual_seed(3))(images, t, q)
    assert torch.equal((all_sets == 0).all(dim=(2, 3, 4)).sum(dim=1), torch.ones(400, dtype=torch.long))
    with pytest.raises(
        ValueError, match=r"augment\.camera_dropout: blacking out one camera needs a rig of 2 or more"
    ):
        Augmenter(config, preset_rig("mono"))
    with pytest.raises(ValueError, match="camera_dropout"):
        AugmentConfig(camera_dropout=1.5)
    # the track shift's refusal names its key too (issue 16: a new user could not tell which one)
    with pytest.raises(
        ValueError, match=r"^augment\.track: track augmentation needs a rig of 2 or more cameras"
    ):
        Augmenter(AugmentConfig(track=True), preset_rig("mono"))


def test_invalid_config_and_batches_are_rejected() -> None:
    with pytest.raises(ValueError, match="crop_scale"):
        AugmentConfig(crop_scale=(0.9, 1.2))
    with pytest.raises(ValueError, match="hue"):
        AugmentConfig(hue=0.7)
    with pytest.raises(ValueError, match="blur_prob"):
        AugmentConfig(blur_prob=2.0)
    images, t, q = random_batch()
    augmenter = Augmenter(AugmentConfig(), preset_rig("quad"))
    with pytest.raises(ValueError, match=r"\[B, 4, 3, H, W\]"):
        augmenter(images[:, :2], t, q)
    with pytest.raises(ValueError, match="float"):
        augmenter(to_uint8(images), t, q)
    with pytest.raises(ValueError, match="labels"):
        augmenter(images, t[:2], q)


@pytest.mark.parametrize(
    ("name", "adjust"),
    [
        ("brightness", lambda image, f: tvf.adjust_brightness(image, f)),
        ("contrast", lambda image, f: tvf.adjust_contrast(image, f)),
        ("saturation", lambda image, f: tvf.adjust_saturation(image, f)),
    ],
)
def test_each_colour_jitter_matches_torchvision_with_the_drawn_factor(name: str, adjust: object) -> None:
    images, t, q = random_batch(batch=3)
    before = images.clone()
    config = AugmentConfig(**{**NO_CROP, **NO_PHOTOMETRIC, name: 0.4})  # type: ignore[arg-type]
    out, _, _ = Augmenter(config, preset_rig("quad"), torch.Generator().manual_seed(7))(images, t, q)
    # the augmenter's one draw: a factor per camera image, uniform in ColorJitter's [1 - s, 1 + s]
    u = torch.rand((12,), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    factors = (0.6 + 0.8 * u).tolist()
    flat = images.reshape(12, 3, *images.shape[-2:])
    expected = torch.stack([adjust(image, f) for image, f in zip(flat, factors, strict=True)])  # type: ignore[operator]
    torch.testing.assert_close(out.reshape(expected.shape), expected, atol=1e-6, rtol=0)
    assert torch.equal(images, before)  # written in place, but never into the caller's tensor
