"""The configs of the demo and of the dashboard's server."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from deepfake.config.choices import PRESET_NAMES
from deepfake.config.options import option


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
    workspace: Path
    host: str = "127.0.0.1"
    port: int = 7860
    token: str | None = None  # required (given or generated) for any host but loopback
    max_upload_bytes: int = 4 << 30
    job_env: dict[str, str] = field(default_factory=dict)  # extra environment for job processes
    stream_seconds: float = 30.0  # an event stream ends after this; EventSource reconnects by itself
    poll_s: float = 0.3  # job scheduler and event stream polling
