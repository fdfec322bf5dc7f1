"""The values an option can take, each list stated once. The stage that implements the choices keys its
own table by these names (swap/color.py's COLOR_MODES, models/presets.py's PRESETS); the agreement test
(tests/test_options.py) checks that the tables and these lists name the same things."""

from __future__ import annotations

DEVICE_HELP = "auto | cpu | cuda | cuda:N"
CHECKPOINT_HELP = "which weights: the last saved, the validation minimum (best), or a kept step"

PRESET_NAMES = ("tiny", "quick", "original64", "df128", "df256", "liae256")
ARCHS = ("df", "liae")
COMPILE_MODES = ("auto", "default", "reduce-overhead", "max-autotune")
AMP_MODES = ("auto", "bf16", "off")
VAL_SPLITS = ("random", "tail")
# What `train --from` re-initialises (train/reuse.py's RESET_MODULES names the modules per architecture).
RESETS = ("inter", "decoders", "none")
DISCRIMINATOR_KINDS = ("patch", "unet")

DETECTORS = ("hog", "cnn")
IMAGE_FORMATS = ("png", "jpg")
MASK_REGIONS = ("full", "whole")  # full: jaw and brows only; whole: with the forehead

DIRECTIONS = ("a2b", "b2a")  # a2b: A's face onto B (the input shows B); b2a the reverse
# learned, hull, segmenter, or their intersection joined by * (the pixelwise minimum).
MASK_MODES = ("learned", "hull", "learned*hull", "segmenter", "segmenter*hull", "learned*segmenter",
              "learned*segmenter*hull")
COLOR_MODES = ("rct", "lct", "idt", "hist", "none")
BLEND_MODES = ("feather", "poisson")
LIVE_RUNTIMES = ("onnx", "torch")  # how `deepfake live` runs a model folder

# Summary metrics a sweep can rank by: name -> True when higher is better.
RANK_METRICS: dict[str, bool] = {
    "ssim": True,  # reconstruction SSIM inside the mask, mean of both sides
    "psnr": True,
    "verification": True,  # fraction of swaps verified as the source identity
    "retrieval": True,  # fraction of swaps whose nearest identity (cosine, over all evaluated identities) is the source
    "id_dist_source": False,  # swap-to-source identity distance
    "landmark_error": False,
    "pose_error": False,
    "disc_auc": False,  # the model's own discriminator tells swaps from real faces: lower = harder to tell
    "val_loss": False,
    "faces_per_s": True,
    "params": False,
}
