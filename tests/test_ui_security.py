"""Who may use the dashboard: a token on every request (the page, its assets, the API, the event
stream), loopback-only Host headers without one, a token for any host but loopback; and the command
itself, which prints where it listens and stops cleanly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from test_ui_api import assert_refused, call  # noqa: E402

from deepfake.ui.app import UiConfig  # noqa: E402
from deepfake.ui.server import is_loopback, resolve_token, running  # noqa: E402

TOKEN = "test-token-0123456789"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ui_ws_token")
    with running(UiConfig(ws, port=0, token=TOKEN, stream_seconds=3, poll_s=0.1)) as (url, app):
        yield url.split("?")[0]


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    with running(UiConfig(tmp_path_factory.mktemp("ui_ws_open"), port=0, stream_seconds=3, poll_s=0.1)) as (url, app):
        yield url


# ----------------------------------------------------------------------------------------------------
# Token and host.


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/api/workspace", "/api/events", "/api/jobs",
                                  "/api/file?path=x", "/api/nothing"])
def test_a_token_is_checked_on_every_request(guarded, path):
    status, body, _ = call(guarded, "GET", path)
    assert "token" in assert_refused(status, body, 401)
    status, body, _ = call(guarded, "GET", path, headers={"Authorization": "Bearer wrong-token-000"})
    assert_refused(status, body, 401)


def test_the_token_opens_the_page_the_api_and_the_stream(guarded):
    status, page, headers = call(guarded, "GET", f"/?token={TOKEN}")
    assert status == 200 and b"<title>deepfake ui</title>" in page
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    jar = {"Cookie": cookie.split(";")[0]}
    assert call(guarded, "GET", "/api/workspace", headers=jar)[0] == 200
    assert call(guarded, "GET", "/static/app.js", headers=jar)[0] == 200
    assert call(guarded, "GET", "/api/workspace", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert call(guarded, "GET", "/api/workspace", headers={"X-Token": TOKEN})[0] == 200
    status, res, _ = call(guarded, "GET", f"/api/events?token={TOKEN}", stream=True)
    assert status == 200 and res.readline().startswith(b"retry:")
    res.close()


def test_without_a_token_only_loopback_hosts_are_served(open_server):
    url = open_server
    status, body, _ = call(url, "GET", "/api/workspace", headers={"Host": "attacker.example:7860"})
    assert "loopback" in assert_refused(status, body, 400)
    assert call(url, "GET", "/api/workspace", headers={"Host": "localhost"})[0] == 200


def test_no_other_site_may_frame_the_page_or_sniff_an_answer(open_server):
    for path in ("/", "/api/workspace", "/static/app.js", "/api/nothing"):
        _, _, headers = call(open_server, "GET", path)
        assert headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer", path


def test_a_server_bound_to_another_loopback_address_answers_to_it(tmp_path):
    """127.0.0.2 is loopback (no token is made), so its own address must pass the Host check."""
    with running(UiConfig(tmp_path, host="127.0.0.2", port=0, stream_seconds=3, poll_s=0.1)) as (url, app):
        assert url.startswith("http://127.0.0.2:")
        assert call(url, "GET", "/api/workspace")[0] == 200
        status, body, _ = call(url, "GET", "/api/workspace", headers={"Host": "127.0.0.3"})
        assert_refused(status, body, 400)


def test_any_host_but_loopback_gets_a_token():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    cfg = resolve_token(UiConfig(Path("."), host="0.0.0.0"))
    assert cfg.token and len(cfg.token) >= 24
    assert resolve_token(UiConfig(Path("."), host="0.0.0.0", token="given-token-1")).token == "given-token-1"
    assert resolve_token(UiConfig(Path("."))).token is None
    from deepfake.errors import DeepfakeError

    with pytest.raises(DeepfakeError, match="--token"):
        resolve_token(UiConfig(Path("."), token="a b;c"))


def test_the_cli_parses_and_prints_the_address(tmp_path):
    """`deepfake ui --help` lists its options; a port in use is one line of error, not a traceback."""
    import socket
    import subprocess

    out = subprocess.run([sys.executable, "-m", "deepfake", "ui", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--workspace" in out.stdout and "--token" in out.stdout
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "deepfake", "ui", "--workspace", str(tmp_path), "--port", str(port)],
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in out.stderr


def test_the_command_prints_its_address_serves_and_stops_on_sigterm(tmp_path):
    import signal
    import subprocess

    proc = subprocess.Popen([sys.executable, "-m", "deepfake", "ui", "--workspace", str(tmp_path / "ws"), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        address = lines[1].split("open ", 1)[1].strip()
        assert address.startswith("http://127.0.0.1:") and "token" not in address
        status, page, _ = call(address, "GET", "/")
        assert status == 200 and b"/static/app.js" in page
        assert sorted(p.name for p in (tmp_path / "ws").iterdir()) == [".jobs", "facesets", "inputs", "models", "outputs"]
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    assert rc == 0, proc.stderr.read()
