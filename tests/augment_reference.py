"""An independent NumPy (float64) reference for `deepfake.train.augment.apply`.

Written from the definitions, without torch: nothing here calls affine_grid, grid_sample or
interpolate, so a test comparing `apply` (on CPU, or CUDA where there is one) with this module checks
the torch code against the maths rather than against itself. It takes the parameters `sample_params`
drew (theta, warp offsets, colour) as NumPy arrays.

Conventions (torch's affine_grid / grid_sample with align_corners=False):
- Images are (B, C, R, R); pixel (i, j) is row i, column j. Its centre has the normalised coordinates
  x = (2j + 1) / R - 1, y = (2i + 1) / R - 1, so [-1, 1] spans the outer edges of the image.
- theta (B, 2, 3) maps an output pixel's (x, y, 1) to the normalised source point it reads.
- Bilinear sampling with border padding: the source point in pixels, ((s + 1) R - 1) / 2, is clamped
  to [0, R - 1] first, so whatever lies outside the image repeats the edge pixels.
- The warp: coarse offsets (B, 2, g, g) (channel 0 = x, 1 = y, normalised units) are upsampled to
  (R, R) by separable cubic convolution (Keys' kernel, a = -0.75) with corners aligned: fine index d
  reads coarse position d (g - 1) / (R - 1), and taps beyond the coarse grid repeat its edge value.
  The dense offsets move the source points of the input image only; the target is not warped.
- Colour, per sample: brightness multiplies; contrast scales about the image mean (over channels and
  pixels); saturation scales about each pixel's grey (channel mean); hue turns each RGB vector by the
  angle about the grey axis (1, 1, 1)/sqrt(3), right-handed; then everything is clamped to [0, 1].
  Inputs and target get the same colour; the mask gets none.
- Landmarks (B, 68, 2) are pixel (x, y); a source point lands at theta^-1 of it, in normalised units.
"""

from __future__ import annotations

import numpy as np

KEYS_A = -0.75  # the cubic convolution parameter torch's bicubic uses (OpenCV's too)


def pixel_centres(size: int) -> np.ndarray:
    return (2 * np.arange(size, dtype=np.float64) + 1) / size - 1  # (R,) normalised


def affine_source(theta: np.ndarray, size: int) -> np.ndarray:
    """Normalised source point of every output pixel: (B, R, R, 2) as (x, y)."""
    c = pixel_centres(size)
    ys, xs = np.meshgrid(c, c, indexing="ij")  # (R, R) each: row i has y_i, column j has x_j
    homog = np.stack([xs, ys, np.ones_like(xs)], axis=-1)  # (R, R, 3)
    return np.einsum("bkn,ijn->bijk", theta, homog)  # (B, R, R, 2)


