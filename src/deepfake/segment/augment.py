"""The segmenter's augmentation, batched on the device: affine and flip, another face's surroundings,
random occluders, colour, blur and JPEG artefacts. The target loses every pixel an occluder covers, so
the network learns that a hand or a microphone over the face is not face.

As in train/augment.py, the random numbers are drawn on a CPU generator (a few thousand floats per
batch, the same on every device; its state is all a resume needs) and the pixel work runs wherever the
faces are.

Occluders (the training family; the benchmark uses other shapes and textures, never these):
    shapes    ellipses, rotated bars and star-shaped blobs (a circle with random harmonics), 1 px soft edge
    textures  a patch of another face of the batch (skin, hair, background, rescaled and rotated), smooth
              colour noise, or a flat colour; each tinted
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from deepfake.config import MaskAugmentConfig
from deepfake.segment.jpeg import jpeg_like

SHAPES = ("ellipse", "bar", "blob")
TEXTURES = ("patch", "noise", "flat")
HARMONICS = 4  # of a blob's outline
KEEP_BLUR = 0.15  # how far the kept surroundings may reach past the hull, fraction of the crop


@dataclass
class MaskAugmentParams:
    theta: torch.Tensor  # (B, 2, 3) output -> input affine (affine_grid's theta), flip included
    background: torch.Tensor  # (B,) 1 = paste another face's surroundings
    keep_level: torch.Tensor  # (B,) threshold on the blurred hull: lower keeps more surroundings
    rolls: tuple[int, ...]  # 1 + K batch offsets: which face lends its surroundings, then each texture
    occ_on: torch.Tensor  # (B, K) 1 = occluder k is drawn
    occ_shape: torch.Tensor  # (B, K) index into SHAPES
    occ_center: torch.Tensor  # (B, K, 2) normalised x, y
    occ_size: torch.Tensor  # (B, K, 2) half extents, normalised
    occ_angle: torch.Tensor  # (B, K) radians
    occ_harmonics: torch.Tensor  # (B, K, HARMONICS, 2) amplitude and phase
    tex_kind: torch.Tensor  # (B, K) index into TEXTURES
    tex_theta: torch.Tensor  # (B, K, 2, 3) how a patch texture is cut from its face
    tex_gain: torch.Tensor  # (B, K, 3) a patch's tint
    tex_color: torch.Tensor  # (B, K, 3) the colour of a noise or flat occluder
    noise_coarse: torch.Tensor  # (B, K, 1, 4, 4) grey: shading, not rainbows
    noise_fine: torch.Tensor  # (B, K, 1, 16, 16)
    color: torch.Tensor  # (B, 3) brightness, contrast, saturation factors
    blur_sigma: torch.Tensor  # (B,) px; 0 = no blur
    jpeg_quality: torch.Tensor  # (B,) 1..100; 0 = no JPEG
    blur_radius: int  # taps either side: from the config's largest sigma, so no device value is read

    def to(self, device: torch.device) -> "MaskAugmentParams":
        return MaskAugmentParams(**{f.name: _to(getattr(self, f.name), device) for f in fields(self)})


@dataclass
class MaskBatch:
    images: torch.Tensor  # (B, 3, R, R) float in [0, 1]: what the segmenter sees
    targets: torch.Tensor  # (B, 1, R, R) float in [0, 1]: visible face
    occluders: torch.Tensor  # (B, 1, R, R) float in [0, 1]: where occluders were drawn


def sample_params(cfg: MaskAugmentConfig, batch: int, generator: torch.Generator) -> MaskAugmentParams:
    """One batch's augmentation, drawn from a CPU generator. Always the same amount of draws, so the
    stream does not depend on the probabilities."""
    b, k = batch, cfg.max_occluders

    def u(*shape):  # uniform [0, 1)
        return torch.rand(*shape, generator=generator)

    # Affine and flip, as train/augment.py builds theta.
    a = u(b, 4) * 2 - 1  # (B, 4)
    angle = a[:, 0] * math.radians(cfg.rotation)
    scale = 1 + a[:, 1] * cfg.scale
    shift = a[:, 2:4] * 2 * cfg.shift
    flip = (u(b) < 0.5) & cfg.flip
    sx = torch.where(flip, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([cos * sx, -sin, shift[:, 0], sin * sx, cos, shift[:, 1]], 1).view(b, 2, 3)

    lo, hi = cfg.occluder_size
    extent = lo + (hi - lo) * u(b, k, 2)  # (B, K, 2) full extents, fraction of the crop
    aspect_bar = torch.where(u(b, k, 1) < 0.5, 0.25, 1.0)  # half the bars are thin (fingers, cables)
    size = extent * torch.cat([torch.ones(b, k, 1), aspect_bar], dim=2)  # (B, K, 2) of the crop
    count = 1 + (u(b) * k).long()  # 1..K occluders on a face that gets any
    on = (u(b) < cfg.occluders).float().view(b, 1) * (torch.arange(k).view(1, k) < count.view(b, 1)).float()
    # Texture cut-outs: any rotation, 0.5-2x scale, anywhere in the donor face.
    t_angle = u(b, k) * 2 * math.pi
    t_scale = 0.5 * 4 ** u(b, k)
    t_shift = u(b, k, 2) * 1.6 - 0.8
    tc, ts = torch.cos(t_angle) * t_scale, torch.sin(t_angle) * t_scale
    tex_theta = torch.stack([tc, -ts, t_shift[..., 0], ts, tc, t_shift[..., 1]], -1).view(b, k, 2, 3)
    harm = torch.stack([(u(b, k, HARMONICS) * 2 - 1) * 0.18, u(b, k, HARMONICS) * 2 * math.pi], dim=-1)

    c = (u(b, 3) * 2 - 1) * cfg.color + 1  # (B, 3)
    qlo, qhi = cfg.jpeg_quality
    blur_on, jpeg_on = u(b) < cfg.blur, u(b) < cfg.jpeg
    return MaskAugmentParams(
        theta=theta,
        background=(u(b) < cfg.background).float(),
        keep_level=0.02 + 0.33 * u(b),
        rolls=tuple(int(v) if b > 1 else 0 for v in 1 + (u(1 + k) * max(1, b - 1)).long()),  # never itself
        occ_on=on,
        occ_shape=(u(b, k) * len(SHAPES)).long(),
        occ_center=u(b, k, 2) * 1.2 - 0.6,  # the middle 60 % of the crop: where the face is
        occ_size=size,  # normalised half extent = fraction of the crop (the crop spans 2 units)
        occ_angle=u(b, k) * math.pi,
        occ_harmonics=harm,
        tex_kind=(u(b, k) * len(TEXTURES)).long(),
        tex_theta=tex_theta,
        tex_gain=0.7 + 0.6 * u(b, k, 3),
        tex_color=0.05 + 0.9 * u(b, k, 3),
        noise_coarse=u(b, k, 1, 4, 4) - 0.5,
        noise_fine=u(b, k, 1, 16, 16) - 0.5,
        color=c,
        blur_sigma=torch.where(blur_on, 0.3 + (cfg.blur_sigma - 0.3) * u(b), torch.zeros(b)).clamp_min(0),
        jpeg_quality=torch.where(jpeg_on, qlo + (qhi - qlo) * u(b), torch.zeros(b)),
        blur_radius=max(1, math.ceil(2 * cfg.blur_sigma)),
    )


@torch.no_grad()
def augment(images: torch.Tensor, targets: torch.Tensor, hulls: torch.Tensor, cfg: MaskAugmentConfig,
            generator: torch.Generator) -> MaskBatch:
    """Draw parameters and apply them. images (B, 3, R, R) uint8; targets and hulls (B, 1, R, R) uint8:
    the visible face to learn, and the whole-face hull that bounds the surroundings kept."""
    return apply(images, targets, hulls, sample_params(cfg, images.shape[0], generator).to(images.device))


@torch.no_grad()
def apply(images: torch.Tensor, targets: torch.Tensor, hulls: torch.Tensor, p: MaskAugmentParams) -> MaskBatch:
    """The pixel work, on the faces' device."""
    b, _, r, _ = images.shape
    grid = F.affine_grid(p.theta, [b, 1, r, r], align_corners=False)  # (B, R, R, 2)
    # The image is mirrored past the crop (no flat border to learn); the masks end there.
    img = F.grid_sample(images.float() / 255, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    m = torch.cat([targets.float(), hulls.float()], dim=1) / 255  # (B, 2, R, R)
    m = F.grid_sample(m, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    target, hull = m[:, :1], m[:, 1:]

    # Section: surroundings. Keep the hull plus a random margin; the rest comes from another face.
    keep = _keep_region(hull, p.keep_level)  # (B, 1, R, R)
    keep = 1 - p.background.view(b, 1, 1, 1) * (1 - keep)
    donor = img.roll(p.rolls[0], dims=0)
    img = img * keep + donor * (1 - keep)
    target = target * keep

    # Section: occluders, one layer at a time.
    alpha = occluder_alpha(p, r)  # (B, K, R, R)
    tex = occluder_textures(img, p)  # (B, K, 3, R, R)
    occ = torch.zeros_like(target)
    for k in range(alpha.shape[1]):
        a = alpha[:, k : k + 1]  # (B, 1, R, R)
        img = img * (1 - a) + tex[:, k] * a
        occ = 1 - (1 - occ) * (1 - a)
    target = target * (1 - occ)

    # Section: the camera: colour, blur, compression.
    img = _color(img, p.color)
    img = gaussian_blur(img, p.blur_sigma, p.blur_radius)
    jpeg = jpeg_like(img, p.jpeg_quality.clamp_min(1))
    img = torch.where((p.jpeg_quality > 0).view(b, 1, 1, 1), jpeg, img)
    return MaskBatch(images=img.clamp(0, 1), targets=target.clamp(0, 1), occluders=occ)


def _to(value, device):
    return value.to(device) if torch.is_tensor(value) else value


def _keep_region(hull: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """The hull grown by a random margin with a soft edge: a blurred hull above a per-face threshold.
    The margin varies, so the paste seam never marks where the face ends."""
    r = hull.shape[-1]
    # At a quarter of the resolution: the blur is wide and smooth, and 16x fewer pixels cost 16x less.
    small = F.avg_pool2d(hull, 4)  # (B, 1, R/4, R/4)
    k = max(3, int(KEEP_BLUR * r / 4) | 1)
    small = F.avg_pool2d(small, (1, k), stride=1, padding=(0, k // 2))  # separable box blur
    small = F.avg_pool2d(small, (k, 1), stride=1, padding=(k // 2, 0))
    blurred = F.interpolate(small, size=(r, r), mode="bilinear", align_corners=False)  # (B, 1, R, R)
    ramp = ((blurred - level.view(-1, 1, 1, 1)) / 0.15).clamp(0, 1)
    return torch.maximum(hull, ramp)


def occluder_alpha(p: MaskAugmentParams, r: int) -> torch.Tensor:
    """Coverage of each occluder, (B, K, R, R) in [0, 1], with a 1 px soft edge."""
    xs = (2 * torch.arange(r, device=p.theta.device, dtype=torch.float32) + 1) / r - 1  # pixel centres
    dx = xs.view(1, 1, 1, r) - p.occ_center[..., 0, None, None]  # (B, K, 1, R) -> broadcasts below
    dy = xs.view(1, 1, r, 1) - p.occ_center[..., 1, None, None]  # (B, K, R, 1)
    cos, sin = torch.cos(p.occ_angle)[..., None, None], torch.sin(p.occ_angle)[..., None, None]
    uu, vv = cos * dx + sin * dy, cos * dy - sin * dx  # (B, K, R, R) in the occluder's frame
    a, bb = p.occ_size[..., 0, None, None], p.occ_size[..., 1, None, None]  # half extents
    ellipse = (torch.sqrt((uu / a) ** 2 + (vv / bb) ** 2) - 1) * torch.minimum(a, bb)
    bar = torch.maximum(uu.abs() - a, vv.abs() - bb)
    rad = torch.sqrt(uu**2 + vv**2 + 1e-12)
    blob = rad - a * (1 + _wobble(uu / rad, vv / rad, p.occ_harmonics))
    shape = p.occ_shape[..., None, None]
    dist = torch.where(shape == 0, ellipse, torch.where(shape == 1, bar, blob))  # normalised units
    alpha = (0.5 - dist * (r / 2)).clamp(0, 1)  # signed distance in px -> coverage
    return alpha * p.occ_on[..., None, None]


def _wobble(c1: torch.Tensor, s1: torch.Tensor, harmonics: torch.Tensor) -> torch.Tensor:
    """sum_n amp_n cos(n theta + phase_n) for n = 2.. over the angle theta whose cosine and sine are c1,
    s1 (B, K, R, R). cos(n theta) and sin(n theta) by the angle-addition recursion: multiplies instead
    of an atan2 and a cosine per harmonic and pixel."""
    amp, phase = harmonics[..., 0, None, None], harmonics[..., 1, None, None]  # (B, K, H, 1, 1)
    cn, sn = c1 * c1 - s1 * s1, 2 * c1 * s1  # n = 2: the lowest order, a star rather than a shift
    out = torch.zeros_like(c1)
    for n in range(harmonics.shape[2]):
        out = out + amp[:, :, n] * (cn * torch.cos(phase[:, :, n]) - sn * torch.sin(phase[:, :, n]))
        cn, sn = cn * c1 - sn * s1, sn * c1 + cn * s1
    return out


def occluder_textures(img: torch.Tensor, p: MaskAugmentParams) -> torch.Tensor:
    """What each occluder looks like, (B, K, 3, R, R): a patch of another face, noise or a flat colour."""
    b, _, r, _ = img.shape
    k = p.occ_on.shape[1]
    donors = torch.stack([img.roll(p.rolls[1 + i], dims=0) for i in range(k)], dim=1)  # (B, K, 3, R, R)
    grid = F.affine_grid(p.tex_theta.reshape(b * k, 2, 3), [b * k, 3, r, r], align_corners=False)
    patch = F.grid_sample(donors.reshape(b * k, 3, r, r), grid, mode="bilinear", padding_mode="reflection",
                          align_corners=False).view(b, k, 3, r, r)
    coarse = F.interpolate(p.noise_coarse.reshape(b * k, 1, 4, 4), size=(r, r), mode="bicubic", align_corners=False)
    fine = F.interpolate(p.noise_fine.reshape(b * k, 1, 16, 16), size=(r, r), mode="bilinear", align_corners=False)
    shading = (0.6 * coarse + 0.25 * fine).view(b, k, 1, r, r)
    color = p.tex_color[..., None, None]  # (B, K, 3, 1, 1)
    kind = p.tex_kind[..., None, None, None]
    tex = torch.where(kind == 0, patch * p.tex_gain[..., None, None],
                      torch.where(kind == 1, color + shading, color.expand_as(patch)))
    return tex.clamp(0, 1)


def _color(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    b = x.shape[0]
    bright, contrast, sat = (c[:, i].view(b, 1, 1, 1) for i in range(3))
    x = x * bright
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    gray = x.mean(dim=1, keepdim=True)
    return (gray + (x - gray) * sat).clamp(0, 1)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Each face blurred with its own sigma (px; 0 leaves it as it is) over `radius` taps either side:
    one grouped, separable conv."""
    b, c, h, w = x.shape
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)  # (T,)
    s = sigma.clamp_min(1e-3).view(b, 1)
    kern = torch.exp(-(taps.view(1, -1) ** 2) / (2 * s**2))
    kern = (kern / kern.sum(1, keepdim=True)).repeat_interleave(c, dim=0)  # (B*C, T)
    y = F.pad(x.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, kern.view(b * c, 1, 1, -1), groups=b * c)  # horizontal
    y = F.conv2d(y, kern.view(b * c, 1, -1, 1), groups=b * c)  # vertical
    return y.view(b, c, h, w)
