"""The checks `deepfake swap` runs before any slow work: option values, input kind, output container and
an output folder that can be written. Each fails with one line naming the path or option."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from deepfake.config import SwapConfig
from deepfake.errors import BadInputError, DeepfakeError, OutputError
from deepfake.faces.hull import MASK_REGIONS
from deepfake.provenance.label import image_format
from deepfake.io.video_writer import container_format
from deepfake.swap.blend import BLEND_MODES
from deepfake.swap.color import COLOR_MODES
from deepfake.swap.blend_mask import MASK_MODES
from deepfake.swap.model import DIRECTIONS

VIDEO_INPUTS = {".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm"}
IMAGE_INPUTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def validate_config(cfg: SwapConfig) -> None:
    for name, value, allowed in (
        ("direction", cfg.direction, DIRECTIONS),
        ("mask", cfg.mask, MASK_MODES),
        ("color", cfg.color, COLOR_MODES),
        ("blend", cfg.blend, BLEND_MODES),
    ):
        if value not in allowed:
            raise DeepfakeError(f"--{name} {value}: choose from {', '.join(allowed)}")
    if "segmenter" in cfg.mask.split("*") and not cfg.mask_model:
        raise DeepfakeError(f"--mask {cfg.mask} needs --mask-model MASK_MODEL (a folder made by `deepfake mask train`)")
    if cfg.mask_region and cfg.mask_region not in MASK_REGIONS:
        raise DeepfakeError(f"--mask-region {cfg.mask_region}: choose from {', '.join(MASK_REGIONS)}")
    if cfg.amp not in ("auto", "bf16", "off"):
        raise DeepfakeError(f"--amp {cfg.amp}: choose from auto, bf16, off")
    if not 0 <= cfg.crf <= 51:
        raise DeepfakeError(f"--crf {cfg.crf}: must be 0..51")


def input_kind(path: Path) -> str:
    """image | folder | video; BadInputError for a missing path or an unsupported container."""
    if not path.exists():
        raise BadInputError(path, "not found")
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in VIDEO_INPUTS:
        return "video"
    if suffix in IMAGE_INPUTS:
        return "image"
    raise BadInputError(
        path, f"unsupported container '{suffix or '(none)'}' (videos: {', '.join(sorted(VIDEO_INPUTS))}; "
        f"images: {', '.join(sorted(IMAGE_INPUTS))})"
    )


def check_output(kind: str, output: Path, cfg: SwapConfig, input_path: Path | None = None) -> None:
    """The output suits the input kind: a folder for a folder, a known container or image format else;
    and it is not the input (the rename at the end would replace the source with its swap)."""
    suffix = output.suffix.lower()
    if input_path is not None and _same_path(output, input_path):
        raise OutputError(f"{output}: is the input itself (write the swap under another name)")
    if kind == "folder":
        if output.exists() and not output.is_dir():
            raise OutputError(f"{output}: a folder of images needs an output folder, not a file")
        return
    if output.is_dir():
        raise OutputError(f"{output}: is a folder (give the {'image' if kind == 'image' else 'video'} file to write)")
    if kind == "video" and cfg.preview:
        if suffix != ".png":
            container_format(output)
        return
    if kind == "video":
        container_format(output)
    else:
        image_format(output)


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_mask_fits(cfg: SwapConfig, face_size: int, coverage: float, region: str) -> None:
    """--erode and --blur shrink the mask inside the aligned face; past about its half-width nothing is
    left and every face would be "swapped" into itself. Tried on the canonical frontal face's hull."""
    from deepfake.faces.align import canonical_points
    from deepfake.faces.hull import hull_mask
    from deepfake.swap.blend_mask import build_mask

    hull = hull_mask(canonical_points(face_size, coverage), face_size, region or "whole")
    if build_mask("hull", None, hull, erode=cfg.erode, blur=cfg.blur).max() < 0.5:
        raise DeepfakeError(f"--erode {cfg.erode} --blur {cfg.blur}: leave no mask on this model's {face_size} px "
                            "aligned face, so nothing would be swapped (use smaller values)")


def check_writable(folder: Path) -> None:
    """Fail now, not after minutes of work, when the output folder cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".deepfake-write-test.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise OutputError(f"{folder}: output folder is not writable ({e.strerror or e})") from None


@contextlib.contextmanager
def new_folders_removed_on_failure(*folders: Path) -> Iterator[None]:
    """Run the body; when it fails, remove the folders on the way to `folders` that it made (deepest
    first, each only when empty): a failed run leaves nothing, not even the folders made for its output."""
    made = sorted({d for f in folders for d in missing_parents(f)}, key=lambda d: len(d.parts), reverse=True)
    try:
        yield
    except BaseException:
        for d in made:
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


def missing_parents(folder: Path) -> list[Path]:
    """The folders that do not exist yet on the way to `folder`, deepest first."""
    out = []
    for d in [folder, *folder.parents]:
        if d.exists():
            break
        out.append(d)
    return out