def sample_bilinear_border(images: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Read images (B, C, R, R) at normalised source points (B, R, R, 2), border padding."""
    b, c, size, _ = images.shape
    px = np.clip(((source + 1) * size - 1) / 2, 0, size - 1)  # (B, R, R, 2) pixels, clamped
    x0 = np.floor(px[..., 0]).astype(np.int64)
    y0 = np.floor(px[..., 1]).astype(np.int64)
    wx, wy = px[..., 0] - x0, px[..., 1] - y0  # (B, R, R) weights of the far neighbours
    x1, y1 = np.minimum(x0 + 1, size - 1), np.minimum(y0 + 1, size - 1)  # at the edge its weight is 0
    flat = images.reshape(b, c, size * size)

    def at(yy, xx):
        idx = (yy * size + xx).reshape(b, 1, size * size)
        return np.take_along_axis(flat, np.broadcast_to(idx, (b, c, size * size)), axis=2).reshape(b, c, size, size)

    wx, wy = wx[:, None], wy[:, None]  # (B, 1, R, R)
    return (
        at(y0, x0) * (1 - wx) * (1 - wy)
        + at(y0, x1) * wx * (1 - wy)
        + at(y1, x0) * (1 - wx) * wy
        + at(y1, x1) * wx * wy
    )


def keys_cubic(d: np.ndarray, a: float = KEYS_A) -> np.ndarray:
    """Keys' cubic convolution kernel W(d)."""
    d = np.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((d - 5) * d + 8) * d * a - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) linear map of 1-D corner-aligned cubic upsampling, edge taps clamped."""
    m = np.zeros((n_out, n_in))
    scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    for d in range(n_out):
        s = d * scale
        base = int(np.floor(s))
        for k in range(base - 1, base + 3):
            m[d, min(max(k, 0), n_in - 1)] += keys_cubic(s - k)
    return m


def upsample_warp(offsets: np.ndarray, size: int) -> np.ndarray:
    """Coarse offsets (B, 2, g, g) -> dense (B, 2, R, R): the separable bicubic, rows then columns."""
    g = offsets.shape[-1]
    m = bicubic_matrix(g, size)  # (R, g)
    return np.einsum("ip,bcpq,jq->bcij", m, offsets, m)


def hue_rotation(angle: float) -> np.ndarray:
    """3x3 rotation of RGB by `angle` about (1, 1, 1)/sqrt(3) (Rodrigues' formula)."""
    k = np.full(3, 1 / np.sqrt(3))
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])  # kx @ v = k x v
    return np.cos(angle) * np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * np.outer(k, k)


def color_jitter(x: np.ndarray, color: np.ndarray) -> np.ndarray:
    """x (B, 3, R, R) in [0, 1]; color (B, 4): brightness, contrast, saturation factors, hue radians."""
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        bright, contrast, sat, hue = color[i]
        y = x[i] * bright
        mean = y.mean()
        y = (y - mean) * contrast + mean
        grey = y.mean(axis=0, keepdims=True)  # (1, R, R)
        y = grey + (y - grey) * sat
        y = np.einsum("kc,cij->kij", hue_rotation(hue), y)
        out[i] = np.clip(y, 0, 1)
    return out


def warp_landmarks(landmarks: np.ndarray, theta: np.ndarray, size: int) -> np.ndarray:
    """Source landmarks (B, 68, 2) px -> where they land in the output (B, 68, 2) px."""
    out = np.empty_like(landmarks)
    for i in range(theta.shape[0]):
        inv = np.linalg.inv(np.vstack([theta[i], [0.0, 0.0, 1.0]]))  # input -> output, normalised
        p = (2 * landmarks[i] + 1) / size - 1  # (68, 2)
        q = np.c_[p, np.ones(len(p))] @ inv.T  # (68, 3)
        out[i] = ((q[:, :2] + 1) * size - 1) / 2
    return out


def augment_reference(
    images: np.ndarray,
    masks: np.ndarray,
    landmarks: np.ndarray,
    theta: np.ndarray,
    warp: np.ndarray | None,
    color: np.ndarray,
) -> dict[str, np.ndarray]:
    """What `apply` should return, in float64. images (B,3,R,R) u8, masks (B,1,R,R) u8, landmarks
    (B,68,2) px, theta (B,2,3), warp (B,2,g,g) or None, color (B,4). Keys: inputs, target,
    target_mask, landmarks."""
    size = images.shape[-1]
    x = images.astype(np.float64) / 255
    m = masks.astype(np.float64) / 255
    theta = theta.astype(np.float64)
    source = affine_source(theta, size)  # (B, R, R, 2)
    target = sample_bilinear_border(x, source)
    target_mask = sample_bilinear_border(m, source)
    if warp is None:
        inputs = target
    else:
        dense = upsample_warp(warp.astype(np.float64), size)  # (B, 2, R, R)
        inputs = sample_bilinear_border(x, source + dense.transpose(0, 2, 3, 1))
    color = color.astype(np.float64)
    return {
        "inputs": color_jitter(inputs, color),
        "target": color_jitter(target, color),
        "target_mask": target_mask,
        "landmarks": warp_landmarks(landmarks.astype(np.float64), theta, size),
    }
