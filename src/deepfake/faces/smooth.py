"""Temporal landmark smoothing for video (One-Euro filter), and the jitter measure it is judged by.

Raw per-frame landmarks tremble by 1-2 % of the eye distance even on a still face. A plain low-pass
filter would remove that but lag behind a fast head turn, so each face is split into
  * its similarity motion (where the face is, its size and roll), and
  * its shape: the landmarks in the face's own canonical frame (expression plus detector noise),
and each part gets a One-Euro filter (Casiez et al. 2012): a low-pass whose cutoff rises with speed.
At rest the cutoff is low and the noise is averaged away; when the head or the mouth moves fast the
cutoff rises and the output follows without lag. Tracks are kept per face, matched frame to frame by
position, so two people in a shot never smooth into each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from deepfake.faces.align import CANONICAL_68, FIT_POINTS, umeyama

_IOD_CANONICAL = float(np.linalg.norm(CANONICAL_68[42:48].mean(0) - CANONICAL_68[36:42].mean(0)))


class OneEuroFilter:
    """One-Euro filter over arrays of any shape; the last axis is one point's coordinates (its speed
    is the norm over that axis)."""

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float = 1.0):
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.d_cutoff = d_cutoff
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @staticmethod
    def _alpha(cutoff, dt: float):
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float, speed_scale: float = 1.0) -> np.ndarray:
        """Filter the sample x taken at time t (seconds). Speeds are divided by speed_scale before
        they raise the cutoff, so beta can be given in face-relative units."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t is None or t <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        dx = (x - self._x) / dt
        self._dx = self._dx + self._alpha(self.d_cutoff, dt) * (dx - self._dx)
        speed = np.linalg.norm(self._dx, axis=-1, keepdims=True) / speed_scale
        a = self._alpha(self.min_cutoff + self.beta * speed, dt)
        self._x = self._x + a * (x - self._x)
        self._t = t
        return self._x.copy()


# Similarity motion follows the head closely: it barely contributes to the jitter measure (which is
# relative to that motion), and lag there would show as a face sliding behind the head.
_MOTION_MIN_CUTOFF = 3.0  # Hz
_MOTION_BETA = 20.0  # per (face width / s): at 1.5 widths/s the lag is under 2 % of the eye distance


@dataclass
class _Track:
    position: OneEuroFilter  # (1, 2): where the canonical face's origin lands, source px
    scale_angle: OneEuroFilter  # (1, 2): log face width, roll angle
    shape: OneEuroFilter  # (68, 2) canonical units
    center: np.ndarray  # last face centre, source px
    width: float  # last face width, source px
    last_t: float
    bbox: tuple[float, float, float, float] | None = None
    cache: dict = field(default_factory=dict)  # per-face data a caller keeps across frames (e.g. identity)


