"""Who may talk to the server, and what a refusal looks like.

- A token, when the server has one, is checked on every request (the page, its assets, the API and
  the event stream): `Authorization: Bearer T`, `X-Token: T`, `?token=T` or the cookie the page gets
  when it is opened with `?token=T` (so <img>, <video> and EventSource, which cannot set headers,
  carry it too). The cookie is SameSite=Strict: another site's page cannot send it.
- Without a token the server listens on loopback only, and the Host header must name loopback:
  a page elsewhere that rebinds its own domain name to 127.0.0.1 still cannot read the API.
- A request that changes something (any method but GET, HEAD and OPTIONS, and every WebSocket) must
  come from this server's own page or carry the token in a header; see `cross_site`. A browser sends
  another site's form or `text/plain` POST without asking first, so the Host check alone would let any
  page the user opens run jobs here.
- A body is read only under its own type (`check_type`): JSON as `application/json`, uploads as a file
  type. The types a cross-site form can send unasked (`text/plain`, forms) are thereby refused twice.
- No CORS header is ever sent, so no other origin can read an answer.
- No other site may frame the page (a framed dashboard is clicked through by the page around it), and
  no answer is sniffed into another type or leaks its address (it may carry `?token=`) as a referrer.
- Every refusal and every error is one line of JSON, `{"error": "..."}`, never a traceback.
"""

from __future__ import annotations

import hmac
import json
import logging
from http.cookies import SimpleCookie
from typing import Any, Iterable
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from deepfake.errors import BadInputError, DeepfakeError

log = logging.getLogger(__name__)

COOKIE = "deepfake_ui_token"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}  # they change nothing here, so any page may send them
DEFAULT_PORTS = {"http": 80, "https": 443}
SECURITY_HEADERS = [(b"x-frame-options", b"DENY"), (b"content-security-policy", b"frame-ancestors 'none'"),
                    (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]


def allowed_hosts(host: str) -> set[str]:
    """The Host names a loopback-only server answers to: loopback's usual names and the address it is
    bound to (127.0.0.2 is loopback too), bracketed when IPv6."""
    bare = host.strip("[]").lower()
    return LOOPBACK_NAMES | {bare, f"[{bare}]" if ":" in bare else bare}


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


async def _send_json(scope, send, status: int, message: str) -> None:
    """A refusal as one line of JSON; for a WebSocket, before its handshake is accepted."""
    body = json.dumps({"error": message}).encode()
    start = {"status": status, "headers": [(b"content-type", b"application/json"),
                                           (b"content-length", str(len(body)).encode())]}
    if scope["type"] == "http":
        await send({"type": "http.response.start", **start})
        await send({"type": "http.response.body", "body": body})
    elif "websocket.http.response" in scope.get("extensions", {}):  # the server can send a denial body
        await send({"type": "websocket.http.response.start", **start})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})  # the server answers the handshake with 403


class MediaTypeError(DeepfakeError):
    """A body of a type the route does not read (415)."""

    status = 415


def check_type(content_type: str | None, accepted: Iterable[str], where: str) -> None:
    """MediaTypeError unless `content_type` (the header, parameters ignored) is one of `accepted`;
    `type/*` accepts any subtype."""
    given = (content_type or "").split(";", 1)[0].strip().lower()
    for want in accepted:
        if given == want or (want.endswith("/*") and given.startswith(want[:-1]) and len(given) > len(want) - 1):
            return
    raise MediaTypeError(f"{where}: Content-Type {given or '(none)'} is not accepted here "
                         f"(send {' or '.join(accepted)})")


def same_origin(origin: str, host: str) -> bool:
    """Whether an Origin header names the server that the Host header names (scheme's default port
    when Host gives none)."""
    try:
        o, h = urlsplit(origin), urlsplit("//" + host)
        o_port, h_port = o.port, h.port
    except ValueError:
        return False
    if o.scheme not in DEFAULT_PORTS or not o.hostname or o.hostname != h.hostname:
        return False
    return (o_port or DEFAULT_PORTS[o.scheme]) == (h_port or DEFAULT_PORTS[o.scheme])


