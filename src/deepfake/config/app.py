"""The configs of the demo and of the dashboard's server."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from deepfake.config.choices import PRESET_NAMES
from deepfake.config.options import option

# The server's options are the command line's only: the dashboard does not start dashboards.
SERVER = {"ui": False}


@dataclass
class DemoConfig:
    minutes: float = option(4.0, "training time budget (wall clock)", above=0)
    frames: int = option(120, "frames of each clip used (extraction and the swapped video)", lo=1)
    preset: str = option("quick", "training preset", choices=PRESET_NAMES)
    face_size: int = option(128, "aligned face size for extraction (and so for swap)", lo=16, hi=2048)
    batch: int = option(8, "faces per identity per step", lo=1)
    device: str = option("cpu", "cpu | cuda | cuda:N")
    seed: int = 0
    start_from: str = option("", "start training from this model (e.g. made by `deepfake pretrain`, with --reset "
                             "inter); its preset is used", flag="from", metavar="MODEL_DIR")


@dataclass
class UiConfig:
    workspace: Path = option(Path("."), "folder holding facesets/, models/, inputs/, outputs/ (created when missing)",
                             metavar="DIR", **SERVER)
    host: str = option("127.0.0.1", "address to listen on; any but loopback needs a token", **SERVER)
    port: int = option(7860, "port (0 = any free one)", lo=0, hi=65535, **SERVER)
    token: str | None = option(None, "required on every request; generated and printed when --host is not loopback",
                               **SERVER)
    max_upload_mb: float = option(4096.0, "largest accepted upload, in MiB", above=0, **SERVER)
    job_env: dict[str, str] = field(default_factory=dict)  # extra environment for job processes
    stream_seconds: float = 30.0  # an event stream ends after this; EventSource reconnects by itself
    poll_s: float = 0.3  # job scheduler and event stream polling

    def __post_init__(self):
        self.workspace = Path(self.workspace)  # the command line gives text

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * (1 << 20))