def _decompose(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Similarity motion (cx, cy, log s, angle) and canonical shape (68, 2) of one face."""
    to_canon = umeyama(landmarks[FIT_POINTS], CANONICAL_68[FIT_POINTS])  # 3x3, source -> canonical
    shape = landmarks @ to_canon[:2, :2].T + to_canon[:2, 2]
    back = np.linalg.inv(to_canon)
    s = math.sqrt(abs(np.linalg.det(back[:2, :2])))  # source px per canonical unit (= face width in px)
    angle = math.atan2(back[1, 0], back[0, 0])
    motion = np.array([back[0, 2], back[1, 2], math.log(s), angle])
    return motion, shape, s


def _compose(motion: np.ndarray, shape: np.ndarray) -> np.ndarray:
    cx, cy, log_s, angle = motion
    s = math.exp(log_s)
    c, sn = math.cos(angle) * s, math.sin(angle) * s
    rot = np.array([[c, -sn], [sn, c]])
    return shape @ rot.T + np.array([cx, cy])


class LandmarkSmoother:
    """Smooths the landmarks of every face over consecutive video frames; one object per video."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 5.0, max_gap_s: float = 0.5, enabled: bool = True):
        self.enabled = enabled  # False: track faces between frames but return the landmarks unchanged
        self.last_tracks: list[_Track] = []  # the track of each face of the latest call, in order
        self.frames = 0  # frames seen; lets a caller re-detect from scratch every so often
        self.min_cutoff = min_cutoff  # Hz, shape filter at rest
        self.beta = beta  # shape filter cutoff rise per (canonical units / s)
        self.max_gap_s = max_gap_s  # a track unseen this long starts afresh
        self.tracks: list[_Track] = []

    def last_boxes(self, t: float) -> list[tuple[float, float, float, float]]:
        """Boxes of the faces still tracked at time t (detection hints for the next frame)."""
        return [tr.bbox for tr in self.tracks if tr.bbox is not None and t - tr.last_t <= self.max_gap_s]

    def __call__(self, faces: list[np.ndarray], t: float, bboxes: list | None = None) -> list[np.ndarray]:
        """Smoothed copies of `faces` ((68, 2) source px each) seen at time t (seconds)."""
        self.frames += 1
        self.tracks = [tr for tr in self.tracks if 0 <= t - tr.last_t <= self.max_gap_s]
        free = list(range(len(self.tracks)))
        out = []
        self.last_tracks = []
        for i, lm in enumerate(faces):
            lm = np.asarray(lm, dtype=np.float64)
            motion, shape, width = _decompose(lm)
            center = lm.mean(axis=0)
            track = self._match(center, width, free)
            if track is None:
                track = _Track(
                    position=OneEuroFilter(_MOTION_MIN_CUTOFF, _MOTION_BETA),
                    scale_angle=OneEuroFilter(_MOTION_MIN_CUTOFF, _MOTION_BETA),
                    shape=OneEuroFilter(self.min_cutoff, self.beta),
                    center=center,
                    width=width,
                    last_t=t,
                )
                self.tracks.append(track)
            # Angles wrap; keep the new one within pi of the filtered one.
            if track.scale_angle._x is not None:
                prev = track.scale_angle._x[0, 1]
                motion[3] = prev + (motion[3] - prev + math.pi) % (2 * math.pi) - math.pi
            # Translation speed in face widths per second, so beta does not depend on the face size.
            pos = track.position(motion[None, :2], t, speed_scale=width)[0]
            sa = track.scale_angle(motion[None, 2:], t)[0]
            m = np.concatenate([pos, sa])
            sh = track.shape(shape, t)
            track.center, track.width, track.last_t = center, width, t
            track.bbox = None if bboxes is None else tuple(bboxes[i])
            self.last_tracks.append(track)
            out.append(_compose(m, sh).astype(np.float32) if self.enabled else lm.astype(np.float32))
        return out

    def _match(self, center: np.ndarray, width: float, free: list[int]) -> _Track | None:
        best, best_d = None, 0.5 * width
        for j in free:
            d = float(np.linalg.norm(self.tracks[j].center - center))
            if d < best_d:
                best, best_d = j, d
        if best is None:
            return None
        free.remove(best)
        return self.tracks[best]


def frame_jitter(prev: np.ndarray, cur: np.ndarray) -> float:
    """Landmark motion between two frames that the face's own similarity motion does not explain, as
    a percentage of the inter-ocular distance (mean over the 68 points)."""
    prev = np.asarray(prev, dtype=np.float64)
    cur = np.asarray(cur, dtype=np.float64)
    m = umeyama(prev, cur)
    residual = cur - (prev @ m[:2, :2].T + m[:2, 2])
    iod = float(np.linalg.norm(cur[42:48].mean(0) - cur[36:42].mean(0)))
    return 100.0 * float(np.linalg.norm(residual, axis=1).mean()) / max(iod, 1e-6)


def median_jitter(track: list[np.ndarray] | np.ndarray) -> float:
    """Median frame-to-frame jitter (% of the eye distance) of one face's landmarks over consecutive frames."""
    track = np.asarray(track, dtype=np.float64)
    if len(track) < 2:
        raise ValueError("need at least two frames to measure jitter")
    return float(np.median([frame_jitter(a, b) for a, b in zip(track[:-1], track[1:])]))
