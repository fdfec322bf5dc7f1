"""Command-line entry point: parses arguments and dispatches. Library code never reads argv."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys

from deepfake import __version__
from deepfake.commands import COMMANDS, Help
from deepfake.errors import DeepfakeError


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepfake",
        description="Face-swap toolkit: extract -> train -> swap -> evaluate. Every output is labelled synthetic.",
        formatter_class=Help,
    )
    parser.add_argument("--version", action="version", version=f"deepfake {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"deepfake.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"deepfake.commands.{name}":
                raise
            continue  # command not built yet
        help_text = getattr(module, "HELP", "")
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=Help)
        # Only the command asked for builds its options (or all of them, for the full help).
        if only is None or only == name:
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


class _BarFriendlyHandler(logging.StreamHandler):
    """Log lines on stderr written above any tqdm progress bar, not through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=chosen if chosen in COMMANDS else None)
    args = parser.parse_args(argv)
    handler = _BarFriendlyHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(run(args) or 0)
    except DeepfakeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def entry() -> None:
    """The process entry (the `deepfake` script, `python -m deepfake`). An interrupted run ends the
    process at once: a worker thread may be inside native code (a snapshot write, a decode), and the
    interpreter's teardown stops such threads in a way glibc answers with abort ("exception not
    rethrown"). Every write that matters is atomic, so skipping the teardown loses nothing.

    SIGTERM (`kill`, the dashboard's Stop, `docker stop`) stops a command as Ctrl-C does, so it removes its
    temp files on the way out; `train` handles both itself, to save first (run_folder.stop_signals)."""
    signal.signal(signal.SIGTERM, _terminate)
    code = main()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the work is done: a late SIGTERM ends the teardown at once
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    raise SystemExit(code)


if __name__ == "__main__":
    entry()
