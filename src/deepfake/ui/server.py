"""Bind, say where, serve: `deepfake ui` after its options are parsed.

The socket is bound here, before uvicorn starts, so a busy port is one line of error and the printed
address is the one really listened on (port 0 picks a free one).
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import signal
import socket
import sys
import threading
import time
from typing import Any, Iterator

from deepfake.errors import DeepfakeError
from deepfake.ui.app import UiConfig, check_token, create_app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_token(config: UiConfig) -> UiConfig:
    """A token for any host but loopback: the one given, or a fresh one."""
    check_token(config.token)
    if config.token is None and not is_loopback(config.host):
        config.token = secrets.token_urlsafe(24)
    return config


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise DeepfakeError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(128)
    return sock


def address(config: UiConfig, port: int) -> str:
    host = f"[{config.host.strip('[]')}]" if ":" in config.host else config.host
    url = f"http://{host}:{port}/"
    return url + (f"?token={config.token}" if config.token else "")


def make_server(config: UiConfig):
    """A uvicorn.Server for the app; `.run(sockets=[sock])` serves until `.should_exit` is set."""
    import uvicorn

    app = create_app(config)
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3,
                                         access_log=False, lifespan="on"))


def serve(config: UiConfig) -> int:
    config = resolve_token(config)
    sock = bind(config.host, config.port)
    server = make_server(config)
    print(f"deepfake ui: workspace {config.workspace.resolve()}")
    print(f"deepfake ui: open {address(config, sock.getsockname()[1])}", flush=True)
    if config.token and not is_loopback(config.host):
        print("deepfake ui: every request must carry that token; anyone with it can run jobs here", file=sys.stderr)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again for the handler that was
    # there before it; this one absorbs it, so a supervisor's stop is a clean exit (0), as for train.
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run(sockets=[sock])
    return 0


@contextlib.contextmanager
def running(config: UiConfig, stop_jobs: bool = True, timeout: float = 30.0) -> Iterator[tuple[str, Any]]:
    """Serve on a background thread (tests, notebooks): yields (address, app) once it answers, and
    shuts down on exit; with `stop_jobs`, jobs still running are stopped first (SIGTERM, then SIGKILL)."""
    config = resolve_token(config)
    sock = bind(config.host, config.port)
    server = make_server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="deepfake-ui", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise DeepfakeError("deepfake ui: the server did not start")
        time.sleep(0.05)
    app = server.config.app
    try:
        yield address(config, sock.getsockname()[1]), app
    finally:
        if stop_jobs:
            app.state.ctx.jobs.stop_all()
        server.should_exit = True
        thread.join(timeout)
        sock.close()
