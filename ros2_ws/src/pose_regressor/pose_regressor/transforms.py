"""A small, ROS-free TF buffer fed from ``/tf`` and ``/tf_static`` messages.

Why our own: tf2_ros is not installable from PyPI (the pip-installed ROS 2 used here has
no tf2 Python binding), and the node must behave the same with and without a distro
install.  It covers what the localizer needs: the camera extrinsics (``base_link ->
camera``, usually static) and ``odom -> base_link`` at the image stamp, to publish
``map -> odom`` like AMCL.

Semantics follow tf2 where it matters: ``T_parent_child`` maps points of ``child`` into
``parent`` (``TransformStamped``: ``header.frame_id`` = parent, ``child_frame_id`` = child);
a leading ``/`` is stripped from frame names; a frame has one parent (tf is a tree);
dynamic edges interpolate linearly in translation and by slerp in rotation, never
extrapolate; stamp 0 means "latest".  Times are integer nanoseconds, translations metres,
quaternions xyzw.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.spatial.transform import Rotation

from pose_regressor import pose

__all__ = ["DEFAULT_MAX_HISTORY", "TransformBuffer", "TransformUnavailable", "map_to_odom"]

FloatArray = npt.NDArray[np.float64]

#: Hard cap on samples kept per dynamic edge, whatever the rate: bounds memory even for a
#: publisher at 1 kHz with a long cache or with bogus stamps.
DEFAULT_MAX_HISTORY = 10_000

#: Longest parent chain walked; deeper means a loop slipped in (re-parenting A under B and B under A).
_MAX_DEPTH = 1000


class TransformUnavailable(LookupError):  # noqa: N818 - named like tf2 LookupException
    """The requested transform cannot be computed; the message says why in one line."""


class _Sample(NamedTuple):
    stamp_ns: int
    t: FloatArray  # (3,) metres, read-only
    q: FloatArray  # (4,) xyzw unit, read-only


@dataclass
class _Edge:
    """``T_parent_child``; static edges hold exactly one sample whose stamp is ignored."""

    parent: str
    static: bool
    history: deque[_Sample] = field(default_factory=deque)


def _frame(name: str, role: str) -> str:
    if not isinstance(name, str):
        raise ValueError(f"{role} frame must be a string, got {type(name).__name__}")
    stripped = name[1:] if name.startswith("/") else name
    if not stripped:
        raise ValueError(f"{role} frame name is empty")
    return stripped


def _frozen(a: FloatArray) -> FloatArray:
    # samples are read outside the lock (see lookup), so nobody may change one in place
    a.setflags(write=False)
    return a


def _interpolate(s0: _Sample, s1: _Sample, stamp_ns: int) -> tuple[FloatArray, FloatArray]:
    """Linear translation and slerp rotation at ``stamp_ns`` in ``[s0.stamp_ns, s1.stamp_ns]``."""
    a = (stamp_ns - s0.stamp_ns) / (s1.stamp_ns - s0.stamp_ns)
    t = (1.0 - a) * s0.t + a * s1.t
    r0 = Rotation.from_quat(s0.q)
    step = (r0.inv() * Rotation.from_quat(s1.q)).as_rotvec()  # shortest arc (angle <= pi)
    q = (r0 * Rotation.from_rotvec(a * step)).as_quat()
    return np.asarray(t, dtype=np.float64), pose.canonical_hemisphere(q)


class TransformBuffer:
    """Thread-safe store of the tf tree with a bounded time history per dynamic edge.

    The node adds from subscription callbacks and looks up from its inference thread, so
    every access takes one lock; interpolation and composition run outside it.

    ``cache_s`` is the history kept per dynamic edge, back from that edge's newest stamp (tf2's
    default is 10 s); ``max_history`` caps the samples per dynamic edge (a memory bound).
    """

    def __init__(self, cache_s: float = 10.0, max_history: int = DEFAULT_MAX_HISTORY) -> None:
        if not (math.isfinite(cache_s) and cache_s > 0.0):
            raise ValueError(f"cache_s must be a positive finite number of seconds, got {cache_s}")
        if max_history < 2:
            raise ValueError(f"max_history must be >= 2 (interpolation needs two samples), got {max_history}")
        self._cache_ns = round(cache_s * 1e9)
        self._max_history = int(max_history)
        self._edges: dict[str, _Edge] = {}  # keyed by child frame
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ feeding

    def add(
        self,
        parent: str,
        child: str,
        stamp_ns: int,
        translation: npt.ArrayLike,
        quat_xyzw: npt.ArrayLike,
        static: bool = False,
    ) -> None:
        """Store ``T_parent_child`` (one ``TransformStamped``) at ``stamp_ns`` (ignored when ``static``).

        A new parent for ``child``, or a switch between static and dynamic, replaces the
        old edge (tf is a tree; the newest publisher wins).  A dynamic stamp more than
        ``cache_s`` older than the edge's newest (bag loop, sim-time reset) clears that
        edge's history instead of being dropped, so the buffer follows the new timeline.
        A repeated stamp replaces the stored sample.

        Raises:
            ValueError: empty names, ``parent == child``, a negative stamp, wrong shapes,
                non-finite values or a zero-norm quaternion.
        """
        p = _frame(parent, "parent")
        c = _frame(child, "child")
        if p == c:
            raise ValueError(f"parent and child frame are the same ({p!r}); a frame cannot be its own parent")
        stamp = int(stamp_ns)
        if stamp < 0:
            raise ValueError(f"stamp_ns must be >= 0, got {stamp}")
        t = np.array(translation, dtype=np.float64)
        if t.shape != (3,) or not np.all(np.isfinite(t)):
            raise ValueError(f"translation of {p} -> {c} must be 3 finite numbers (metres), got {t.tolist()}")
        q_in = np.asarray(quat_xyzw, dtype=np.float64)
        if q_in.shape != (4,):
            raise ValueError(f"quaternion of {p} -> {c} must have shape (4,) xyzw, got {q_in.shape}")
        try:
            q = pose.normalize_quaternion(q_in).copy()
        except ValueError as exc:
            raise ValueError(f"quaternion of {p} -> {c}: {exc}") from None
        sample = _Sample(stamp, _frozen(t), _frozen(q))

        with self._lock:
            edge = self._edges.get(c)
            if edge is None or edge.parent != p or edge.static != static:
                edge = _Edge(parent=p, static=static)
                self._edges[c] = edge
            history = edge.history
            if static:
                history.clear()
                history.append(sample)
                return
            # the usual in-order case: an O(1) append
            if not history or stamp > history[-1].stamp_ns:
                history.append(sample)
            elif stamp < history[-1].stamp_ns - self._cache_ns:
                history.clear()
                history.append(sample)
            else:
                i = bisect.bisect_left(history, stamp, key=lambda s: s.stamp_ns)
                if history[i].stamp_ns == stamp:
                    history[i] = sample
                else:
                    history.insert(i, sample)
            oldest_kept = history[-1].stamp_ns - self._cache_ns
            while len(history) > self._max_history or history[0].stamp_ns < oldest_kept:
                history.popleft()

    def clear(self) -> None:
        """Forget every transform (e.g. when the node sees ``/clock`` jump back)."""
        with self._lock:
            self._edges.clear()

    def frames(self) -> set[str]:
        """All frame names that appear in a stored edge (for diagnostics)."""
        with self._lock:
            return set(self._edges) | {e.parent for e in self._edges.values()}

    # ------------------------------------------------------------------ queries

    def lookup(
        self, target: str, source: str, stamp_ns: int, tolerance_ns: int = 0
    ) -> tuple[FloatArray, FloatArray]:
        """``T_target_source`` (maps points of ``source`` into ``target``) at ``stamp_ns``.

        Walks both frames up to their common ancestor and evaluates each dynamic edge at
        ``stamp_ns``: interpolated between the two bracketing samples; when the stamp lies
        outside the edge's history by at most ``tolerance_ns``, the nearest sample (never an
        extrapolation, which would amplify noise).  ``stamp_ns == 0`` takes every dynamic edge
        at its newest sample, like tf2's ``Time(0)``.

        Returns:
            ``(translation (3,) metres, quat_xyzw (4,) with w >= 0)``.

        Raises:
            TransformUnavailable: unknown frame, frames not connected, a loop, or a stamp
                outside some edge's history by more than the tolerance.
            ValueError: negative ``stamp_ns`` or ``tolerance_ns``.
        """
        tgt = _frame(target, "target")
        src = _frame(source, "source")
        stamp = int(stamp_ns)
        tol = int(tolerance_ns)
        if stamp < 0 or tol < 0:
            raise ValueError(f"stamp_ns and tolerance_ns must be >= 0, got {stamp} and {tol}")
        what = f"{tgt} <- {src}"
        with self._lock:
            known = set(self._edges) | {e.parent for e in self._edges.values()}
            for name in (tgt, src):
                if name not in known:
                    listed = ", ".join(sorted(known)[:20]) + (", ..." if len(known) > 20 else "")
                    raise TransformUnavailable(
                        f"cannot look up {what}: frame {name!r} is unknown (known frames: {listed or 'none'})"
                    )
            up_src = self._chain(src, what)
            up_tgt = self._chain(tgt, what)
            in_tgt = set(up_tgt)
            common = next((f for f in up_src if f in in_tgt), None)
            if common is None:
                raise TransformUnavailable(
                    f"cannot look up {what}: frames not connected ({src!r} is in the tree rooted at "
                    f"{up_src[-1]!r}, {tgt!r} in the tree rooted at {up_tgt[-1]!r})"
                )
            # Samples (or sample pairs) per edge, child frame first, from each side up to `common`.
            src_side = [self._at(f, stamp, tol, what) for f in up_src[: up_src.index(common)]]
            tgt_side = [self._at(f, stamp, tol, what) for f in up_tgt[: up_tgt.index(common)]]

        # outside the lock: the samples are immutable, and the maths must not hold up the tf callbacks
        t_cs, q_cs = _chain_product([_evaluate(x, stamp) for x in src_side])  # T_common_source
        t_ct, q_ct = _chain_product([_evaluate(x, stamp) for x in tgt_side])  # T_common_target
        if not tgt_side:
            return t_cs, q_cs
        t_tc, q_tc = pose.inverse(t_ct, q_ct)
        return pose.compose(t_tc, q_tc, t_cs, q_cs) if src_side else (t_tc, q_tc)

    def _chain(self, frame: str, what: str) -> list[str]:
        """``[frame, parent, grandparent, ..., root]``; caller holds the lock."""
        chain = [frame]
        seen = {frame}
        while (edge := self._edges.get(chain[-1])) is not None:
            if edge.parent in seen or len(chain) > _MAX_DEPTH:
                raise TransformUnavailable(
                    f"cannot look up {what}: the tf tree has a loop through {edge.parent!r} "
                    f"(path {' -> '.join(chain)} -> {edge.parent})"
                )
            chain.append(edge.parent)
            seen.add(edge.parent)
        return chain

    def _at(self, child: str, stamp: int, tol: int, what: str) -> _Sample | tuple[_Sample, _Sample]:
        """Sample (or bracketing pair) of edge ``parent -> child`` for ``stamp``; caller holds the lock."""
        edge = self._edges[child]
        history = edge.history
        if edge.static or stamp == 0:
            return history[-1]
        oldest, newest = history[0], history[-1]
        name = f"{edge.parent} -> {child}"
        if stamp < oldest.stamp_ns:
            if oldest.stamp_ns - stamp <= tol:
                return oldest
            raise TransformUnavailable(
                f"cannot look up {what} at {stamp} ns: stamp is {oldest.stamp_ns - stamp} ns older than the "
                f"history of edge {name} ({oldest.stamp_ns} .. {newest.stamp_ns} ns, tolerance {tol} ns)"
            )
        if stamp > newest.stamp_ns:
            if stamp - newest.stamp_ns <= tol:
                return newest
            raise TransformUnavailable(
                f"cannot look up {what} at {stamp} ns: stamp is {stamp - newest.stamp_ns} ns newer than the "
                f"newest transform of edge {name} ({newest.stamp_ns} ns, tolerance {tol} ns)"
            )
        i = bisect.bisect_left(history, stamp, key=lambda s: s.stamp_ns)
        if history[i].stamp_ns == stamp:
            return history[i]
        return history[i - 1], history[i]


def _evaluate(x: _Sample | tuple[_Sample, _Sample], stamp_ns: int) -> tuple[FloatArray, FloatArray]:
    if isinstance(x, _Sample):
        return x.t, x.q
    return _interpolate(x[0], x[1], stamp_ns)


def _chain_product(edges: list[tuple[FloatArray, FloatArray]]) -> tuple[FloatArray, FloatArray]:
    """``T_common_frame`` from the edges listed child first: ``E_n * ... * E_1`` (identity if none)."""
    if not edges:
        return np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0])
    t, q = edges[-1]
    for t_e, q_e in reversed(edges[:-1]):
        t, q = pose.compose(t, q, t_e, q_e)
    return np.array(t, dtype=np.float64), pose.canonical_hemisphere(q)


def map_to_odom(
    map_base_t: npt.ArrayLike,
    map_base_q: npt.ArrayLike,
    odom_base_t: npt.ArrayLike,
    odom_base_q: npt.ArrayLike,
) -> tuple[FloatArray, FloatArray]:
    """``T_map_odom = T_map_base * T_odom_base^-1``: what AMCL publishes.

    A frame has one parent, and odometry already owns ``odom -> base_link``; publishing the
    correction as ``map -> odom`` keeps the tree valid while ``map -> base_link`` equals our
    estimate at the stamp where ``T_odom_base`` was looked up.  Metres, xyzw (w >= 0).
    """
    t_bo, q_bo = pose.inverse(odom_base_t, odom_base_q)
    return pose.compose(map_base_t, map_base_q, t_bo, q_bo)
