"""Typed configs for every stage, with JSON round trips. Saved next to every output and checkpoint.

Each stage owns one dataclass here. `to_dict`/`from_dict` handle nesting; unknown keys and wrongly typed
values are errors, so a typo in a config file is caught at the boundary instead of silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from deepfake.errors import DeepfakeError

T = TypeVar("T")


# ----------------------------------------------------------------------------------------------------
# Extract.


@dataclass
class ExtractConfig:
    size: int = 256  # aligned face size in px
    coverage: float = 0.75  # fraction of the aligned crop the canonical face spans (DFL "whole face" ~ 0.75)
    every: int = 1  # take every Nth video frame
    frames: int = 0  # video: read only the first N frames (0 = all)
    min_face: int = 40  # smallest face box side kept, px in the source frame
    max_faces: int = 0  # per frame, largest first; 0 = no limit
    detector: str = "hog"  # hog | cnn
    detect_max_side: int = 640  # frames are downscaled to this long side for detection
    upsample_when_empty: bool = True  # retry with tiles/upsampling when nothing is found at the coarse scale
    reference: list[str] = field(default_factory=list)  # identity filter: images of the person to keep
    reference_threshold: float = 0.6  # max embedding distance to the reference mean
    smooth: bool = True  # temporal landmark smoothing on video
    smooth_min_cutoff: float = 1.0  # One-Euro filter: cutoff (Hz) at rest
    smooth_beta: float = 5.0  # One-Euro filter: how fast the cutoff rises with speed (no lag on fast motion)
    image_format: str = "png"  # aligned faces: png (lossless) | jpg
    embed_every: int = 25  # video: refresh a tracked face's identity embedding every N frames (it costs ~80 ms)
    workers: int = 2  # processes for detection


# ----------------------------------------------------------------------------------------------------
# Models.


@dataclass
class ModelConfig:
    arch: str = "df"  # df | liae
    resolution: int = 64  # 64..512, multiple of 16
    encoder_stages: int = 4  # strided 5x5 convolutions
    encoder_channels: list[int] = field(default_factory=lambda: [128, 256, 512, 1024])  # per stage
    latent_dims: int = 1024
    bottleneck_res: int = 0  # grid the dense layer projects back to; 0 = resolution / 2^(decoder_stages+1)
    bottleneck_channels: int = 512
    decoder_stages: int = 3
    decoder_channels: list[int] = field(default_factory=lambda: [256, 128, 64])  # per stage
    activation: str = "leaky_relu"  # relu | leaky_relu | elu | gelu | silu | mish
    norm: str = "none"  # none | batch | instance | group
    residual_blocks: bool = False
    learned_mask: bool = True
    checkpoint_decoder: bool = False  # activation checkpointing in the decoder (saves memory)


@dataclass
class DiscriminatorConfig:
    kind: str = "patch"  # patch | unet
    depth: int = 3  # strided conv stages
    channels: int = 64  # width of the first stage (doubles per stage)
    activation: str = "leaky_relu"
    norm: str = "none"  # none | batch | instance | group (never on the first layer)


# ----------------------------------------------------------------------------------------------------
# Losses, augmentation, training.


@dataclass
class LossConfig:
    dssim_weight: float = 10.0
    l1_weight: float = 0.0
    mse_weight: float = 10.0
    mask_weight: float = 1.0  # loss on the learned mask channel
    eye_mouth_weight: float = 3.0  # extra weight inside eye and mouth regions (1 = none)
    gan_weight: float = 0.0  # 0 = plain autoencoder (the baseline)
    gan_loss: str = "nonsaturating"  # nonsaturating | hinge
    r1_gamma: float = 0.0  # R1 gradient penalty on D (0 = off)
    r1_every: int = 16  # lazy R1 (StyleGAN2): penalise every N D steps, scaled by N
    gan_start_step: int = 0  # DFL orders GAN after the warp phase: G gets the adversarial term from here on
    identity_weight: float = 0.0  # pull each swap's dlib embedding to its decoder identity's mean (0 = off)
    true_face_weight: float = 0.0  # DF only: a latent-code discriminator makes B's codes pass as A's (DFL)


@dataclass
class AugmentConfig:
    warp: bool = True
    warp_strength: float = 0.05  # std of the random grid offsets, in normalised units
    warp_grid: int = 5
    rotation: float = 10.0  # degrees
    scale: float = 0.05  # zoom factor drawn from 1 +/- scale
    shift: float = 0.05  # fraction of the image side, either way, in x and y
    flip: bool = True
    brightness: float = 0.1  # factor drawn from 1 +/- brightness; contrast and saturation alike
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.02  # fraction of a full turn around the colour wheel, either way
    warp_until_step: int = 0  # DFL's "warp first, then no warp": 0 = warp always
    affine_until_step: int = 0  # the same switch for rotation/scale/shift/flip/colour: 0 = always


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    preset: str = "original64"
    steps: int = 10000
    batch: int = 16
    lr: float = 5e-5
    d_lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam | adamw
    warmup_steps: int = 0
    grad_clip: float = 0.0  # 0 = off
    grad_accum: int = 1
    # One batched pass through the shared encoder (and the discriminator) for both identities' faces
    # instead of one pass per identity: the same arithmetic in half the kernels, each twice as large.
    # Networks with batch norm always get one pass per identity (its statistics are per batch). Off
    # saves a little memory with a U-Net discriminator (liae256 b16 GAN bf16: 7.09 GiB against 7.21).
    batch_sides: bool = True
    seed: int = 0
    val_fraction: float = 0.05
    val_every: int = 100
    save_every: int = 500
    preview_every: int = 500
    keep_backups: int = 3
    log_every: int = 10  # losses leave the device every N steps (no host sync: each row is written a window later)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | bf16 | off
    channels_last: bool = True
    compile: bool = False  # torch.compile G's and D's forward-and-loss, one graph each (compile time is reported)
    compile_mode: str = "auto"  # auto (CUDA graphs for small models on CUDA) | default | reduce-overhead | max-autotune
    val_faces: int = 64  # per identity, at most: the fixed validation set
    preview_faces: int = 6  # columns of the preview grid
    overfit_patience: int = 3  # validations in a row with val up and train down before warning
    tensorboard: bool = True  # log to MODEL_DIR/tensorboard when the `tensorboard` package is installed
    # Filled in from the facesets at train time, so swap aligns faces the same way.
    face_size: int = 0
    coverage: float = 0.0


# ----------------------------------------------------------------------------------------------------
# Swap.


@dataclass
class SwapConfig:
    direction: str = "a2b"  # a2b: A's face onto B (the input shows B) | b2a
    mask: str = "learned*hull"  # learned | hull | learned*hull
    erode: int = 0  # px (negative dilates)
    blur: int = 0  # px; 0 = automatic, proportional to the face size
    color: str = "rct"  # rct | lct | idt | hist | none
    blend: str = "feather"  # feather | poisson
    sharpen: float = 0.0  # unsharp-mask amount; 0 = off
    all_faces: bool = False
    identity_threshold: float = 0.6
    batch: int = 16
    crf: int = 18
    preset: str = "medium"
    watermark: bool = False
    device: str = "auto"
    amp: str = "auto"  # model precision: auto (bf16 on a GPU that has it, else fp32) | bf16 | off
    frames: int = 0  # video: swap only the first N frames (0 = all); the output is cut to match
    preview: bool = False  # write a before/after preview instead of the full output (PNG sheet or short MP4)
    preview_frames: int = 4  # rows of the PNG sheet, spread evenly over the video
    preview_seconds: float = 3.0  # length of an MP4 preview


# ----------------------------------------------------------------------------------------------------
# Evaluate, sweep, detect.


@dataclass
class EvaluateConfig:
    max_faces: int = 64  # held-out faces per side (the model's own validation split), 0 = all
    max_frames: int = 150  # with --frames: frames of the video used for the flicker measure
    verify_threshold: float = 0.6  # dlib's same-person distance
    batch: int = 16
    grid_faces: int = 6  # held-out faces shown per side in the swap grid
    detect_threshold: float = 0.5  # P(real) >= threshold counts as real
    device: str = "auto"


@dataclass
class SweepConfig:
    base: str = "tiny"  # preset name, or a JSON config file the variants start from
    steps: int = 200  # training budget per variant (ignored when minutes > 0)
    minutes: float = 0.0  # wall-clock budget per variant; 0 = use steps
    rank_by: str = "ssim"  # metric the results table is sorted by (see deepfake.evaluate.sweep.RANK_METRICS)
    seed: int = 0  # same seed and data split for every variant
    device: str = "auto"
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)


@dataclass
class DetectConfig:
    threshold: float = 0.5  # P(real) below this calls a face synthetic
    every: int = 5  # video: score every Nth frame
    max_frames: int = 200  # video: at most this many scored frames per file (0 = all)
    detector: str = "hog"  # hog | cnn
    batch: int = 32
    device: str = "auto"


# ----------------------------------------------------------------------------------------------------
# JSON round trips.


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain JSON-able dict of a (nested) dataclass."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            v = to_dict(v)
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build `cls` from a dict, each value checked against its field's type (see `check_value`).

    Nested dataclasses are built too. Unknown keys and wrongly typed values raise DeepfakeError.
    """
    if not isinstance(data, dict):
        raise DeepfakeError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise DeepfakeError(f"{where}: unknown key(s) {', '.join(unknown)} for {cls.__name__}")
    return cls(**{key: check_value(hints[key], value, f"{where}.{key}") for key, value in data.items()})


