"""The ROS-free TF buffer: tree walks, interpolation, tolerance, errors, memory bound, map -> odom."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pose_regressor import pose
from pose_regressor.transforms import TransformBuffer, TransformUnavailable, map_to_odom

S = 1_000_000_000  # ns per second


def random_pose(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(size=3), np.asarray(Rotation.random(random_state=rng).as_quat())


def mat(t: np.ndarray, q: np.ndarray) -> np.ndarray:
    return pose.to_matrix(t, q)


def assert_pose(got: tuple[np.ndarray, np.ndarray], expected_matrix: np.ndarray) -> None:
    np.testing.assert_allclose(mat(*got), expected_matrix, atol=1e-12)
    assert got[1][3] >= 0.0
    assert got[0].shape == (3,) and got[1].shape == (4,)


def test_chain_static_and_dynamic_known_answers() -> None:
    """map -> odom (dynamic) -> base_link (dynamic) -> camera (static); plus base_link -> lidar."""
    rng = np.random.default_rng(0)
    buf = TransformBuffer()
    m_o, o_b, b_c, b_l = (random_pose(rng) for _ in range(4))
    buf.add("map", "odom", 5 * S, *m_o)
    buf.add("odom", "base_link", 5 * S, *o_b)
    buf.add("/base_link", "camera", 0, *b_c, static=True)  # leading slash stripped
    buf.add("base_link", "lidar", 123, *b_l, static=True)
    M = {k: mat(*v) for k, v in {"mo": m_o, "ob": o_b, "bc": b_c, "bl": b_l}.items()}

    assert_pose(buf.lookup("map", "camera", 5 * S), M["mo"] @ M["ob"] @ M["bc"])
    assert_pose(buf.lookup("camera", "map", 5 * S), np.linalg.inv(M["mo"] @ M["ob"] @ M["bc"]))
    assert_pose(buf.lookup("odom", "camera", 5 * S), M["ob"] @ M["bc"])
    # Siblings: common ancestor is base_link.
    assert_pose(buf.lookup("camera", "lidar", 5 * S), np.linalg.inv(M["bc"]) @ M["bl"])
    # Static-only path works at any stamp.
    assert_pose(buf.lookup("lidar", "camera", 999 * S), np.linalg.inv(M["bl"]) @ M["bc"])
    assert_pose(buf.lookup("/camera", "camera", 5 * S), np.eye(4))
    assert buf.frames() == {"map", "odom", "base_link", "camera", "lidar"}


def test_interpolation_halfway() -> None:
    buf = TransformBuffer()
    q0 = Rotation.from_euler("z", 10, degrees=True)
    q1 = Rotation.from_euler("z", 50, degrees=True) * Rotation.from_euler("x", 20, degrees=True)
    buf.add("odom", "base", 1 * S, [0.0, 0.0, 0.0], q0.as_quat())
    buf.add("odom", "base", 2 * S, [2.0, -4.0, 1.0], q1.as_quat())
    t, q = buf.lookup("odom", "base", 1 * S + S // 2)
    np.testing.assert_allclose(t, [1.0, -2.0, 0.5])
    r = Rotation.from_quat(q)
    total = (q0.inv() * q1).magnitude()
    assert (q0.inv() * r).magnitude() == pytest.approx(total / 2)
    assert (r.inv() * q1).magnitude() == pytest.approx(total / 2)
    # A quarter of the way, and exact samples come back unchanged.
    t, _ = buf.lookup("odom", "base", 1 * S + S // 4)
    np.testing.assert_allclose(t, [0.5, -1.0, 0.25])
    t, q = buf.lookup("odom", "base", 2 * S)
    np.testing.assert_allclose(t, [2.0, -4.0, 1.0])
    np.testing.assert_allclose(mat(t, q)[:3, :3], q1.as_matrix(), atol=1e-12)


def test_slerp_takes_the_short_way_across_hemispheres() -> None:
    buf = TransformBuffer()
    qa = Rotation.from_euler("z", 170, degrees=True).as_quat()
    qb = -Rotation.from_euler("z", -170, degrees=True).as_quat()  # sign-flipped on purpose
    buf.add("a", "b", 0 * S + 1, [0, 0, 0], qa)
    buf.add("a", "b", 1 * S + 1, [0, 0, 0], qb)
    _, q = buf.lookup("a", "b", S // 2 + 1)
    assert abs(Rotation.from_quat(q).as_euler("ZYX", degrees=True)[0]) == pytest.approx(180.0)


def test_out_of_order_adds_are_sorted_and_repeated_stamp_replaces() -> None:
    buf = TransformBuffer()
    buf.add("a", "b", 3 * S, [3, 0, 0], [0, 0, 0, 1])
    buf.add("a", "b", 1 * S, [1, 0, 0], [0, 0, 0, 1])
    buf.add("a", "b", 2 * S, [99, 0, 0], [0, 0, 0, 1])
    buf.add("a", "b", 2 * S, [2, 0, 0], [0, 0, 0, 2])  # replaces; quaternion normalized
    np.testing.assert_allclose(buf.lookup("a", "b", 2 * S)[0], [2, 0, 0])
    np.testing.assert_allclose(buf.lookup("a", "b", 1 * S + S // 2)[0], [1.5, 0, 0])
    np.testing.assert_allclose(buf.lookup("a", "b", 2 * S + S // 2)[0], [2.5, 0, 0])


def test_tolerance_uses_nearest_sample_without_extrapolating() -> None:
    buf = TransformBuffer()
    buf.add("odom", "base", 10 * S, [1, 0, 0], [0, 0, 0, 1])
    buf.add("odom", "base", 11 * S, [2, 0, 0], [0, 0, 0, 1])
    tol = 50_000_000
    np.testing.assert_allclose(buf.lookup("odom", "base", 11 * S + tol, tolerance_ns=tol)[0], [2, 0, 0])
    np.testing.assert_allclose(buf.lookup("odom", "base", 10 * S - tol, tolerance_ns=tol)[0], [1, 0, 0])
    with pytest.raises(TransformUnavailable, match="newer"):
        buf.lookup("odom", "base", 11 * S + tol + 1, tolerance_ns=tol)
    with pytest.raises(TransformUnavailable, match="older"):
        buf.lookup("odom", "base", 10 * S - tol - 1, tolerance_ns=tol)


def test_latest_is_stamp_zero() -> None:
    buf = TransformBuffer()
    buf.add("map", "odom", 4 * S, [0, 1, 0], [0, 0, 0, 1])
    buf.add("odom", "base", 7 * S, [1, 0, 0], [0, 0, 0, 1])
    buf.add("odom", "base", 9 * S, [5, 0, 0], [0, 0, 0, 1])
    buf.add("odom", "base", 8 * S, [3, 0, 0], [0, 0, 0, 1])
    # Each edge at its own newest sample, even though the stamps differ.
    np.testing.assert_allclose(buf.lookup("map", "base", 0)[0], [5, 1, 0])


def test_error_messages() -> None:
    buf = TransformBuffer()
    buf.add("map", "odom", 10 * S, [0, 0, 0], [0, 0, 0, 1])
    buf.add("odom", "base", 10 * S, [0, 0, 0], [0, 0, 0, 1])
    buf.add("odom", "base", 12 * S, [0, 0, 0], [0, 0, 0, 1])
    buf.add("world", "other", 0, [0, 0, 0], [0, 0, 0, 1], static=True)

    with pytest.raises(TransformUnavailable, match=r"frame 'camera' is unknown \(known frames: base, map"):
        buf.lookup("map", "camera", 10 * S)
    with pytest.raises(TransformUnavailable, match=r"not connected .*'base' is in the tree rooted at 'map'"):
        buf.lookup("other", "base", 10 * S)
    with pytest.raises(TransformUnavailable) as old:
        buf.lookup("map", "base", 9 * S)
    msg = str(old.value)
    assert "older than the history of edge odom -> base" in msg
    assert "10000000000 .. 12000000000 ns" in msg
    with pytest.raises(TransformUnavailable) as new:
        buf.lookup("map", "base", 13 * S)
    msg = str(new.value)
    assert "1000000000 ns newer than the newest transform of edge odom -> base" in msg
    assert "\n" not in msg
    # The map -> odom edge holds a single sample at 10 s: 11 s is newer than that edge.
    with pytest.raises(TransformUnavailable, match="edge map -> odom"):
        buf.lookup("map", "base", 11 * S)
    assert issubclass(TransformUnavailable, LookupError)
    with pytest.raises(TransformUnavailable, match=r"known frames: none"):
        TransformBuffer().lookup("a", "b", 0)


def test_invalid_adds_and_arguments() -> None:
    buf = TransformBuffer()
    ok_t, ok_q = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="3 finite"):
        buf.add("a", "b", 1, [np.nan, 0, 0], ok_q)
    with pytest.raises(ValueError, match="non-finite"):
        buf.add("a", "b", 1, ok_t, [np.inf, 0, 0, 1])
    with pytest.raises(ValueError, match="zero-norm"):
        buf.add("a", "b", 1, ok_t, [0, 0, 0, 0])
    with pytest.raises(ValueError, match="same"):
        buf.add("a", "/a", 1, ok_t, ok_q)
    with pytest.raises(ValueError, match="empty"):
        buf.add("", "b", 1, ok_t, ok_q)
    with pytest.raises(ValueError, match="empty"):
        buf.add("a", "/", 1, ok_t, ok_q)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        buf.add("a", "b", 1, ok_t, [0, 0, 1])
    with pytest.raises(ValueError, match="3 finite"):
        buf.add("a", "b", 1, [0, 0], ok_q)
    with pytest.raises(ValueError, match=">= 0"):
        buf.add("a", "b", -1, ok_t, ok_q)
    assert buf.frames() == set()  # nothing was stored
    with pytest.raises(ValueError, match="cache_s"):
        TransformBuffer(cache_s=0.0)
    with pytest.raises(ValueError, match="max_history"):
        TransformBuffer(max_history=1)


def test_reparenting_replaces_the_edge() -> None:
    buf = TransformBuffer()
    buf.add("odom", "base", 1 * S, [1, 0, 0], [0, 0, 0, 1])
    buf.add("map", "base", 1 * S, [0, 2, 0], [0, 0, 0, 1], static=True)
    np.testing.assert_allclose(buf.lookup("map", "base", 5 * S)[0], [0, 2, 0])
    with pytest.raises(TransformUnavailable, match="'odom' is unknown"):
        buf.lookup("odom", "base", 1 * S)
    # Back to dynamic under odom: the history starts afresh.
    buf.add("odom", "base", 3 * S, [3, 0, 0], [0, 0, 0, 1])
    with pytest.raises(TransformUnavailable, match="older"):
        buf.lookup("odom", "base", 1 * S)


def test_loop_is_reported_not_walked_forever() -> None:
    buf = TransformBuffer()
    buf.add("a", "b", 0, [0, 0, 0], [0, 0, 0, 1], static=True)
    buf.add("b", "a", 0, [0, 0, 0], [0, 0, 0, 1], static=True)  # a now has parent b: loop
    buf.add("x", "y", 0, [0, 0, 0], [0, 0, 0, 1], static=True)
    with pytest.raises(TransformUnavailable, match="loop"):
        buf.lookup("y", "a", 0)


def test_history_is_bounded_by_count_and_time() -> None:
    buf = TransformBuffer(cache_s=10.0, max_history=1000)
    q = [0.0, 0.0, 0.0, 1.0]
    for i in range(100_000):  # 1 kHz for 100 s: the 10 s window alone would keep 10k samples
        buf.add("odom", "base", S + i * 1_000_000, [i, 0, 0], q)
        if i % 10_000 == 0:
            assert len(buf._edges["base"].history) <= 1000
    hist = buf._edges["base"].history
    assert len(hist) == 1000
    assert hist[-1].stamp_ns - hist[0].stamp_ns == 999 * 1_000_000
    # Time bound: at 1 Hz with cache 10 s, only the last 10 s (11 samples inclusive) stay.
    buf = TransformBuffer(cache_s=10.0)
    for i in range(100):
        buf.add("odom", "base", (i + 1) * S, [i, 0, 0], q)
    hist = buf._edges["base"].history
    assert [s.stamp_ns for s in hist] == [k * S for k in range(90, 101)]


def test_backwards_stamp_beyond_cache_clears_history() -> None:
    buf = TransformBuffer(cache_s=10.0)
    for i in range(50, 61):
        buf.add("odom", "base", i * S, [i, 0, 0], [0, 0, 0, 1])
    buf.add("odom", "base", 55 * S + 1, [0, 0, 0], [0, 0, 0, 1])  # small step back: kept, sorted in
    assert len(buf._edges["base"].history) == 12
    buf.add("odom", "base", 2 * S, [7, 0, 0], [0, 0, 0, 1])  # bag loop / sim-time reset
    assert [s.stamp_ns for s in buf._edges["base"].history] == [2 * S]
    np.testing.assert_allclose(buf.lookup("odom", "base", 0)[0], [7, 0, 0])
    with pytest.raises(TransformUnavailable, match="newer"):
        buf.lookup("odom", "base", 60 * S)


def test_concurrent_adds_and_lookups() -> None:
    buf = TransformBuffer(cache_s=1.0)
    buf.add("base", "camera", 0, [0, 0, 1], [0, 0, 0, 1], static=True)
    buf.add("odom", "base", 1, [0, 0, 0], [0, 0, 0, 1])
    errors: list[BaseException] = []

    def writer() -> None:
        for i in range(2, 5000):
            buf.add("odom", "base", i * 1_000_000, [i, 0, 0], [0, 0, 0, 1])

    def reader() -> None:
        try:
            for _ in range(500):
                t, _ = buf.lookup("odom", "camera", 0)
                assert t[2] == pytest.approx(1.0)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors


def test_map_to_odom_round_trip() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        m_b, o_b = random_pose(rng), random_pose(rng)
        t_mo, q_mo = map_to_odom(*m_b, *o_b)
        np.testing.assert_allclose(mat(t_mo, q_mo), mat(*m_b) @ np.linalg.inv(mat(*o_b)), atol=1e-12)
        t, q = pose.compose(t_mo, q_mo, *o_b)
        np.testing.assert_allclose(mat(t, q), mat(*m_b), atol=1e-12)
        assert q_mo[3] >= 0.0
    # Through the buffer: publishing map -> odom makes map -> base equal the estimate.
    buf = TransformBuffer()
    m_b, o_b = random_pose(rng), random_pose(rng)
    buf.add("odom", "base_link", 5 * S, *o_b)
    buf.add("map", "odom", 5 * S, *map_to_odom(*m_b, *o_b))
    assert_pose(buf.lookup("map", "base_link", 5 * S), mat(*m_b))
