"""The FastAPI app: routes that read the workspace (routes_files.py, routes_views.py, labels.py), hand
work to jobs (routes_jobs.py) or swap the Live page's camera (live.py).

Everything the app needs comes in through `UiConfig` and lives on one `Context` (context.py) made by
`create_app`; nothing is module-level state, so tests run several servers side by side.
"""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from deepfake.config import UiConfig
from deepfake.errors import DeepfakeError
from deepfake.ui import labels, live, routes_files, routes_jobs, routes_views
from deepfake.ui.context import Context, Devices, json_body
from deepfake.ui.guard import Guard, allowed_hosts, install_errors
from deepfake.ui.jobs import JobManager
from deepfake.ui.workspace import Workspace

__all__ = ["UiConfig", "check_token", "create_app"]


def create_app(config: UiConfig) -> FastAPI:
    """The app for one workspace. Its job scheduler starts now (DeepfakeError when another server
    holds the workspace) and stops with the app; running jobs are left running."""
    ws = Workspace.open(config.workspace)
    jobs = JobManager(ws.jobs_dir, ws.root, env=config.job_env, poll_s=config.poll_s).start()
    ctx = Context(config, ws, jobs, Devices())

    def warm() -> None:  # the presets import torch: seconds, better spent before the first page asks
        ctx.options = ctx.options or routes_files.form_options()

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
    app.add_middleware(Guard, token=config.token, allowed_hosts=allowed_hosts(config.host) if loopback_only else None)
    app.mount("/static", StaticFiles(directory=routes_files.STATIC), name="static")
    for router in (routes_files.router, routes_views.router, routes_jobs.router):
        app.include_router(router)
    labels.add_routes(app, ws, json_body)
    live.add_routes(app, ws)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:  # built once, with the job models the request body refers to
            schema = FastAPI.openapi(app)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(routes_jobs.JOB_MODELS)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def check_token(token: str | None) -> None:
    if token is not None and (len(token) < 8 or not all(c.isalnum() or c in "-_.~" for c in token)):
        raise DeepfakeError("--token: at least 8 characters of letters, digits, '-', '_', '.' or '~'")
