"""`deepfake ui [--workspace DIR] [--host H] [--port P] [--token T]`: parse, then serve the dashboard."""

from __future__ import annotations

import argparse

HELP = "a local web dashboard to run and watch every stage"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from deepfake.config import UiConfig
    from deepfake.config.options import add_options

    add_options(p, UiConfig)
    p.epilog = ("One server per workspace: a second `deepfake ui` on the same --workspace is refused, since both "
                "would start the same queued jobs. Open the address the running one printed, or stop it "
                "(Ctrl-C; running jobs keep running and the next server picks them up), or give another "
                "--workspace.")


def run(args: argparse.Namespace) -> int:
    from deepfake.config import UiConfig
    from deepfake.config.options import config_from_args
    from deepfake.errors import DeepfakeError

    cfg = config_from_args(UiConfig, args)  # --port and --max-upload-mb in their ranges
    try:
        from deepfake.ui.server import serve
    except ModuleNotFoundError as e:
        if e.name in ("fastapi", "uvicorn", "starlette", "pydantic"):
            raise DeepfakeError(f"deepfake ui needs {e.name}: pip install -e \".[ui]\"") from None
        raise
    return serve(cfg)
