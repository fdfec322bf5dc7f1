"""One module per subcommand. Each defines `add_arguments(parser)` and `run(args) -> int`.

The table below is the whole registry: explicit, no import-time scanning. Modules are imported only
when their command runs (or for `--help`), so `deepfake --help` stays fast.
"""

from __future__ import annotations

import argparse

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, one-line help)
    "extract": ("deepfake.commands.extract", "detect, align and mask faces from images and videos into a faceset"),
    "faceset": ("deepfake.commands.faceset", "inspect (info) or clean a faceset"),
    "train": ("deepfake.commands.train", "train the autoencoder and discriminator adversarially"),
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


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Every default shown, except None (such an option falls back to a folder's own config or a preset,
    which the help names) and a --no-X flag's (its help says what it turns off)."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action, argparse._StoreFalseAction):
            return action.help
        return super()._get_help_string(action)
