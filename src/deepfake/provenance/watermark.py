"""The invisible mark: a 32-bit payload carried by every marked face, read back after re-encoding,
scaling and cropping.

Where. The mark lives in the face, in our own canonical frame: each face is aligned by its 68 landmarks
(faces/align.py, the same Umeyama fit as extract) to a `SIZE` px crop. The detector finds the face,
aligns it the same way and reads the mark there, so scaling the picture, cropping its borders or moving
the face changes nothing the mark depends on.

How. Spread-transform dither modulation (STDM), a quantisation index modulation scheme: B. Chen and
G. W. Wornell, "Quantization index modulation: a class of provably good methods for digital
watermarking and information embedding", IEEE Trans. Inf. Theory 47(4), 2001. Each bit owns one
pattern: key-seeded noise, low-pass filtered to the lowest DCT frequencies (what compression and
downscaling keep), windowed to the inner face, and orthonormalised against the others. The face's luma
is projected onto each pattern, and the projection is moved to the nearest point of the lattice
(step `DELTA`, offset by a key-seeded dither) that encodes the bit. Unlike additive spread spectrum the
face itself causes no bit errors, because the embedder cancels its projection. The change is added to
R, G and B alike (luma only), warped back into the frame.

Reading. A bit's soft value is cos(2 pi (projection - dither) / DELTA): +1 on the lattice of 0, -1 on
that of 1. Video averages the soft values over every face of every frame checked, then decides.

Payload and decision. 16 bits of tool marker (`MARKER`) and 16 bits of the model's hash. A face (or a
file, after averaging) is called marked when at most `MARKER_ERRORS` of the 16 marker bits differ. On
a face without the mark the bits are independent fair coins (the dither is uniform), so the false-alarm
rate is sum_{k<=1} C(16, k) / 2^16 = 17 / 65536 = 0.026 % per face; the benchmark measures it on every
frame of the shared media.

`invisible-watermark` (DWT-DCT, as Stable Diffusion uses it) is not used: it needs opencv-python, which
clashes with our opencv-python-headless, and it embeds in fixed blocks of the whole frame, which a crop
or a resize moves out of step.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np

from deepfake.faces.align import (CANONICAL_68, CENTER_OFFSET, canonical_points, invert_affine, matrix_scale, umeyama,
                                  warp_face)

SIZE = 64  # aligned crop the mark lives in, px (the patterns' frequencies are far below its Nyquist limit)
COVERAGE = 0.75  # fraction of the crop the canonical face spans
BITS = 32
MARKER = 0xDF5A  # the tool's 16-bit marker, the payload's high half
MARKER_ERRORS = 1  # marker bits allowed to differ for a face to count as marked
FALSE_ALARM = 17 / 65536  # per face (and per file), with MARKER_ERRORS = 1: sum_{k<=1} C(16,k) / 2^16
DELTA = 120.0  # lattice step of the projections (luma units along a unit-norm pattern)
BAND = (1.5, 9.0)  # DCT radius (cycles per two crop widths) of the patterns: the lowest frequencies
KEY = 31  # seeds the patterns and the dither
MIN_FACE_PX = 40  # a face narrower than this in the picture is too small to carry a mark
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def payload_for(model_sha256: str | None) -> int:
    """The 32-bit payload: the tool marker, then the first 16 bits of the model's SHA-256 (0 if none)."""
    low = int(model_sha256[:4], 16) if model_sha256 else 0
    return (MARKER << 16) | low


def payload_hex(payload: int) -> str:
    return f"{payload:08x}"


def _bits(payload: int) -> np.ndarray:
    return np.array([(payload >> (BITS - 1 - i)) & 1 for i in range(BITS)], np.int64)  # (32,) MSB first


def _value(bits: np.ndarray) -> int:
    return int("".join(str(int(b)) for b in bits), 2)


