"""The FastAPI app: routes that read the workspace (views.py, media.py) or hand work to jobs.py.

Everything the app needs comes in through `UiConfig` and lives on one `Context` made by `create_app`;
nothing is module-level state, so tests run several servers side by side.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import mimetypes
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from deepfake.config import UiConfig
from deepfake.errors import DeepfakeError
from deepfake.ui import joblog, labels, media, specs, views
from deepfake.ui.guard import LOOPBACK_NAMES, Guard, check_type, install_errors
from deepfake.ui.jobs import JobManager
from deepfake.ui.workspace import PathError, Workspace, model_kind

STATIC = Path(__file__).with_name("static")
JSON = ("application/json",)
UPLOAD_TYPES = ("application/octet-stream", "image/*", "video/*")  # the raw file, as the page sends it


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


def _number(value: str | None, name: str, default: float, lo: float, hi: float, kind: type = float):
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


def _int(value: str | None, name: str, default: int, lo: int = 0, hi: int = 10**9) -> int:
    return _number(value, name, default, lo, hi, int)


async def _json_body(request: Request) -> Any:
    check_type(request.headers.get("content-type"), JSON, "body")
    raw = await request.body()
    if len(raw) > 1 << 20:
        raise PathError("body: over 1 MiB")
    try:
        return json.loads(raw or b"null")
    except ValueError:
        raise PathError("body: not valid JSON") from None


def job_view(ctx: Context, job_id: str, lines: int = 200) -> dict[str, Any]:
    """A job's record with its progress and the end of its log."""
    rec = ctx.jobs.get(job_id)
    log = ctx.jobs.log_path(job_id)
    rec["progress"] = joblog.progress(log) if rec["state"] == "running" else None
    rec["log"] = joblog.tail(log, lines)
    return rec


