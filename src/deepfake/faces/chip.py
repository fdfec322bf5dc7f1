"""dlib's face chips in torch: get_face_chip_details(shape, 150, 0.25) + extract_image_chip, batched,
on the images' device and differentiable with respect to the images.

Geometry (dlib image_transforms/interpolation.h):
  - 33 of the 68 landmarks (nose, eyes, outer and upper-inner lips; no jaw, brows or lower lip) are fit
    by least squares with a similarity to dlib's mean face, scaled into the padded chip. For a 5-point
    shape all 5 points are used with dlib's 5-point reference.
  - From that fit dlib keeps the angle and scale and builds a rectangle of size*scale px centred on
    where the chip centre (size/2, size/2) lands; chip pixel (0, 0) maps to the rotated rectangle's
    top-left corner and (size-1, 0) to its top-right one. (So the sampling step is
    (size*scale - 1)/(size - 1), not quite the fitted scale.)
  - Sampling is bilinear; a chip pixel whose 2x2 neighbourhood leaves the image is black.
  - When the face is more than about twice the chip size, dlib first halves the image (5x5 binomial
    filter, pyramid_down<2>) as often as needed and samples the smaller level, mapping coordinates
    with the pyramid's point_down, p/2 - (1.25, 0.75). The pyramid is built on a crop around the face
    whose position sets the decimation phase, so we crop the same box.

dlib works on uint8 and truncates twice: each pyramid level and the final pixel. `quantize=True` does
the same (straight-through: the values are floored, the gradient is the identity), which reproduces
dlib's chips up to float rounding (measured on the shared media: 99.8 % of the values equal, the rest
1 grey level off). Without it the chips are the
exact real-valued version, 0-1 grey levels above dlib's (mean about 0.5).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CHIP_SIZE = 150
CHIP_PADDING = 0.25

# dlib's average positions of the 68-point shape's points 17-67 in the unpadded unit square.
_MEAN_FACE_X = (
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
    0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
    0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
    0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
    0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
    0.553364, 0.490127, 0.42689,
)
_MEAN_FACE_Y = (
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
    0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
    0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
    0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
    0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
    0.784792, 0.824182, 0.831803, 0.824182,
)
# dlib skips the brows (17-26) and the lower lip (55-59, 65-67): they move with expression.
FIT_68 = tuple(i for i in range(17, 68) if not (i <= 26 or 55 <= i <= 59 or 65 <= i))
_REF_5 = ((0.8595674595992, 0.2134981538014), (0.6460604764104, 0.2289674387677),
          (0.1205750620789, 0.2137274526848), (0.3340850613712, 0.2290642403242),
          (0.4901123135679, 0.6277975316475))
_POINT_DOWN = (1.25, 0.75)  # pyramid_down<2>::point_down(p) = p/2 - (1.25, 0.75)
_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)  # pyramid_down<2>'s separable filter; 16*16 = 256 in all


def _fit_points(landmarks: torch.Tensor, size: int, padding: float):
    """The landmarks dlib fits and where they go in the chip: (B, P, 2) and (P, 2), float64."""
    n = landmarks.shape[1]
    if n == 68:
        ref = [(_MEAN_FACE_X[i - 17], _MEAN_FACE_Y[i - 17]) for i in FIT_68]
        src = landmarks[:, list(FIT_68)]
    elif n == 5:
        ref, src = _REF_5, landmarks
    else:
        raise ValueError(f"landmarks must be (B, 68, 2) or (B, 5, 2), got {tuple(landmarks.shape)}")
    ref = torch.tensor(ref, dtype=torch.float64, device=landmarks.device)
    return src.to(torch.float64), (padding + ref) / (2 * padding + 1) * size


def _similarity(src: torch.Tensor, dst: torch.Tensor):
    """Least-squares similarity dst ~ M @ src + t with M = [[a, -b], [b, a]]; the closed form of the
    Umeyama fit dlib's find_similarity_transform does, without reflections. (B, 2, 2), (B, 2)."""
    ms, md = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    s, d = src - ms, dst - md  # (B, P, 2)
    var = (s * s).sum((1, 2))  # (B,)
    a = (s * d).sum((1, 2)) / var
    b = (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(1) / var
    m = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)  # (B, 2, 2)
    return m, md[:, 0] - (m @ ms.transpose(1, 2))[..., 0]