@functools.lru_cache(maxsize=1)
def patterns() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P, dither, window): P (SIZE*SIZE, BITS) orthonormal patterns, dither (BITS,), window (SIZE, SIZE)."""
    rng = np.random.default_rng(KEY)
    # The window: the canonical face's hull, shrunk to the middle of the face (eyes, nose, mouth) and
    # feathered, so the mark stays on skin that the swap replaced, off hair and background, and inside
    # the picture when a crop cuts the chin of a face low in the frame (d14.mp4 under a 10 % crop).
    pts = (0.5 + COVERAGE * (0.6 * CANONICAL_68 + CENTER_OFFSET - [0.0, 0.04])) * SIZE
    window = np.zeros((SIZE, SIZE), np.float32)
    cv2.fillConvexPoly(window, cv2.convexHull(pts.astype(np.int32)), 1.0)
    window = cv2.GaussianBlur(window, (0, 0), SIZE / 32)
    u, v = np.meshgrid(np.arange(SIZE), np.arange(SIZE))
    radius = np.hypot(u, v)
    band = ((radius >= BAND[0]) & (radius <= BAND[1])).astype(np.float32)
    # Each pattern sums to zero, so a flat change of brightness (limited-range YUV round trips of
    # re-encoding) moves no projection; it is corrected with the window itself, so every pattern stays
    # zero outside the window.
    cols = []
    for _ in range(BITS):
        coeffs = rng.standard_normal((SIZE, SIZE)).astype(np.float32) * band
        col = (cv2.idct(coeffs) * window).ravel()
        cols.append(col - col.sum() / window.sum() * window.ravel())
    q, _ = np.linalg.qr(np.stack(cols, 1).astype(np.float64))  # (SIZE*SIZE, BITS), orthonormal columns
    dither = rng.uniform(0, DELTA, BITS)
    return q.astype(np.float32), dither.astype(np.float32), window


@functools.lru_cache(maxsize=1)
def window_box() -> tuple[int, int]:
    """The square [lo, hi) of the crop outside which every pattern is ~0 (below 1 % of its peak)."""
    _, _, window = patterns()
    rows = np.nonzero(window.max(axis=1) > 0.01)[0]
    cols = np.nonzero(window.max(axis=0) > 0.01)[0]
    return int(min(rows[0], cols[0])), int(max(rows[-1], cols[-1])) + 1


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ _LUMA  # (H, W)


# The mark's alignment fits the rigid points only (brows, eyes, nose): a talking or open mouth moves
# the mouth points, and a fit that follows them would misplace the crop the mark is read from.
RIGID_POINTS = np.arange(17, 48)


def mark_matrix(landmarks: np.ndarray) -> np.ndarray:
    """2x3 affine, picture -> the mark's canonical crop."""
    lm = np.asarray(landmarks, np.float64)
    return umeyama(lm[RIGID_POINTS], canonical_points(SIZE, COVERAGE)[RIGID_POINTS])[:2]


def face_too_small(matrix: np.ndarray) -> bool:
    return SIZE * COVERAGE / matrix_scale(matrix) < MIN_FACE_PX


def embed_still(frame: np.ndarray, analyzer, payload: int, rounds: int = 3,
                only: list[np.ndarray] | None = None) -> int:
    """Mark a still in place. The mark shifts the landmarks a reader finds a little, so embed again
    from the landmarks found on the marked picture (averaged over box variants, as the reader does).
    `only`: the 68 landmarks of the faces to mark (the swapped ones); the reader finds every face, and
    a face that was not swapped must not carry the mark. None marks every face."""
    done = 0
    for _ in range(rounds):
        faces = [f.mean(axis=0) for f in locate(analyzer, frame, variants=True)]
        if only is not None:
            faces = [f for f in faces if any(same_face(f, g) for g in only)]
        done = embed(frame, faces, payload)
    return done


