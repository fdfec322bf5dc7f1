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
}


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Every default shown, except None: such an option falls back to a folder's own config or a preset,
    which its help names."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)
