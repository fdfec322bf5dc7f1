"""Swap's config: how faces are picked, masked, colour-matched, blended and encoded. Saved beside every
output (OUTPUT.swap.json)."""

from __future__ import annotations

from dataclasses import dataclass

from deepfake.config.choices import (AMP_MODES, BLEND_MODES, CHECKPOINT_HELP, COLOR_MODES, DEVICE_HELP, DIRECTIONS,
                                     MASK_MODES, MASK_REGIONS)
from deepfake.config.options import CHECKPOINT_PATTERN, DEVICE_PATTERN, option


@dataclass
class SwapConfig:
    direction: str = option("a2b", "a2b puts A's face onto B (the input shows B); b2a the reverse", choices=DIRECTIONS)
    mask: str = option("learned*hull", "the blend mask: the model's learned mask, the landmark hull, a trained "
                       "segmenter (--mask-model), or their intersection joined by *", choices=MASK_MODES)
    mask_region: str = option("", "the hull: full (stops at the brows) or whole (with the forehead); "
                              "default: the model's (its config.json mask_region)", choices=MASK_REGIONS)
    # A folder made by `deepfake mask train` (the dashboard names one in its models/).
    mask_model: str = option("", "folder made by `deepfake mask train`: the segmenter of --mask segmenter "
                             "(and segmenter*hull)", metavar="MASK_MODEL", ui=False)
    erode: int = option(0, "shrink the mask by N px of the aligned face (negative grows)", lo=-256, hi=256)
    blur: int = option(0, "feather the mask edge over N px (0 = automatic, proportional to the face size; "
                       "-1 = none)", lo=-1, hi=512)
    color: str = option("rct", "colour matching", choices=COLOR_MODES)
    color_strength: float = option(1.0, "how much of the colour match to apply: 0 keeps the model's colours, 1 "
                                   "the full match (less when the match over-corrects a coloured light)", lo=0, hi=1)
    blend: str = option("feather", "how the face meets the frame", choices=BLEND_MODES)
    sharpen: float = option(0.0, "unsharp-mask amount (0 = off)", lo=0, hi=10)
    all_faces: bool = option(False, "swap every face, not only those matching the model's identity")
    identity_threshold: float = option(0.6, "max embedding distance for a face to count as the model's identity",
                                       lo=0, hi=10)
    batch: int = option(16, "frames per model batch", lo=1, hi=4096, ui=False)
    crf: int = option(18, "libx264 quality (lower = better)", lo=0, hi=51, ui=False)
    preset: str = option("medium", "libx264 preset (ultrafast .. veryslow)", ui=False)
    watermark: bool = option(False, "also draw a small visible 'AI-GENERATED' mark")
    invisible_mark: bool = option(True, "leave out the invisible mark (tool marker + model hash in every swapped "
                                  "face); the Content Credentials then say it is off", flag="no-invisible-mark")
    sign_cert: str = option("", "certificate chain (signing certificate first) for the Content Credentials; "
                            "default: a local chain made on first use in the config folder", metavar="PEM", ui=False)
    sign_key: str = option("", "the private key of --sign-cert", metavar="PEM", ui=False)
    device: str = option("auto", DEVICE_HELP, pattern=DEVICE_PATTERN)
    amp: str = option("auto", "model precision: auto = bf16 on a GPU that supports it, fp32 on CPU", choices=AMP_MODES,
                      ui=False)
    frames: int = option(0, "video: only the first N frames (0 = all); the output is cut to match", lo=0)
    preview: bool = option(False, "a quick before/after look instead of the full output: OUTPUT.png gives a sheet "
                           "of frames spread over the video, a video OUTPUT the first --preview-seconds side by side")
    preview_frames: int = option(4, "rows of the PNG preview sheet, spread evenly over the video", lo=1, ui=False)
    preview_seconds: float = option(3.0, "length of an MP4 preview", above=0, ui=False)
    checkpoint: str = option("last", CHECKPOINT_HELP, metavar="best|last|STEP", pattern=CHECKPOINT_PATTERN,
                             ui=False)
