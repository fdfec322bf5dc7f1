"""One module per subcommand. Each defines `add_arguments(parser)` and `run(args) -> int`.

The table below is the whole registry: explicit, no import-time scanning. Modules are imported only
when their command runs (or for `--help`), so `deepfake --help` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, one-line help)
    "extract": ("deepfake.commands.extract", "detect, align and mask faces from images and videos into a faceset"),
    "faceset": ("deepfake.commands.faceset", "inspect (info) or clean a faceset"),
    "train": ("deepfake.commands.train", "train the autoencoder and discriminator adversarially"),
    "pretrain": ("deepfake.commands.pretrain", "pretrain one autoencoder on many people's facesets, for train --from"),
    "discriminator": ("deepfake.commands.discriminator", "train the discriminator alone as a real/fake classifier"),
    "swap": ("deepfake.commands.swap", "put the trained face into images or video"),
    "demo": ("deepfake.commands.demo", "zero-setup end-to-end demo: extract, train, swap, report"),
    "evaluate": ("deepfake.commands.evaluate", "measure a model's quality: SSIM, identity, expression, pose, flicker"),
    "sweep": ("deepfake.commands.sweep", "train and evaluate a grid of config variants against a baseline"),
    "detect": ("deepfake.commands.detect", "score images or video as real or synthesized; read the provenance tag"),
    "mask": ("deepfake.commands.mask", "occlusion-aware masks: train a segmenter on your faces, label, apply"),
    "ui": ("deepfake.commands.ui", "a local web dashboard to run and watch every stage"),
    "export": ("deepfake.commands.export", "export a model as one ONNX file: .dfm for DeepFaceLive/FaceFusion, .onnx for live"),
    "live": ("deepfake.commands.live", "swap live from a camera or a video played as live (file, virtual camera)"),
}


def config_from_args(cls: type[T], args: argparse.Namespace, **values: Any) -> T:
    """`cls` built from the parsed options named like its fields, with `values` for the fields whose
    option has another name or form (`--no-smooth` -> smooth); fields with no option keep their defaults."""
    names = {f.name for f in dataclasses.fields(cls)}
    matched = {k: v for k, v in vars(args).items() if k in names}
    return cls(**(matched | values))