def same_face(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two 68-landmark fits are of the same face: centres within a quarter of its width."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    width = float(np.ptp(b[:, 0]))
    return float(np.linalg.norm(a.mean(axis=0) - b.mean(axis=0))) < 0.25 * width


def embed(frame: np.ndarray, landmarks: list[np.ndarray], payload: int) -> int:
    """Mark every face of `frame` (uint8 RGB, changed in place) given its 68 landmarks; returns how many
    faces were marked (faces too small to carry a mark are left alone)."""
    p, dither, _ = patterns()
    bits = _bits(payload).astype(np.float32)
    offset = dither + bits * DELTA / 2
    h, w = frame.shape[:2]
    done = 0
    for lm in landmarks:
        m = mark_matrix(lm)
        if face_too_small(m):
            continue
        y = _luma(warp_face(frame, m, SIZE)).ravel()  # (SIZE*SIZE,)
        proj = y @ p  # (BITS,)
        target = np.round((proj - offset) / DELTA) * DELTA + offset
        delta = (p @ (target - proj)).reshape(SIZE, SIZE)  # (SIZE, SIZE) luma change in the crop
        # Warp the change back only over the window's box in the picture (the mark is zero outside it).
        inv = invert_affine(m)
        lo, hi = window_box()
        corners = np.array([[lo, lo], [hi, lo], [lo, hi], [hi, hi]], np.float64) @ inv[:, :2].T + inv[:, 2]
        x0, y0 = np.floor(corners.min(0)).astype(int)
        x1, y1 = np.ceil(corners.max(0)).astype(int)
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 <= x0 or y1 <= y0:
            continue
        shift = np.array([[1, 0, -x0], [0, 1, -y0]], np.float64)
        roi_inv = shift @ np.vstack([inv, [0, 0, 1]])  # crop -> ROI
        change = cv2.warpAffine(delta, roi_inv, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT)  # (h_roi, w_roi) float32
        change = np.rint(change).astype(np.int16)
        # Saturating uint8 + int16 in one OpenCV call, the same change on R, G and B (luma only).
        frame[y0:y1, x0:x1] = cv2.add(frame[y0:y1, x0:x1], cv2.merge([change, change, change]), dtype=cv2.CV_8U)
        done += 1
    return done


# Where a reader looks for the crop, around the one its landmarks give: (scale, degrees, dx, dy), the
# shifts in crop pixels. A face's landmarks are found again on a re-encoded or rescaled copy a few tenths
# of a crop pixel away from where they were when it was marked, and at the patterns' frequencies that
# moves the projections by about DELTA / 6. The reader keeps the transform whose soft values are surest
# (mean |soft|), which does not depend on their signs: the marker bits of a face without the mark stay
# fair coins. A video averages its frames' errors away; a still has one read, and the CNN detector's
# landmarks (the faces HOG misses) move further between scales and compressions, so a still is searched
# wider: shifts of up to a crop pixel, 2 % of scale and 1.5 degrees.
def _grid(reach: float, scales=(1.0,), degrees=(0.0,)) -> list[tuple[float, float, float, float]]:
    steps = np.arange(-reach, reach + 1e-9, 0.25)
    return [(s, a, float(dx), float(dy)) for s in scales for a in degrees for dy in steps for dx in steps]


SEARCH = _grid(0.5)  # 25 reads per face
STILL_SEARCH = _grid(1.0, (0.98, 1.0, 1.02), (-1.5, 0.0, 1.5))  # 729 reads per face, once per picture
_MARGIN = 4  # crop pixels around the crop, so every transform reads inside the warped picture


def soft_bits(frame: np.ndarray, landmarks: np.ndarray, search: bool = True, still: bool = False) -> np.ndarray:
    """Soft values in [-1, 1] of the 32 bits carried by one face (+1 = bit 0), read at the mean of the
    landmark variants when `landmarks` is (K, 68, 2), as embed_still marks, and at the best of the
    SEARCH (`still`: STILL_SEARCH) transforms around it. (BITS,)"""
    p, dither, _ = patterns()
    lm = np.asarray(landmarks).reshape(-1, 68, 2).mean(axis=0)
    m = mark_matrix(lm)
    if not search:
        y = _luma(warp_face(frame, m, SIZE)).ravel()
        return np.cos(2 * np.pi * (y @ p - dither) / DELTA).astype(np.float32)
    m[:, 2] += _MARGIN
    big = _luma(warp_face(frame, m, SIZE + 2 * _MARGIN))  # (SIZE + 2 MARGIN, SIZE + 2 MARGIN)
    centre = np.full(2, SIZE / 2)
    best, best_conf = None, -1.0
    for scale, degrees, dx, dy in STILL_SEARCH if still else SEARCH:
        a = np.deg2rad(degrees)
        rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        # big crop -> crop: about the crop's centre, then shifted.
        move = np.hstack([rot, (centre + [dx, dy] - rot @ (centre + _MARGIN))[:, None]])
        y = cv2.warpAffine(big, move, (SIZE, SIZE), flags=cv2.INTER_LINEAR).ravel()  # (SIZE*SIZE,)
        soft = np.cos(2 * np.pi * (y @ p - dither) / DELTA)
        conf = float(np.mean(np.abs(soft)))
        if conf > best_conf:
            best, best_conf = soft, conf
    return best.astype(np.float32)


def refit(analyzer, frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The landmarks fitted again from the box of `landmarks`. The shape predictor's answer depends on
    the box it starts from (a detector's box, a tracker's, the swap's), most on a blurry swapped face;
    started from the box of its own landmarks it lands near one fixed point whatever the first box was,
    so the marker and the reader agree on where the face is."""
    from deepfake.faces.landmarks import box_from_landmarks

    return analyzer._landmarks(frame, box_from_landmarks(landmarks))


def locate(analyzer, frame: np.ndarray, smoother=None, time: float = 0.0, variants: bool = False) -> list[np.ndarray]:
    """The 68 landmarks of each face in `frame` (a faces.analyzer.FaceAnalyzer finds them, as extract
    does). variants=True (stills): (K, 68, 2) per face, the landmarks fitted from K slightly shifted
    boxes. One fit's error moves the projections; the mean of K fits has less of it, where a video
    averages its reads over frames."""
    dets = analyzer.detect(frame, smoother, time)
    found = [refit(analyzer, frame, analyzer._landmarks(frame, d.bbox)) for d in dets]
    if smoother is not None:
        found = list(smoother(found, time, [d.bbox for d in dets]))
    if not variants:
        return found
    out = []
    for d, lm in zip(dets, found):
        x0, y0, x1, y1 = d.bbox
        s = 0.03 * (x1 - x0)
        boxes = [(x0 + dx, y0 + dy, x1 + dx, y1 + dy) for dx, dy in ((s, 0), (-s, 0), (0, s), (0, -s))]
        out.append(np.stack([lm] + [analyzer._landmarks(frame, b) for b in boxes]))
    return out


@dataclass
class Reading:
    """What the mark says about one picture or video."""

    found: bool = False
    payload: str | None = None  # hex, when found
    model_hash: str | None = None  # the payload's low 16 bits (first 4 hex of the model's SHA-256)
    confidence: float = 0.0  # mean |soft value| of the bits, 0 (noise) .. 1 (clean)
    marker_errors: int | None = None  # marker bits that differ from the tool's
    faces_checked: int = 0
    frames_checked: int = 0
    frames_marked: int = 0  # frames whose own bits alone say marked
    too_small: int = 0  # faces too small to carry a mark
    false_alarm: float = FALSE_ALARM
    bits: list[int] = field(default_factory=list)

    @property
    def note(self) -> str | None:
        if self.faces_checked == 0 and self.too_small:
            return "too small to carry a mark"
        if self.faces_checked == 0:
            return "no face to read a mark from"
        return None


def decide(soft: np.ndarray) -> tuple[bool, int, np.ndarray]:
    """(marked, marker errors, hard bits) from soft values (BITS,)."""
    hard = (soft < 0).astype(np.int64)
    errors = int(np.sum(hard[:16] != _bits(payload_for(None))[:16]))
    return errors <= MARKER_ERRORS, errors, hard


class MarkReader:
    """Accumulates the soft bits of the faces of one file's frames, then decides."""

    def __init__(self):
        self.total = np.zeros(BITS, np.float64)
        self.reading = Reading()

    def add_frame(self, frame: np.ndarray, faces_landmarks: list[np.ndarray], still: bool = False) -> None:
        r = self.reading
        r.frames_checked += 1
        frame_soft = []
        for lm in faces_landmarks:
            if face_too_small(mark_matrix(np.asarray(lm).reshape(-1, 68, 2)[0])):
                r.too_small += 1
                continue
            frame_soft.append(soft_bits(frame, lm, still=still))
        for s in frame_soft:
            self.total += s
            r.faces_checked += 1
        if frame_soft and any(decide(s)[0] for s in frame_soft):
            r.frames_marked += 1

    def result(self) -> Reading:
        r = self.reading
        if r.faces_checked == 0:
            return r
        mean = self.total / r.faces_checked
        found, errors, hard = decide(mean)
        r.found, r.marker_errors = found, errors
        r.confidence = float(np.mean(np.abs(mean)))
        r.bits = [int(b) for b in hard]
        if found:  # the marker is known: a bit of it read wrong (MARKER_ERRORS) is reported, not kept
            value = (MARKER << 16) | (_value(hard) & 0xFFFF)
            r.payload = payload_hex(value)
            r.model_hash = f"{value & 0xFFFF:04x}"
        return r