def chip_frames(landmarks: torch.Tensor, size: int = CHIP_SIZE, padding: float = CHIP_PADDING):
    """dlib's chip_details for each face: the rectangle's centre (B, 2), its rotation matrix
    (B, 2, 2) and its corner-to-corner extent (right - left, bottom - top) (B, 2), float64, pixels."""
    src, ref = _fit_points(torch.as_tensor(landmarks), size, padding)
    m, t = _similarity(ref.expand(src.shape[0], -1, -1), src)  # chip -> image
    scale = m[:, :, 0].norm(dim=1)  # (B,)
    rot = m / scale[:, None, None]  # (B, 2, 2): [[cos, -sin], [sin, cos]]
    center = (m @ torch.full((2, 1), size / 2.0, dtype=m.dtype, device=m.device))[..., 0] + t
    extent = (size * scale - 1)[:, None].expand(-1, 2)  # centered_drect(p, w, h) spans w - 1
    return center, rot, extent


def chip_rects(landmarks, size: int = CHIP_SIZE, padding: float = CHIP_PADDING):
    """dlib's chip_details.rect as (B, 4) [left, top, right, bottom] and chip_details.angle (B,)."""
    center, rot, extent = chip_frames(landmarks, size, padding)
    rect = torch.cat([center - extent / 2, center + extent / 2], 1)  # (B, 4)
    return rect, torch.atan2(rot[:, 1, 0], rot[:, 0, 0])


