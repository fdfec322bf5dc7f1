"""What every route of the app reads: the one `Context` per app (config, workspace, jobs, devices), got
with `Ctx` as a FastAPI dependency, and the request helpers for query numbers and JSON bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from deepfake.config import UiConfig
from deepfake.ui.guard import check_type
from deepfake.ui.jobs import JobManager
from deepfake.ui.workspace import PathError, Workspace

JSON = ("application/json",)
MAX_JSON_BYTES = 1 << 20


class BodyTooLarge(PathError):
    status = 413


class Devices:
    """`--device` values -> the device a job occupies: jobs on the same one queue. `auto` is resolved
    the way the CLI resolves it (devices.py), once, on first use."""

    def __init__(self) -> None:
        self._cuda: bool | None = None

    def __call__(self, name: str | None) -> str:
        name = name or "auto"
        if name == "auto":
            if self._cuda is None:
                import torch

                self._cuda = torch.cuda.is_available()
            name = "cuda" if self._cuda else "cpu"
        return "cuda:0" if name == "cuda" else name


@dataclass
class Context:
    config: UiConfig
    ws: Workspace
    jobs: JobManager
    devices: Devices
    options: dict[str, Any] | None = None


def _context(request: Request) -> Context:
    return request.app.state.ctx


Ctx = Annotated[Context, Depends(_context)]


def number(value: str | None, name: str, default: float, lo: float, hi: float, kind: type = float):
    """A query parameter as `kind` within [lo, hi]; `default` when absent; PathError (400) otherwise."""
    if value in (None, ""):
        return default
    try:
        v = kind(value)
    except ValueError:
        raise PathError(f"{name}: expected {'an integer' if kind is int else 'a number'}, got {value!r}") from None
    if not lo <= v <= hi:
        show = (lambda x: f"{x:g}") if kind is float else str
        raise PathError(f"{name}: must be between {show(lo)} and {show(hi)}")
    return v


def integer(value: str | None, name: str, default: int, lo: int = 0, hi: int = 10**9) -> int:
    return number(value, name, default, lo, hi, int)


async def json_body(request: Request) -> Any:
    check_type(request.headers.get("content-type"), JSON, "body")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_JSON_BYTES:  # refused before a byte is read
        raise BodyTooLarge(f"body: {declared} bytes, over 1 MiB")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON_BYTES:
            raise BodyTooLarge("body: over 1 MiB")
    try:
        return json.loads(bytes(raw) or b"null")
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise PathError("body: not valid JSON") from None