def cross_site(scope: dict, headers: dict[str, str], token_in_header: bool, open_loopback: bool) -> str | None:
    """Why a request is refused as cross-site (403), or None when it may go on.

    The check covers every request that can change something: methods other than GET, HEAD and OPTIONS,
    and every WebSocket (a browser opens one from any page, with no preflight). Such a request goes on when
    - it carries the token in a header (`Authorization: Bearer` or `X-Token`), which no other page can set;
    - or the browser says it is this server's own page: `Sec-Fetch-Site: same-origin` (or `none`, the user
      typed it), or, from a browser that sends no Sec-Fetch-Site, an `Origin` naming this server;
    - or it has neither header (curl, scripts: no browser made it) and the server is loopback-only
      without a token (`open_loopback`).

    Every route gets this check with no code of its own: `Guard` wraps the whole app and calls it for each
    scope, `"http"` and `"websocket"` alike, before any route runs. A new WebSocket route needs nothing
    more than `@app.websocket("/api/live")` in create_app: a handshake from a foreign Origin (or without
    the token, on a server that has one) is answered 403 before the handler is called, so the handler may
    `accept()` whatever socket reaches it. The page opens it as `new WebSocket("ws://" + location.host + path)`
    (the browser adds the Origin and, with a token, the cookie). tests/test_ui_cross_site.py checks a route
    added this way.
    """
    if scope["type"] == "http" and scope.get("method", "GET").upper() in SAFE_METHODS:
        return None
    if token_in_header:
        return None
    fetch_site = headers.get("sec-fetch-site")
    origin = headers.get("origin")
    what = "WebSocket" if scope["type"] == "websocket" else scope.get("method", "request")
    if fetch_site is not None:
        if fetch_site.strip().lower() in ("same-origin", "none"):
            return None
        return f"cross-site {what} refused (Sec-Fetch-Site: {fetch_site}): only this server's own page may change things"
    if origin is not None:
        if same_origin(origin, headers.get("host", "")):
            return None
        return f"cross-site {what} refused (Origin: {origin}): only this server's own page may change things"
    if open_loopback:
        return None
    return f"{what} refused: send the token in a header (Authorization: Bearer TOKEN or X-Token)"


class Guard:
    """ASGI middleware for the token, Host and cross-site rules above (plain ASGI, so streams pass
    untouched); it sees WebSocket handshakes too."""

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
                return await _send_json(scope, send, 400, f"Host {host!r} is not served here (loopback only)")
        in_header = False
        if self.token is not None:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            from_query = (query.get("token") or [None])[0]
            cookie = SimpleCookie()
            try:
                cookie.load(headers.get("cookie", ""))
            except Exception:  # noqa: BLE001 - a malformed cookie header is just no cookie
                pass
            auth = headers.get("authorization", "")
            header_tokens = [auth[7:].strip() if auth.lower().startswith("bearer ") else None, headers.get("x-token")]
            other_tokens = [from_query, cookie[COOKIE].value if COOKIE in cookie else None]
            in_header = any(self._matches(g) for g in header_tokens)
            if not in_header and not any(self._matches(g) for g in other_tokens):
                return await _send_json(scope, send, 401, "missing or wrong token (open the address the server printed)")
            if from_query and scope["type"] == "http" and scope.get("path") == "/":
                send = _with_cookie(send, self.token)
        reason = cross_site(scope, headers, in_header, open_loopback=self.token is None)
        if reason is not None:
            return await _send_json(scope, send, 403, reason)
        if scope["type"] == "http":
            send = _with_headers(send, SECURITY_HEADERS)
        return await self.app(scope, receive, send)

    def _matches(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())


def _with_headers(send, extra: list[tuple[bytes, bytes]]):
    async def wrapped(message):
        if message["type"] == "http.response.start":
            have = {k.lower() for k, _ in message.get("headers", [])}
            message = {**message, "headers": [*message.get("headers", []), *(h for h in extra if h[0] not in have)]}
        await send(message)

    return wrapped


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
        loc = list(errs[0].get("loc", ()))
        if loc and loc[0] in ("body", "query", "path", "header"):  # where it came from, not its name
            loc = loc[1:]
        where = ".".join(str(x) for x in loc) or "request"
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
