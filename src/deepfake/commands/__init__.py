"""One module per subcommand, deepfake.commands.NAME. Each defines `HELP` (its one line in `deepfake --help`),
`add_arguments(parser)` and `run(args) -> int`.

The tuple below is the whole registry: explicit, no import-time scanning. The modules import nothing
heavy at the top (their libraries load in `run`), so reading every HELP keeps `deepfake --help` fast.
"""

from __future__ import annotations

import argparse

# The pipeline, measuring and telling fakes, masks and use outside this tool, then the demo and the dashboard.
COMMANDS = ("extract", "faceset", "train", "pretrain", "swap", "evaluate", "sweep", "discriminator", "detect", "mask", "export",
            "live", "demo", "ui")


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Every default shown, except None (such an option falls back to a folder's own config or a preset,
    which the help names) and a --no-X flag's (its help says what it turns off)."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action, argparse._StoreFalseAction):
            return action.help
        return super()._get_help_string(action)