def save_json(cfg: Any, path: str | Path) -> None:
    from deepfake.io.atomic import atomic_write_json

    atomic_write_json(path, to_dict(cfg))


def load_json(cls: type[T], path: str | Path) -> T:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DeepfakeError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DeepfakeError(f"{path}: not a readable JSON config ({e})") from None
    return from_dict(cls, data, where=str(path))


def replace_path(cfg: T, dotted: str, value: Any) -> T:
    """Return a copy of `cfg` with `a.b.c` set to `value` (used by sweeps and `--set key=value`)."""
    head, _, rest = dotted.partition(".")
    if head not in {f.name for f in dataclasses.fields(cfg)}:
        raise DeepfakeError(f"unknown config field '{dotted}' for {type(cfg).__name__}")
    if rest:
        return dataclasses.replace(cfg, **{head: replace_path(getattr(cfg, head), rest, value)})
    return dataclasses.replace(cfg, **{head: value})



# ----------------------------------------------------------------------------------------------------
# Typed values: one checker for JSON config files, `--set KEY=VALUE` and sweep grids.
#
# Typed input (JSON, YAML) must already have the field's type, widened only where nothing is lost: an
# integer for a float field, a list for a tuple. Text input is parsed for the field's type:
#   int    an integer literal only: `steps=1e3` is an error, so a float never lands in an int field
#   float  anything float() reads, integers included
#   bool   true/false, yes/no, on/off, 1/0 (any case)
#   str    the text as it is
#   list, tuple   a JSON list (`[128,256]`) or comma-separated items (`128,256`); a tuple's length is checked
#   X | None      none or null for None, else X
# A wrong value is a one-line DeepfakeError that names the field and the type it expects.

