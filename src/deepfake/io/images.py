"""Reading user images into RGB uint8, whatever they are: EXIF-rotated, grayscale, RGBA, 16-bit, CMYK,
palette, or too large to hold at full resolution. Anything unusable raises BadInputError with a reason."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from deepfake.errors import BadInputError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}
MAX_PIXELS = 64_000_000  # above this, decode at a reduced size (a 12000 px square is 144 MP, 432 MB as RGB)
REFUSE_PIXELS = 1_000_000_000  # a header claiming more is treated as corrupt (decompression bomb)


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 (H, W, 3), upright according to EXIF. Very large images come back reduced (see
    `read_image_scaled` when the scale matters)."""
    return read_image_scaled(path)[0]


def read_image_scaled(path: str | Path, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, float]:
    """(RGB uint8 (H, W, 3), scale): scale is returned px / original px (1.0 unless the image had more
    than max_pixels, in which case it is decoded smaller so memory stays bounded)."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(path, "file not found")
    if path.is_dir():
        raise BadInputError(path, "is a folder, not an image")
    try:
        if path.stat().st_size == 0:
            raise BadInputError(path, "empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return _decode(path, im, max_pixels)
    except BadInputError:
        raise
    except UnidentifiedImageError:
        raise BadInputError(path, "not an image (unrecognised format)") from None
    except Image.DecompressionBombError:
        raise BadInputError(path, "image dimensions are implausibly large (possible decompression bomb)") from None
    except PermissionError:
        raise BadInputError(path, "permission denied") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise BadInputError(path, f"corrupt or truncated image ({_short(e)})") from None
    except MemoryError:
        raise BadInputError(path, "image too large to decode in memory") from None


def _decode(path: Path, im: Image.Image, max_pixels: int) -> tuple[np.ndarray, float]:
    w, h = im.size
    if w * h > REFUSE_PIXELS:
        raise BadInputError(path, f"image is {w}x{h}; refusing more than {REFUSE_PIXELS // 1_000_000} MP")
    if w * h > max_pixels:
        # JPEG can decode straight to 1/2, 1/4, 1/8 size (the full image never exists in memory);
        # other formats are decoded and then reduced.
        if im.format == "JPEG":
            k = next((k for k in (2, 4, 8) if (w / k) * (h / k) <= max_pixels), 8)
            im.draft("RGB", (-(-w // k), -(-h // k)))  # draft picks the largest reduction >= this size
    im.load()
    im = ImageOps.exif_transpose(im)
    ow, oh = (h, w) if _exif_swaps_axes(im, w, h) else (w, h)
    im = _to_rgb(path, im)
    if im.width * im.height > max_pixels:
        target = np.sqrt(max_pixels / (im.width * im.height))
        im = im.resize((max(1, int(im.width * target)), max(1, int(im.height * target))), Image.Resampling.BOX)
    scale = im.width / ow
    rgb = np.asarray(im, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise BadInputError(path, f"unexpected pixel layout {rgb.shape}")
    return np.ascontiguousarray(rgb), scale


def _exif_swaps_axes(im: Image.Image, w: int, h: int) -> bool:
    # exif_transpose has already run: compare orientations to know whether width and height swapped.
    return (im.width > im.height) != (w > h) and w != h


def _to_rgb(path: Path, im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit (or 32-bit int) grayscale: scale the actual range to 8 bits, not a blind shift, so
        # 12-bit sensor data stored in 16 bits is not nearly black.
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if a.max() > 255 else 255.0
        a = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if mode == "F":
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        a = (a - lo) / (hi - lo if hi > lo else 1.0) * 255.0
        return Image.fromarray(np.nan_to_num(a).astype(np.uint8), "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        # Composite on mid-grey: transparent areas become neutral instead of black or garbage.
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    try:
        return im.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV, RGBX ...
    except ValueError as e:
        raise BadInputError(path, f"unsupported image mode {mode} ({_short(e)})") from None


def _short(e: BaseException) -> str:
    return str(e).splitlines()[0][:160] if str(e) else type(e).__name__
