"""Who may talk to the server, and what a refusal looks like.

- A token, when the server has one, is checked on every request (the page, its assets, the API and
  the event stream): `Authorization: Bearer T`, `X-Token: T`, `?token=T` or the cookie the page gets
  when it is opened with `?token=T` (so <img>, <video> and EventSource, which cannot set headers,
  carry it too). The cookie is SameSite=Strict: another site's page cannot send it.
- Without a token the server listens on loopback only, and the Host header must name loopback:
  a page elsewhere that rebinds its own domain name to 127.0.0.1 still cannot read the API.
- Every refusal and every error is one line of JSON, `{"error": "..."}`, never a traceback.
"""

from __future__ import annotations

import hmac
import json
import logging
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from deepfake.errors import BadInputError, DeepfakeError

log = logging.getLogger(__name__)

COOKIE = "deepfake_ui_token"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


async def _send_json(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware for the token and Host rules above (plain ASGI, so streams pass untouched)."""

    def __init__(self, app, token: str | None, allowed_hosts: set[str] | None):
        self.app, self.token, self.allowed_hosts = app, token, allowed_hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.allowed_hosts is not None:
            host = headers.get("host", "")
            name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
            if name.lower() not in self.allowed_hosts:
                return await _send_json(send, 400, f"Host {host!r} is not served here (loopback only)")
        if self.token is None:
            return await self.app(scope, receive, send)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        from_query = (query.get("token") or [None])[0]
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is just no cookie
            pass
        auth = headers.get("authorization", "")
        given = [auth[7:].strip() if auth.lower().startswith("bearer ") else None, headers.get("x-token"),
                 from_query, cookie[COOKIE].value if COOKIE in cookie else None]
        if not any(g and hmac.compare_digest(g.encode(), self.token.encode()) for g in given):
            return await _send_json(send, 401, "missing or wrong token (open the address the server printed)")
        if from_query and scope["type"] == "http" and scope.get("path") == "/":
            send = _with_cookie(send, self.token)
        return await self.app(scope, receive, send)


def _with_cookie(send, token: str):
    async def wrapped(message):
        if message["type"] == "http.response.start":
            cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/".encode()
            message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
        await send(message)

    return wrapped


def _status_of(e: DeepfakeError) -> int:
    from deepfake.ui.workspace import NotFoundError

    status = getattr(e, "status", None)
    if isinstance(status, int):
        return status
    if isinstance(e, NotFoundError):
        return 404
    return 400


def install_errors(app: FastAPI) -> None:
    """One-line JSON for every error: bad requests 4xx, our own errors by their kind, a bug 500."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        detail = e.detail if isinstance(e.detail, str) else "request refused"
        if e.status_code == 404 and detail == "Not Found":
            detail = f"not found: {request.url.path}"
        return error(e.status_code, detail)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError):
        errs: list[dict[str, Any]] = list(e.errors())
        if not errs:
            return error(400, "bad request")
        where = ".".join(str(x) for x in errs[0].get("loc", ()) if x not in ("body", "query", "path")) or "request"
        return error(400, f"{where}: {errs[0].get('msg', 'invalid')}")

    @app.exception_handler(DeepfakeError)
    async def deepfake_error(request: Request, e: DeepfakeError):
        if isinstance(e, BadInputError):
            return error(400, str(e))
        return error(_status_of(e), str(e))

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, e: ClientDisconnect):
        return error(400, "the client went away before its request was read")  # nobody reads this; no traceback

    @app.exception_handler(Exception)
    async def bug(request: Request, e: Exception):
        log.exception("deepfake ui: %s %s", request.method, request.url.path)
        return error(500, f"internal error: {type(e).__name__}: {e}")