def _timelines(ws: Workspace, records: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    """The pictures `evaluate --timeline` jobs made of `model` that are still there, newest first
    (timeline.json does not name its model; the job record does)."""
    out = []
    for r in records:
        folder = ws.root / r["targets"].get("output", "")
        if (r["kind"] == "evaluate" and r["state"] == "done" and r["spec"].get("timeline")
                and r["targets"].get("model") == model and (folder / "timeline.png").is_file()):
            out.append({"path": r["targets"]["output"], **views.report_view(ws, r["targets"]["output"])["timeline"]})
    return out


def _options() -> dict[str, Any]:
    """Defaults and choices for the forms, from the CLI's own configs."""
    from deepfake.config import ExtractConfig, SwapConfig, SweepConfig
    from deepfake.sweep.run import RANK_METRICS
    from deepfake.faceset.tools import CleanThresholds
    from deepfake.config import MaskTrainConfig
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


def create_app(config: UiConfig) -> FastAPI:
    """The app for one workspace. Its job scheduler starts now (DeepfakeError when another server
    holds the workspace) and stops with the app; running jobs are left running."""
    ws = Workspace.open(config.workspace)
    jobs = JobManager(ws.jobs_dir, ws.root, env=config.job_env, poll_s=config.poll_s).start()
    ctx = Context(config, ws, jobs, Devices())

    def warm() -> None:  # the presets import torch: seconds, better spent before the first page asks
        ctx.options = ctx.options or _options()

    threading.Thread(target=warm, name="deepfake-ui-warm", daemon=True).start()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            yield
        finally:
            jobs.close()

    app = FastAPI(title="deepfake ui", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.ctx = ctx
    install_errors(app)
    loopback_only = config.token is None
    app.add_middleware(Guard, token=config.token, allowed_hosts=LOOPBACK_NAMES if loopback_only else None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/")
    def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------------------------------------
    # The workspace and its files.

    @app.get("/api/workspace")
    def workspace():
        return ws.listing()

    @app.get("/api/options")
    def options():
        if ctx.options is None:
            ctx.options = _options()
        return ctx.options

    @app.put("/api/upload")
    async def upload(request: Request, name: str, overwrite: bool = False):
        check_type(request.headers.get("content-type"), UPLOAD_TYPES, name)
        declared = request.headers.get("content-length")
        return await media.receive(ws, name, request.stream(), int(declared) if declared and declared.isdigit() else None,
                                   config.max_upload_bytes, overwrite)

    @app.get("/api/file")
    def file(path: str, download: bool = False):
        p = ws.resolve(path)
        if not p.is_file():
            raise PathError(f"{path}: is a folder, not a file")
        kind = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
        return FileResponse(p, media_type=kind, filename=p.name if download else None,
                            content_disposition_type="attachment" if download else "inline")

    @app.get("/api/media")
    def media_info(path: str):
        from deepfake.provenance.label import read_provenance

        p = ws.resolve(path, ("inputs", "outputs"))
        if not p.is_file():
            raise PathError(f"{path}: is a folder, not a file")
        info = media.media_info(p)
        info.update(path=ws.rel(p), provenance=read_provenance(p), url=views.file_url(ws, p))
        return info

    @app.get("/api/frame")
    def frame(path: str, index: str | None = None):
        p = ws.resolve(path, ("inputs", "outputs"))
        if not p.is_file():
            raise PathError(f"{path}: is a folder, not a file")
        return Response(media.frame_jpeg(p, _int(index, "index", 0)), media_type="image/jpeg")

    # ------------------------------------------------------------------------------------------------
    # Views.

    @app.get("/api/facesets/{name}")
    def faceset(name: str):
        return views.faceset_view(ws, name)

    @app.post("/api/facesets/{name}/clean-preview")
    async def clean_preview(name: str, request: Request):
        body = await _json_body(request)
        try:
            th = specs.Thresholds.model_validate(body if body is not None else {})
        except ValidationError as e:
            raise specs.SpecError(specs.one_line(e)) from None
        return await run_in_threadpool(views.clean_preview, ws, name, th.model_dump())

    labels.add_routes(app, ws, _json_body)

    @app.get("/api/models/{name}")
    def model(name: str, skip: str | None = None, smooth: str | None = None):
        if model_kind(ws.child("models", name)) == "mask":
            raise PathError(f"models/{name}: a mask model (its labels and predictions are on the Facesets page)")
        every = jobs.list()
        runs = [r for r in every if r["kind"] == "train" and r["targets"].get("model") == name]
        target = next((r["spec"].get("steps") for r in runs if r["state"] in ("running", "queued")), None)
        view = views.training_view(ws, name, _int(skip, "skip", 0), _number(smooth, "smooth", 0.6, 0.0, 0.999), target)
        live = next((r for r in runs if r["state"] == "running"), None)
        if live is not None:
            prog = joblog.progress(jobs.log_path(live["id"]))
            if prog and prog.get("eta_s") is not None:
                view["eta_s"] = prog["eta_s"]  # the bar's own pace is fresher than metrics.csv's rows
            if prog and prog.get("n"):
                view["step"] = max(view["step"] or 0, prog["n"])
        view["jobs"] = [{k: r[k] for k in ("id", "state", "title", "message", "spec", "created")} for r in runs[:20]]
        view["timelines"] = _timelines(ws, every, name)
        return view

    @app.get("/api/reports")
    def report(path: str):
        return views.report_view(ws, path)

    # ------------------------------------------------------------------------------------------------
    # Jobs.

    @app.get("/api/jobs")
    def list_jobs():
        return {"jobs": jobs.list()}

    job_body, job_models = specs.openapi_body()

    @app.post("/api/jobs", status_code=201, openapi_extra=job_body)
    async def submit(request: Request):
        spec = specs.parse(await _json_body(request))
        plan = await run_in_threadpool(spec.plan, ws, ctx.devices)
        rec = jobs.submit(spec.kind, plan.argv, resource=plan.resource, title=plan.title,
                          spec=spec.model_dump(), targets=plan.targets, capture=plan.capture, dedupe=plan.dedupe)
        return rec

    @app.get("/api/jobs/{job_id}")
    def get_job(job_id: str):
        return job_view(ctx, job_id)

    @app.post("/api/jobs/{job_id}/stop")
    def stop_job(job_id: str, request: Request):
        if request.headers.get("content-type"):  # it reads no body; a form's or text's is not the page's
            check_type(request.headers["content-type"], JSON, "body")
        return jobs.stop(job_id)

    @app.get("/api/jobs/{job_id}/result")
    def job_result(job_id: str):
        return jobs.result(job_id)

    @app.get("/api/events")
    async def events(request: Request, job: str | None = None):
        if job is not None:
            jobs.get(job)  # 404 now, not an empty stream

        async def stream():
            yield "retry: 1000\n\n"
            sent: dict[str, str] = {}
            end = time.monotonic() + config.stream_seconds
            beat = 0.0
            while time.monotonic() < end and not jobs.closing.is_set():
                if await request.is_disconnected():
                    return
                payloads = {"jobs": await run_in_threadpool(lambda: json.dumps({"jobs": jobs.list()[:100]}))}
                if job is not None:
                    payloads["job"] = await run_in_threadpool(lambda: json.dumps(job_view(ctx, job)))
                for event, data in payloads.items():
                    if sent.get(event) != data:
                        sent[event] = data
                        yield f"event: {event}\ndata: {data}\n\n"
                if time.monotonic() - beat > 10:
                    beat = time.monotonic()
                    yield ": keep-alive\n\n"
                await asyncio.sleep(config.poll_s)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:  # built once, with the job models the body refers to
            schema = FastAPI.openapi(app)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(job_models)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def check_token(token: str | None) -> None:
    if token is not None and (len(token) < 8 or not all(c.isalnum() or c in "-_.~" for c in token)):
        raise DeepfakeError("--token: at least 8 characters of letters, digits, '-', '_', '.' or '~'")
