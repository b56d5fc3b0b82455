"""The renderer against geometry: what a pinhole camera must see in the known room."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pose_regressor.rig import PinholeIntrinsics, Rig, RigCamera, forward_camera_rotation, preset_rig
from pose_regressor_training.synth.render import Lighting, RigRenderer
from pose_regressor_training.synth.scene import Scene


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene()


def mono_rig(width: int = 161, height: int = 121, hfov_deg: float = 60.0) -> Rig:
    intr = PinholeIntrinsics.from_hfov(width, height, hfov_deg)
    return Rig((RigCamera("front", intr, np.array([0.1, 0.0, 0.0]), forward_camera_rotation(0.0)),))


def yaw_quat(yaw_deg: float) -> np.ndarray:
    return Rotation.from_euler("z", yaw_deg, degrees=True).as_quat()


def test_camera_facing_wall_sees_that_walls_texture_at_image_centre(scene: Scene) -> None:
    renderer = RigRenderer(scene, mono_rig())
    # Base at (0, -0.5, 1.5) looking along +x: the optical axis meets the x = +4 wall at (4, -0.5, 1.5).
    view = renderer.render(np.array([0.0, -0.5, 1.5]), yaw_quat(0.0))[0]
    centre = (60, 80)  # odd image size: this pixel's centre lies exactly on the optical axis
    wall_x_hi = 2 * 0 + 1  # face numbering: axis 0, upper bound
    assert view.face[centre] == wall_x_hi
    # Distance along the optical axis from the camera (0.1 m ahead of base) to the wall.
    assert view.depth[centre] == pytest.approx(3.9, abs=1e-4)
    # Face x = +4 has u along y from y = -3, v along z from z = 0.
    expected = scene.texture_at(wall_x_hi, u_m=-0.5 + 3.0, v_m=1.5)
    np.testing.assert_array_equal(view.image[centre], expected)


def test_fronto_parallel_wall_has_constant_depth(scene: Scene) -> None:
    view = RigRenderer(scene, mono_rig()).render(np.array([0.0, -0.5, 1.5]), yaw_quat(0.0))[0]
    on_wall = view.face == 1
    assert on_wall.mean() > 0.5
    np.testing.assert_allclose(view.depth[on_wall], 3.9, atol=1e-4)


def test_each_face_looks_different(scene: Scene) -> None:
    means = np.array([t.reshape(-1, 3).mean(axis=0) for t in scene.textures[:6]])
    distances = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert distances[~np.eye(6, dtype=bool)].min() > 5.0  # no two room faces share a colour


def test_moving_the_camera_moves_points_as_projective_geometry_says(scene: Scene) -> None:
    rig = mono_rig(hfov_deg=70.0)
    renderer = RigRenderer(scene, rig)
    cam = rig.cameras[0]
    intr = cam.intrinsics
    pose_a = (np.array([-1.0, -0.3, 1.4]), yaw_quat(5.0))
    pose_b = (np.array([-0.6, 0.1, 1.6]), yaw_quat(-8.0))
    view_a = renderer.render(*pose_a)[0]
    view_b = renderer.render(*pose_b)[0]

    def cam_to_map(t: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r_map_base = Rotation.from_quat(q).as_matrix()
        return r_map_base @ cam.rotation_matrix(), t + r_map_base @ cam.translation

    r_a, c_a = cam_to_map(*pose_a)
    r_b, c_b = cam_to_map(*pose_b)
    rng = np.random.default_rng(0)
    vs, us = rng.integers(5, intr.height - 5, 400), rng.integers(5, intr.width - 5, 400)
    rays = np.stack([(us + 0.5 - intr.cx) / intr.fx, (vs + 0.5 - intr.cy) / intr.fy, np.ones(400)], axis=1)
    points_map = c_a + (rays * view_a.depth[vs, us, None]) @ r_a.T
    points_b = (points_map - c_b) @ r_b  # map -> camera B optical frame
    pix_b = intr.project(points_b)
    ub, vb = np.floor(pix_b[:, 0]).astype(int), np.floor(pix_b[:, 1]).astype(int)
    inside = (points_b[:, 2] > 0) & (ub >= 0) & (ub < intr.width) & (vb >= 0) & (vb < intr.height)
    ub, vb = ub[inside], vb[inside]
    # Visible in B: B's ray to that pixel ends where the point is (not occluded).
    visible = np.abs(view_b.depth[vb, ub] - points_b[inside, 2]) < 0.02
    assert visible.sum() > 150
    colour_a = view_a.image[vs[inside][visible], us[inside][visible]].astype(int)
    colour_b = view_b.image[vb[visible], ub[visible]].astype(int)
    same = np.abs(colour_a - colour_b).max(axis=1) <= 12  # texel boundaries may differ by one texel
    assert same.mean() > 0.85
    # Control: the same pixels without the geometric mapping mostly do not match.
    control = np.abs(colour_a - view_b.image[vs[inside][visible], us[inside][visible]].astype(int)).max(
        axis=1
    )
    assert (control <= 12).mean() < 0.5


def test_quad_rig_left_camera_equals_front_camera_after_a_90_degree_yaw(scene: Scene) -> None:
    renderer = RigRenderer(scene, preset_rig("quad", 96, 72))
    t = np.array([-0.5, -0.2, 1.3])
    left_now = renderer.render(t, yaw_quat(10.0))[1]
    front_turned = renderer.render(t, yaw_quat(100.0))[0]
    np.testing.assert_allclose(left_now.depth, front_turned.depth, atol=1e-4)
    assert (left_now.image == front_turned.image).all(axis=-1).mean() > 0.99


def test_lighting_is_monotonic_and_identity_by_default() -> None:
    np.testing.assert_array_equal(Lighting().lookup_table(), np.arange(256))
    lut = Lighting.random(np.random.default_rng(3)).lookup_table().astype(int)
    assert np.all(np.diff(lut) >= 0)
    assert not np.array_equal(lut, np.arange(256))


def test_sensor_noise_has_the_requested_std(scene: Scene) -> None:
    renderer = RigRenderer(scene, mono_rig(width=200, height=150))
    pose = (np.array([0.0, -0.5, 1.5]), yaw_quat(0.0))
    clean = renderer.render(*pose)[0].image.astype(float)
    noisy = renderer.render(*pose, noise_std=4.0, rng=np.random.default_rng(1))[0].image.astype(float)
    unclipped = (clean > 20) & (clean < 235)
    assert np.std((noisy - clean)[unclipped]) == pytest.approx(4.0, rel=0.1)
