"""Routes that show what the workspace holds: a faceset (and what `clean` would drop), a model's
training, a report."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from deepfake.ui import joblog, specs, views
from deepfake.ui.context import Ctx, integer, json_body, number
from deepfake.ui.workspace import PathError, Workspace, model_kind

router = APIRouter()


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


def _live_step(prog: dict[str, Any] | None) -> int | None:
    """The step a running job's bar shows: its count with a step limit; with a time budget alone the bar
    counts seconds and names the step in its description (run_folder.RunBar)."""
    desc = (prog or {}).get("desc") or ""
    return int(desc[5:]) if desc.startswith("step ") and desc[5:].isdigit() else (prog or {}).get("n")


@router.get("/api/facesets/{name}")
def faceset(ctx: Ctx, name: str):
    return views.faceset_view(ctx.ws, name)


@router.post("/api/facesets/{name}/clean-preview")
async def clean_preview(ctx: Ctx, name: str, request: Request):
    body = await json_body(request)
    try:
        th = specs.Thresholds.model_validate(body if body is not None else {})
    except ValidationError as e:
        raise specs.SpecError(specs.one_line(e)) from None
    return await run_in_threadpool(views.clean_preview, ctx.ws, name, th.model_dump())


@router.get("/api/models/{name}")
def model(ctx: Ctx, name: str, skip: str | None = None, smooth: str | None = None):
    ws, jobs = ctx.ws, ctx.jobs
    if model_kind(ws.child("models", name)) == "mask":
        raise PathError(f"models/{name}: a mask model (its labels and predictions are on the Facesets page)")
    every = jobs.list()
    runs = [r for r in every if r["kind"] in ("train", "pretrain") and r["targets"].get("model") == name]
    target = next((r["spec"].get("steps") for r in runs if r["state"] in ("running", "queued")), None)
    view = views.training_view(ws, name, integer(skip, "skip", 0), number(smooth, "smooth", 0.6, 0.0, 0.999), target)
    live = next((r for r in runs if r["state"] == "running"), None)
    if live is not None:
        prog = joblog.progress(jobs.log_path(live["id"]))
        if prog and prog.get("eta_s") is not None:
            view["eta_s"] = prog["eta_s"]  # the bar's own pace is fresher than metrics.csv's rows
        shown = _live_step(prog)
        if shown:
            view["step"] = max(view["step"] or 0, shown)
    view["jobs"] = [{k: r[k] for k in ("id", "state", "title", "message", "spec", "created")} for r in runs[:20]]
    view["timelines"] = _timelines(ws, every, name)
    return view


@router.get("/api/reports")
def report(ctx: Ctx, path: str):
    return views.report_view(ctx.ws, path)
