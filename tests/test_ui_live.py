"""The UI's Live page in Debian's Chromium with a fake camera fed from a real clip (a y4m written from
B's clip at test time): the page sends camera frames over /api/live and draws the swapped frames, whose
face region changed and background did not, with the visible mark, and shows FPS and latency. The
socket follows guard.py's rules (a foreign Origin is refused) and answers a bad model in one line."""

from __future__ import annotations

import base64
import json
import shutil

import cv2
import numpy as np
import pytest

from conftest import media_path
from test_ui_browser import chromium
from trained_pair import trained_model

pytestmark = [pytest.mark.slow, pytest.mark.media]

W, H = 640, 480


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, faceset_a, faceset_b):
    ws = tmp_path_factory.mktemp("live_ws")
    shutil.copytree(trained_model(tmp_path_factory, faceset_a, faceset_b), ws / "models" / "ab")
    return ws


@pytest.fixture(scope="module")
def camera(tmp_path_factory):
    """Two seconds of d14.mp4 past the faceset's frames as a 640x480 4:2:0 y4m, and the RGB frames the
    fake camera delivers (after the same 4:2:0 round trip)."""
    from deepfake.io.video import VideoReader

    path = tmp_path_factory.mktemp("camera") / "clip.y4m"
    frames = []
    with VideoReader(media_path("d14.mp4"), start=200, stop=260) as r, open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{W} H{H} F30:1 Ip A1:1 C420jpeg\n".encode())
        for _, _, rgb in r:
            rgb = cv2.copyMakeBorder(rgb[16:496], 0, 0, 64, 64, cv2.BORDER_REPLICATE)  # (480, 640, 3)
            yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)  # (720, 640): Y, then U, then V planes
            f.write(b"FRAME\n" + yuv.tobytes())
            frames.append(cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420))
    return path, np.stack(frames)


@pytest.fixture(scope="module")
def browser(camera):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    path = chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=[
            "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={camera[0]}"])
        yield b
        b.close()


def _canvas(page) -> np.ndarray:
    url = page.eval_on_selector("#live-canvas", "c => c.toDataURL('image/png')")
    png = np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8)
    return cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_the_live_page_swaps_the_camera(browser, workspace, camera, tmp_path):
    from deepfake.config import UiConfig
    from deepfake.ui.server import running

    _, frames = camera
    with running(UiConfig(workspace, port=0)) as (url, app):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "#live")
        page.wait_for_selector("#live-model option[value='ab']", state="attached")
        page.select_option("#live-model", "ab")
        page.click("#live-start")
        page.wait_for_function("() => +document.querySelector('#live-stats').dataset.swapped >= 8", timeout=180_000)
        stats = page.eval_on_selector("#live-stats", "b => ({...b.dataset, text: b.textContent})")
        shot = _canvas(page)
        page.screenshot(path=str(tmp_path / "live.png"))
        page.click("#live-stop")
        assert not errors, errors
    print(f"\nLive page: {stats['text']}")
    assert float(stats["fps"]) > 0 and float(stats["latency"]) > 0 and "fps" in stats["text"] and "latency" in stats["text"]
    assert shot.shape == (H, W, 3)
    # The camera frame this drawing came from: the one whose background matches best.
    background = (slice(0, 60), slice(160, 480))  # the wall above her head
    diffs = [np.abs(shot[background].astype(float) - f[background]).mean() for f in frames]
    src = frames[int(np.argmin(diffs))]
    assert min(diffs) < 6, min(diffs)  # the background came back as it was (two JPEG passes)
    face = np.abs(shot.astype(float) - src).mean(-1)[150:350, 240:400].mean()
    assert face > 10, face  # the face was swapped
    corner, before = shot[H - 24 :, W - 110 :], src[H - 24 :, W - 110 :]
    assert (corner.min(-1) > 200).mean() > 0.05 and (corner.max(-1) < 60).mean() > 0.3  # the mark
    assert not ((before.min(-1) > 200).mean() > 0.05 and (before.max(-1) < 60).mean() > 0.3)


def test_the_live_socket_follows_the_server_rules(workspace):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    from deepfake.config import UiConfig
    from deepfake.ui.server import running

    with running(UiConfig(workspace, port=0)) as (url, app):
        ws_url = url.replace("http://", "ws://").rstrip("/") + "/api/live"
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url + "?model=ab", origin="http://evil.example")
        assert refused.value.response.status_code == 403
        origin = url.rstrip("/")
        with connect(ws_url + "?model=nothing", origin=origin) as sock:
            answer = json.loads(sock.recv(timeout=30))
            assert "models/nothing" in answer["error"] and "\n" not in answer["error"]
        with connect(ws_url + "?model=ab", origin=origin) as sock:
            assert json.loads(sock.recv(timeout=120))["ready"]
            for bad in (b"not a jpeg", b""):  # neither closes the socket
                sock.send(bad)
                assert "not a decodable image" in json.loads(sock.recv(timeout=30))["error"]
