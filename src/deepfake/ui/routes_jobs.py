"""Routes for jobs: submit one (a typed job request, specs.py), list, look at, stop, read its result, and
the event stream the page follows."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from deepfake.ui import joblog, specs
from deepfake.ui.context import JSON, Context, Ctx, json_body
from deepfake.ui.guard import check_type

router = APIRouter()
# The route reads its body itself (a size limit, one-line errors); the schema documents the typed requests.
JOB_BODY, JOB_MODELS = specs.openapi_body()


def job_view(ctx: Context, job_id: str, lines: int = 200) -> dict[str, Any]:
    """A job's record with its progress and the end of its log."""
    rec = ctx.jobs.get(job_id)
    log = ctx.jobs.log_path(job_id)
    rec["progress"] = joblog.progress(log) if rec["state"] == "running" else None
    rec["log"] = joblog.tail(log, lines)
    return rec


@router.get("/api/jobs")
def list_jobs(ctx: Ctx):
    return {"jobs": ctx.jobs.list()}


@router.post("/api/jobs", status_code=201, openapi_extra=JOB_BODY)
async def submit(ctx: Ctx, request: Request):
    spec = specs.parse(await json_body(request))
    plan = await run_in_threadpool(spec.plan, ctx.ws, ctx.devices)
    return ctx.jobs.submit(spec.kind, plan.argv, resource=plan.resource, title=plan.title, spec=spec.model_dump(),
                           targets=plan.targets, capture=plan.capture, dedupe=plan.dedupe)


@router.get("/api/jobs/{job_id}")
def get_job(ctx: Ctx, job_id: str):
    return job_view(ctx, job_id)


@router.post("/api/jobs/{job_id}/stop")
def stop_job(ctx: Ctx, job_id: str, request: Request):
    if request.headers.get("content-type"):  # it reads no body; a form's or text's is not the page's
        check_type(request.headers["content-type"], JSON, "body")
    return ctx.jobs.stop(job_id)


@router.get("/api/jobs/{job_id}/result")
def job_result(ctx: Ctx, job_id: str):
    return ctx.jobs.result(job_id)


@router.get("/api/events")
async def events(ctx: Ctx, request: Request, job: str | None = None):
    jobs, config = ctx.jobs, ctx.config
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
