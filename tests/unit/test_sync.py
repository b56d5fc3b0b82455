"""`pose_regressor.sync.FrameSynchronizer`: properties over random arrival orders, rates and jitter."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pose_regressor.sync import FrameSynchronizer, SyncedSet


@dataclass(frozen=True)
class Frame:
    camera: int
    stamp: int
    uid: int


@dataclass
class Run:
    sets: list[SyncedSet[Frame]]
    epochs: list[int]  # sync.resets right after each set was emitted
    sync: FrameSynchronizer[Frame]


def feed(camera_count: int, slop: int, arrivals: list[tuple[int, int]]) -> Run:
    """Feed (camera, stamp) arrivals in order, checking the per-add invariants on the way."""
    sync: FrameSynchronizer[Frame] = FrameSynchronizer(camera_count, slop)
    frame_epoch: dict[int, int] = {}
    run = Run([], [], sync)
    for uid, (camera, stamp) in enumerate(arrivals):
        frame = Frame(camera, stamp, uid)
        out = sync.add(camera, stamp, frame)
        frame_epoch[uid] = sync.resets
        if out is None:
            continue
        # A set completes exactly when its last frame arrives, and only with frames of this epoch.
        assert out.frames[camera] is frame
        assert all(frame_epoch[f.uid] == sync.resets for f in out.frames)
        run.sets.append(out)
        run.epochs.append(sync.resets)
    assert sync.emitted == len(run.sets)
    return run


def check_set_invariants(run: Run, slop: int) -> None:
    used: set[int] = set()
    for synced in run.sets:
        assert [f.camera for f in synced.frames] == list(range(run.sync.camera_count))
        assert synced.stamps == tuple(f.stamp for f in synced.frames)
        assert synced.stamp_ns == synced.stamps[0]
        assert synced.skew_ns == max(synced.stamps) - min(synced.stamps) <= slop
        assert all(abs(s - synced.stamp_ns) <= slop for s in synced.stamps)
        uids = {f.uid for f in synced.frames}
        assert not uids & used, "a frame was used in two sets"
        used |= uids
    for (a, ea), (b, eb) in zip(
        zip(run.sets, run.epochs, strict=True), zip(run.sets[1:], run.epochs[1:], strict=True), strict=False
    ):
        if ea == eb:  # no reset in between: every camera moved strictly forward
            assert b.stamp_ns > a.stamp_ns
            assert all(sb > sa for sa, sb in zip(a.stamps, b.stamps, strict=True))


@st.composite
def random_streams(draw: st.DrawFn) -> tuple[int, int, list[tuple[int, int]]]:
    """Cameras with their own rate, offset and jitter, interleaved in any order (per-camera order
    kept), optionally followed by a second epoch that starts earlier (a bag loop)."""
    cameras = draw(st.integers(1, 4))
    slop = draw(st.integers(0, 25))
    arrivals: list[tuple[int, int]] = []
    for epoch_start in draw(st.sampled_from([[1000], [1000, 0]])):
        streams: list[list[int]] = []
        for _ in range(cameras):
            period = draw(st.integers(5, 60))
            offset = draw(st.integers(0, 40))
            jitter = draw(st.lists(st.integers(-8, 8), min_size=0, max_size=20))
            streams.append([epoch_start + offset + k * period + j for k, j in enumerate(jitter)])
        labels = [cam for cam, stream in enumerate(streams) for _ in stream]
        order = draw(st.permutations(labels))
        cursor = [0] * cameras
        for cam in order:
            arrivals.append((cam, streams[cam][cursor[cam]]))
            cursor[cam] += 1
    return cameras, slop, arrivals


@settings(max_examples=150, deadline=None)
@given(random_streams())
def test_invariants_hold_for_any_arrival_order(case: tuple[int, int, list[tuple[int, int]]]) -> None:
    cameras, slop, arrivals = case
    run = feed(cameras, slop, arrivals)
    check_set_invariants(run, slop)
    sync = run.sync
    frames_used = cameras * sync.emitted
    assert frames_used + sync.replaced + sync.stale <= len(arrivals)


@st.composite
def same_stamp_rounds(draw: st.DrawFn) -> tuple[int, int, list[int], list[tuple[int, int]]]:
    """All cameras publish the same stamps; each stamp's frames arrive in a random order."""
    cameras = draw(st.integers(1, 5))
    slop = draw(st.integers(0, 10))
    gaps = draw(st.lists(st.integers(1, 50), min_size=1, max_size=30))
    stamps = [10**18 + sum(gaps[: k + 1]) for k in range(len(gaps))]
    arrivals = []
    for stamp in stamps:
        for cam in draw(st.permutations(range(cameras))):
            arrivals.append((cam, stamp))
    return cameras, slop, stamps, arrivals


