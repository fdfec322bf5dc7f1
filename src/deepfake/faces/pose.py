"""Head pose (yaw, pitch, roll in degrees) from 68 landmarks by solvePnP on a generic 3D face.

The generic face is the canonical 2D mean face wrapped onto a head-like surface: depth falls off
quadratically towards the jaw corners and the nose stands out. That is crude anatomy, but pose only
needs the depth *ordering* to be right, and it keeps the 3D model consistent with the 2D alignment.

Conventions (camera looking at the subject): yaw > 0 when the face turns towards image right, pitch >
0 when the chin lifts, roll > 0 when the face tilts clockwise in the image. A frontal face is (0, 0, 0).
"""

from __future__ import annotations

import cv2
import numpy as np

from deepfake.faces.align import CANONICAL_68

# Depth (towards the camera), in face widths, added on top of the curved base surface.
_NOSE_DEPTH = {27: 0.06, 28: 0.10, 29: 0.14, 30: 0.19, 31: 0.09, 32: 0.12, 33: 0.14, 34: 0.12, 35: 0.09}
_EYES_DEPTH = -0.03
_LIPS_DEPTH = 0.03


def generic_face_3d() -> np.ndarray:
    """(68, 3) model points: x right, y down, z away from the camera (OpenCV camera axes for a frontal face)."""
    xy = CANONICAL_68.copy()
    x = xy[:, 0]
    toward = -0.45 * (x / 0.5) ** 2  # temples and jaw corners sit behind the nose plane
    for i, dz in _NOSE_DEPTH.items():
        toward[i] += dz
    toward[36:48] += _EYES_DEPTH
    toward[48:68] += _LIPS_DEPTH
    return np.column_stack([xy, -toward]) * 100.0  # (68, 3); scale is arbitrary, solvePnP recovers distance


def camera_matrix(image_shape: tuple[int, ...]) -> np.ndarray:
    h, w = image_shape[:2]
    f = float(max(h, w))  # a ~53 degree field of view: typical of phones and webcams
    return np.array([[f, 0, w / 2.0], [0, f, h / 2.0], [0, 0, 1]], dtype=np.float64)


def estimate_pose(landmarks68: np.ndarray, image_shape: tuple[int, ...]) -> dict[str, float]:
    """dict(yaw, pitch, roll) in degrees."""
    model = generic_face_3d()
    image_pts = np.asarray(landmarks68, dtype=np.float64).reshape(68, 2)
    cam = camera_matrix(image_shape)
    dist = np.zeros(4)
    ok, rvec, tvec = cv2.solvePnP(model, image_pts, cam, dist, flags=cv2.SOLVEPNP_EPNP)
    if ok:
        ok, rvec, tvec = cv2.solvePnP(model, image_pts, cam, dist, rvec, tvec, True, cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return {"yaw": float("nan"), "pitch": float("nan"), "roll": float("nan")}
    rot, _ = cv2.Rodrigues(rvec)
    pitch, yaw, roll = _euler_xyz(rot)
    return {"yaw": -yaw, "pitch": pitch, "roll": roll}


def _euler_xyz(rot: np.ndarray) -> tuple[float, float, float]:
    """Angles (about x, y, z; degrees) with rot = Rz @ Ry @ Rx."""
    sy = -rot[2, 0]
    y = np.arcsin(np.clip(sy, -1.0, 1.0))
    if abs(sy) < 0.9999:
        x = np.arctan2(rot[2, 1], rot[2, 2])
        z = np.arctan2(rot[1, 0], rot[0, 0])
    else:  # gimbal lock: roll and pitch are not separable; put it all in pitch
        x = np.arctan2(-rot[1, 2], rot[1, 1])
        z = 0.0
    return float(np.degrees(x)), float(np.degrees(y)), float(np.degrees(z))