def chip_to_image(landmarks, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> torch.Tensor:
    """(B, 2, 3) affine maps from chip pixels (x, y, 1) to source-image pixels, float64."""
    center, rot, extent = chip_frames(landmarks, size, padding)
    lin = rot * (extent / (size - 1))[:, None, :]  # (B, 2, 2): columns scaled by the sampling step
    half = torch.full((2, 1), (size - 1) / 2.0, dtype=lin.dtype, device=lin.device)
    return torch.cat([lin, center[..., None] - lin @ half], 2)  # (B, 2, 3)


def image_to_chip_points(points, landmarks, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> torch.Tensor:
    """(B, N, 2) source-image points -> where they are in the chips, (B, N, 2) float64 pixels."""
    a = chip_to_image(landmarks, size, padding)
    lin_inv = torch.linalg.inv(a[:, :, :2])  # (B, 2, 2)
    p = torch.as_tensor(points, dtype=torch.float64, device=a.device) - a[:, None, :, 2]
    return p @ lin_inv.transpose(1, 2)  # (B, N, 2)


def _ste(x: torch.Tensor, op) -> torch.Tensor:
    """op(x) forward, the identity's gradient backward (for dlib's integer truncations)."""
    return x + (op(x) - x).detach()


def _pyramid_down(x: torch.Tensor, quantize: bool) -> torch.Tensor:
    """dlib's pyramid_down<2>: output (r, c) is the 5x5 binomial of input rows 2r..2r+4, columns
    2c..2c+4, over 256. Written as strided slices, so it is exact in float32 (no TF32 convolution)."""
    h, w = (x.shape[2] - 3) // 2, (x.shape[3] - 3) // 2
    rows = sum(k * x[..., :, j : j + 2 * w - 1 : 2] for j, k in enumerate(_BINOMIAL))  # (N, 3, H, w)
    out = sum(k * rows[..., j : j + 2 * h - 1 : 2, :] for j, k in enumerate(_BINOMIAL)) / 256.0  # (N, 3, h, w)
    return _ste(out, torch.floor) if quantize else out


def _sample(src: torch.Tensor, center, rot, extent, valid_hw, size: int) -> torch.Tensor:
    """Bilinear chips from `src` (N, 3, H, W) for rectangles given in src's pixels; a chip pixel whose
    2x2 neighbourhood is not inside the first valid_hw (N, 2) rows/columns of its image is 0."""
    n, _, hgt, wid = src.shape
    to_norm = torch.tensor([2.0 / (wid - 1), 2.0 / (hgt - 1)], dtype=torch.float64, device=src.device)
    # affine_grid's output coordinates run -1..1 over chip pixel centres (align_corners=True), i.e.
    # twice (u/(size-1) - 1/2): the rotated rectangle's half extent per unit.
    theta = torch.cat([rot * (extent / 2)[:, None, :], center[..., None]], 2) * to_norm[None, :, None]  # (N, 2, 3)
    theta[:, :, 2] -= 1.0
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=True)  # (N, size, size, 2) float64
    with torch.no_grad():
        px = (grid + 1) / to_norm  # (N, size, size, 2) source pixels
        lim = (valid_hw.flip(1) - 1).to(px)[:, None, None, :]  # (N, 1, 1, 2): nc - 1, nr - 1
        inside = ((px >= 0) & (px < lim)).all(-1)[:, None]  # (N, 1, size, size)
    chips = F.grid_sample(src, grid.to(src.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)
    return chips * inside  # (N, 3, size, size)


def _pyramid_depth(extent: torch.Tensor, size: int) -> list[int]:
    """How many times dlib halves the image: while the halved rectangle still has more pixels than
    the chip. (rect_down keeps the corner extent e -> e/2; the pixel count is (e + 1)^2.)"""
    depth = []
    for e in extent.detach().cpu().tolist():
        d = 0
        while (e[0] / 2 ** (d + 1) + 1) * (e[1] / 2 ** (d + 1) + 1) > size * size:
            d += 1
        depth.append(d)
    return depth


def _crop_box(center, rot, extent, grow: float, hgt: int, wid: int) -> tuple[int, int, int, int]:
    """dlib's crop for the pyramid: the rotated rectangle's bounding box grown by `grow` px, clipped
    to the image and rounded (floor(x + 0.5)): (left, top, right, bottom), inclusive."""
    corners = torch.tensor([[-1, -1], [1, -1], [-1, 1], [1, 1]], dtype=torch.float64) * (extent / 2)
    pts = center + corners @ rot.T  # (4, 2)
    lo, hi = pts.min(0).values - grow, pts.max(0).values + grow
    box = (max(lo[0].item(), 0.0), max(lo[1].item(), 0.0), min(hi[0].item(), wid - 1.0), min(hi[1].item(), hgt - 1.0))
    l, t, r, b = (math.floor(v + 0.5) for v in box)
    # A face far outside the image leaves an empty box: keep one pixel, which no chip pixel samples.
    l, t = min(l, wid - 1), min(t, hgt - 1)
    return l, t, max(r, l), max(b, t)


def face_chips(images: torch.Tensor, landmarks, size: int = CHIP_SIZE, padding: float = CHIP_PADDING, quantize: bool = False) -> torch.Tensor:
    """(B, 3, H, W) RGB images in 0-1 and their (B, 68, 2) (or (B, 5, 2)) landmarks in pixels ->
    (B, 3, size, size) chips in 0-1, as dlib.get_face_chip(image, shape, size, padding) cuts them."""
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(f"images must be floating point (B, 3, H, W) in 0-1, got {images.dtype} {tuple(images.shape)}")
    landmarks = torch.as_tensor(landmarks).to(images.device)
    bsz, _, hgt, wid = images.shape
    center, rot, extent = (t.detach() for t in chip_frames(landmarks, size, padding))
    # dlib truncates on its 0-255 scale; without quantize everything is linear and stays in 0-1.
    x = _ste(images * 255.0, torch.round) if quantize else images
    out = x.new_zeros(bsz, 3, size, size)
    depth = _pyramid_depth(extent, size)
    host = [t.cpu() for t in (center, rot, extent)]  # the crop boxes are decided on the host

    for d in sorted(set(depth)):
        idx = [i for i in range(bsz) if depth[i] == d]
        sel = torch.tensor(idx, device=images.device)
        if d == 0:  # straight from the image (indexing would copy whole frames, so only when needed)
            valid = torch.tensor([[hgt, wid]] * len(idx), device=images.device)
            src = x if len(idx) == bsz else x[sel]
            out[sel] = _sample(src, center[sel], rot[sel], extent[sel], valid, size)
            continue
        # The crop around the face dlib builds its pyramid on; it grows by 2 px, then 2g + 2 per level.
        grow = 2.0
        for _ in range(d):
            grow = 2 * grow + 2
        boxes = [_crop_box(host[0][i], host[1][i], host[2][i], grow, hgt, wid) for i in idx]
        floor = 4 * 2**d + 3  # so that every level of a padded batch has pixels, even for tiny crops
        ch = max(floor, *(b[3] - b[1] + 1 for b in boxes))
        cw = max(floor, *(b[2] - b[0] + 1 for b in boxes))
        crops = torch.stack([
            F.pad(x[i, :, b[1] : b[3] + 1, b[0] : b[2] + 1], (0, cw - (b[2] - b[0] + 1), 0, ch - (b[3] - b[1] + 1)))
            for i, b in zip(idx, boxes)
        ])  # (n, 3, ch, cw): zero beyond each crop, which the valid sizes below keep out of the chips
        valid = torch.tensor([[b[3] - b[1] + 1, b[2] - b[0] + 1] for b in boxes], device=images.device)
        c = center[sel] - torch.tensor([[b[0], b[1]] for b in boxes], dtype=torch.float64, device=images.device)
        e = extent[sel]
        for _ in range(d):
            crops = _pyramid_down(crops, quantize)
            valid = (valid - 3) // 2
            c = c / 2 - torch.tensor(_POINT_DOWN, dtype=torch.float64, device=images.device)
            e = e / 2
        out[sel] = _sample(crops, c, rot[sel], e, valid, size)

    if not quantize:
        return out  # (B, 3, size, size) in 0-1
    # assign_pixel(uint8, double) truncates. Flat patches interpolate to whole numbers, which float
    # rounding puts just below or above; the margin takes the exact value's side.
    out = _ste(out.clamp(0, 255), lambda v: torch.floor(v + 1e-3))
    return out / 255.0  # (B, 3, size, size)