@settings(max_examples=100, deadline=None)
@given(same_stamp_rounds())
def test_identical_stamps_give_exactly_one_set_each(
    case: tuple[int, int, list[int], list[tuple[int, int]]],
) -> None:
    cameras, slop, stamps, arrivals = case
    run = feed(cameras, slop, arrivals)
    check_set_invariants(run, slop)
    assert [s.stamp_ns for s in run.sets] == stamps
    assert all(s.stamps == (s.stamp_ns,) * cameras and s.skew_ns == 0 for s in run.sets)
    assert (run.sync.replaced, run.sync.stale, run.sync.resets) == (0, 0, 0)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_jitter_within_slop_keeps_every_round(data: st.DataObject) -> None:
    cameras = data.draw(st.integers(2, 4))
    slop = data.draw(st.integers(0, 15))
    rounds = data.draw(st.integers(1, 20))
    arrivals, first_stamps = [], []
    base = 1000
    for _ in range(rounds):
        base += slop + data.draw(st.integers(1, 30))  # successive rounds never overlap
        jitter = [data.draw(st.integers(0, slop)) for _ in range(cameras)]
        first_stamps.append(base + jitter[0])
        for cam in data.draw(st.permutations(range(cameras))):
            arrivals.append((cam, base + jitter[cam]))
    run = feed(cameras, slop, arrivals)
    check_set_invariants(run, slop)
    assert [s.stamp_ns for s in run.sets] == first_stamps


@settings(max_examples=60, deadline=None)
@given(same_stamp_rounds(), st.integers(1, 10**6), st.data())
def test_stamps_going_backwards_clear_state(
    case: tuple[int, int, list[int], list[tuple[int, int]]], back: int, data: st.DataObject
) -> None:
    cameras, slop, stamps, arrivals = case
    # A partial round is pending when the loop happens: it must not be mixed into later sets.
    partial = data.draw(st.integers(0, cameras - 1))
    dangling = [(cam, stamps[-1] + 10_000) for cam in range(partial)]
    replay = [(cam, stamp - back) for cam, stamp in arrivals]  # the same rounds, a little earlier
    run = feed(cameras, slop, arrivals + dangling + replay)
    check_set_invariants(run, slop)
    assert run.sync.resets == 1
    second = [s.stamp_ns for s, epoch in zip(run.sets, run.epochs, strict=True) if epoch == 1]
    assert second == [s - back for s in stamps]
    assert run.sync.last_stamp_ns == second[-1]


def test_overtaken_frames_are_counted_as_replaced() -> None:
    sync: FrameSynchronizer[str] = FrameSynchronizer(2, 5)
    assert sync.add(0, 100, "a0") is None
    assert sync.add(0, 200, "b0") is None  # a0 never used
    assert sync.add(1, 100, "a1") is None  # too far from b0
    out = sync.add(1, 203, "b1")
    assert out is not None and out.frames == ("b0", "b1") and out.stamps == (200, 203) and out.skew_ns == 3
    assert (sync.emitted, sync.replaced, sync.stale, sync.resets) == (1, 2, 0, 0)


