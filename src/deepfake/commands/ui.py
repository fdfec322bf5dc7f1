"""`deepfake ui [--workspace DIR] [--host H] [--port P] [--token T]`: parse, then serve the dashboard."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "a local web dashboard to run and watch every stage"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", default=".", metavar="DIR",
                   help="folder holding facesets/, models/, inputs/, outputs/ (created when missing)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on; any but loopback needs a token")
    p.add_argument("--port", type=int, default=7860, help="port (0 = any free one)")
    p.add_argument("--token", default=None,
                   help="required on every request; generated and printed when --host is not loopback")
    p.add_argument("--max-upload-mb", type=float, default=4096, help="largest accepted upload")
    p.epilog = ("One server per workspace: a second `deepfake ui` on the same --workspace is refused, since both "
                "would start the same queued jobs. Open the address the running one printed, or stop it "
                "(Ctrl-C; running jobs keep running and the next server picks them up), or give another "
                "--workspace.")


def run(args: argparse.Namespace) -> int:
    from deepfake.errors import DeepfakeError

    try:
        from deepfake.config import UiConfig
        from deepfake.ui.server import serve
    except ModuleNotFoundError as e:
        if e.name in ("fastapi", "uvicorn", "starlette", "pydantic"):
            raise DeepfakeError(f"deepfake ui needs {e.name}: pip install -e \".[ui]\"") from None
        raise
    if not 0 <= args.port <= 65535:
        raise DeepfakeError(f"--port {args.port}: must be 0..65535")
    if args.max_upload_mb <= 0:
        raise DeepfakeError(f"--max-upload-mb {args.max_upload_mb:g}: must be positive")
    return serve(UiConfig(Path(args.workspace), host=args.host, port=args.port, token=args.token,
                          max_upload_bytes=int(args.max_upload_mb * (1 << 20))))
