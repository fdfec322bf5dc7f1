"""Routes for the workspace and its files: the page, the listing, the forms' options, uploads, files,
media information and single frames."""

from __future__ import annotations

import dataclasses
import mimetypes
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from deepfake.ui import media, specs, views
from deepfake.ui.context import Ctx, integer
from deepfake.ui.guard import check_type
from deepfake.ui.workspace import PathError

STATIC = Path(__file__).with_name("static")
UPLOAD_TYPES = ("application/octet-stream", "image/*", "video/*")  # the raw file, as the page sends it
# Served inline: what the page shows (pictures, video, text). Anything else, HTML and SVG above all, would
# run its script on this origin, where every fetch passes the cross-site checks: it downloads instead.
INLINE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "video/", "audio/",
                "text/plain", "text/csv", "text/markdown", "application/json", "application/pdf")
FILE_CSP = ("default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; "
            "frame-ancestors 'none'; sandbox")

router = APIRouter()


def form_options() -> dict[str, Any]:
    """Defaults and choices for the forms, from the CLI's own configs and the job requests."""
    from deepfake.config import CleanThresholds, ExtractConfig, MaskTrainConfig, SwapConfig, SweepConfig
    from deepfake.config.choices import RANK_METRICS
    from deepfake.models.presets import PRESETS

    m = MaskTrainConfig()
    presets = {}
    for name, make in PRESETS.items():
        c = make()
        presets[name] = {"steps": c.steps, "batch": c.batch, "lr": c.lr, "resolution": c.model.resolution,
                         "val_every": c.val_every, "save_every": c.save_every, "preview_every": c.preview_every,
                         "gan_weight": c.loss.gan_weight, "arch": c.model.arch}
    return {"extract": dataclasses.asdict(ExtractConfig()), "swap": dataclasses.asdict(SwapConfig()),
            "clean": dataclasses.asdict(CleanThresholds()), "presets": presets, "choices": specs.form_choices(),
            "fields": specs.form_fields(),
            "sweep": {"base": SweepConfig().base, "steps": SweepConfig().steps, "rank_by": list(RANK_METRICS)},
            "mask": {"steps": m.steps, "pretrain_steps": m.pretrain_steps, "batch": m.batch,
                     "resolution": m.model.resolution, "region": m.region}}


@router.get("/")
def index():
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


@router.get("/api/workspace")
def workspace(ctx: Ctx):
    return ctx.ws.listing()


@router.get("/api/options")
def options(ctx: Ctx):
    if ctx.options is None:
        ctx.options = form_options()
    return ctx.options


@router.put("/api/upload")
async def upload(ctx: Ctx, request: Request, name: str, overwrite: bool = False):
    check_type(request.headers.get("content-type"), UPLOAD_TYPES, name)
    declared = request.headers.get("content-length")
    return await media.receive(ctx.ws, name, request.stream(), int(declared) if declared and declared.isdigit() else None,
                               ctx.config.max_upload_bytes, overwrite)


@router.get("/api/file")
def file(ctx: Ctx, path: str, download: bool = False):
    p = ctx.ws.resolve(path)
    if not p.is_file():
        raise PathError(f"{path}: is a folder, not a file")
    kind = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
    inline = not download and kind.startswith(INLINE_TYPES)
    return FileResponse(p, media_type=kind, filename=None if inline else p.name,
                        content_disposition_type="inline" if inline else "attachment",
                        headers={"Content-Security-Policy": FILE_CSP})


@router.get("/api/media")
def media_info(ctx: Ctx, path: str):
    from deepfake.provenance.label import read_provenance

    p = ctx.ws.resolve(path, ("inputs", "outputs"))
    if not p.is_file():
        raise PathError(f"{path}: is a folder, not a file")
    info = media.media_info(p)
    info.update(path=ctx.ws.rel(p), provenance=read_provenance(p), url=views.file_url(ctx.ws, p))
    return info


@router.get("/api/frame")
def frame(ctx: Ctx, path: str, index: str | None = None):
    p = ctx.ws.resolve(path, ("inputs", "outputs"))
    if not p.is_file():
        raise PathError(f"{path}: is a folder, not a file")
    return Response(media.frame_jpeg(p, integer(index, "index", 0)), media_type="image/jpeg")