def test_duplicate_stamp_after_a_set_is_stale_not_reused() -> None:
    sync: FrameSynchronizer[str] = FrameSynchronizer(2, 0)
    assert sync.add(0, 100, "a") is None
    assert sync.add(1, 100, "b") is not None
    assert sync.add(1, 100, "b again") is None
    assert sync.add(0, 100, "a again") is None
    assert (sync.emitted, sync.stale) == (1, 2)


def test_single_camera_emits_every_frame() -> None:
    sync: FrameSynchronizer[int] = FrameSynchronizer(1, 0)
    outs = [sync.add(0, s, s) for s in (1, 2, 3)]
    assert [o.stamp_ns for o in outs if o is not None] == [1, 2, 3]


def test_reset_forgets_pending_frames_and_history() -> None:
    sync: FrameSynchronizer[str] = FrameSynchronizer(2, 0)
    sync.add(0, 100, "x")
    sync.add(1, 100, "y")
    sync.add(0, 200, "pending")
    sync.reset()
    assert sync.last_stamp_ns is None
    assert sync.add(1, 100, "y2") is None  # not stale any more, and "pending" is gone
    out = sync.add(0, 100, "x2")
    assert out is not None and out.frames == ("x2", "y2")
    assert sync.resets == 0  # counts only automatic resets


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="camera_count"):
        FrameSynchronizer(0, 5)
    with pytest.raises(ValueError, match="slop_ns"):
        FrameSynchronizer(2, -1)
    with pytest.raises(TypeError, match="slop_ns"):
        FrameSynchronizer(2, 0.5)  # type: ignore[arg-type]
    sync: FrameSynchronizer[None] = FrameSynchronizer(2, 5)
    with pytest.raises(IndexError, match=r"0\.\.1, got 2"):
        sync.add(2, 0, None)
    with pytest.raises(TypeError, match="stamp_ns"):
        sync.add(0, 1.5, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="camera_index"):
        sync.add(True, 1, None)


def test_concurrent_producers_keep_the_invariants() -> None:
    cameras, rounds, slop = 4, 400, 2
    sync: FrameSynchronizer[Frame] = FrameSynchronizer(cameras, slop)
    results: list[SyncedSet[Frame]] = []
    lock = threading.Lock()
    start = threading.Barrier(cameras)

    def produce(cam: int) -> None:
        start.wait()
        for k in range(rounds):
            out = sync.add(
                cam, 1000 + 100 * k + cam % 2, Frame(cam, 1000 + 100 * k + cam % 2, k * cameras + cam)
            )
            if out is not None:
                with lock:
                    results.append(out)

    threads = [threading.Thread(target=produce, args=(cam,)) for cam in range(cameras)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.sort(key=lambda s: s.stamp_ns)
    check_set_invariants(Run(results, [0] * len(results), sync), slop)
    assert sync.emitted == len(results) >= 1
    assert cameras * sync.emitted + sync.replaced + sync.stale + sync.pending == cameras * rounds


def test_forget_camera_lets_its_own_stamps_return_without_a_reset() -> None:
    """A camera whose slots were filled with stand-ins stamped like camera 0 sends again with its
    own clock 3 ms behind: no time jump (no reset), its frames older than its last stand-in are
    stale, and sets form from its next frame on."""
    sync: FrameSynchronizer[str] = FrameSynchronizer(2, slop_ns=10)
    for stamp in (100, 200):
        sync.add(0, stamp, "front")
        assert sync.add(1, stamp, "black") is not None
    sync.forget_camera(1)
    assert sync.add(1, 197, "left") is None and sync.stale == 1  # older than its stand-in at 200
    assert sync.add(0, 300, "front") is None
    emitted = sync.add(1, 297, "left")
    assert emitted is not None and emitted.frames == ("front", "left") and emitted.stamps == (300, 297)
    assert sync.resets == 0
    with pytest.raises(IndexError):
        sync.forget_camera(2)