_TRUE, _FALSE, _NONE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}, {"none", "null"}
_HINTS = {bool: " (true/false)", int: " (a whole number such as 1000)"}


class _Mismatch(Exception):
    pass


def field_type(cfg: Any, dotted: str) -> Any:
    """The type hint of field `a.b.c` of a config dataclass (a class or an instance)."""
    tp = root = cfg if isinstance(cfg, type) else type(cfg)
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(tp) or part not in {f.name for f in dataclasses.fields(tp)}:
            raise DeepfakeError(f"unknown config field '{dotted}' for {root.__name__}")
        tp = typing.get_type_hints(tp)[part]
    return tp


def check_value(tp: Any, value: Any, where: str = "config") -> Any:
    """A typed `value` (from JSON or YAML) as type `tp`; a dict for a dataclass type is built."""
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    return _checked(tp, value, False, where)


def parse_value(tp: Any, text: str, where: str = "config") -> Any:
    """The text of a value (`--set`, an inline sweep grid) parsed as type `tp`."""
    if dataclasses.is_dataclass(tp):
        raise DeepfakeError(f"{where}: is a section ({tp.__name__}); set one of its fields, {where}.NAME=VALUE")
    return _checked(tp, text.strip(), True, where)


def parse_override(cfg: Any, dotted: str, text: str) -> Any:
    """The value `dotted=text` sets on `cfg`, typed for that field, e.g. parse_override(cfg, "steps", "1000")."""
    return parse_value(field_type(cfg, dotted), text, dotted)


def _checked(tp: Any, value: Any, text: bool, where: str) -> Any:
    try:
        return _convert(tp, value, text)
    except _Mismatch:
        name = tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")
        raise DeepfakeError(f"{where}: expected {name}{_HINTS.get(tp, '')}, got {value!r}") from None


def _convert(tp: Any, value: Any, text: bool) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if type(None) in args and (value is None or text and value.lower() in _NONE):
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, text)
            except _Mismatch:
                pass
        raise _Mismatch
    if origin in (list, tuple):
        return _convert_items(origin, args, value, text)
    if tp is bool:
        if text and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        if not text and isinstance(value, bool):
            return value
    elif tp is int:
        if text and re.fullmatch(r"[+-]?\d+", value):
            return int(value)
        if not text and isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
    elif tp is float:
        if text:
            try:
                return float(value)
            except ValueError:
                pass
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        return value  # Any and other hints: not checked
    raise _Mismatch


def _convert_items(origin: type, args: tuple, value: Any, text: bool) -> list | tuple:
    if text and value.startswith("["):
        try:
            value, text = json.loads(value), False
        except json.JSONDecodeError:
            raise _Mismatch from None
    elif text:
        value = [v.strip() for v in value.split(",")] if value else []
    if not isinstance(value, (list, tuple)):
        raise _Mismatch
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise _Mismatch
        return tuple(_convert(t, v, text) for t, v in zip(args, value))
    item = args[0] if args else Any
    items = [_convert(item, v, text) for v in value]
    return tuple(items) if origin is tuple else items
