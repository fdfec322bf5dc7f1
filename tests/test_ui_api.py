"""The dashboard's API against a live server on 127.0.0.1 (a free port, a thread that stops by itself):
every path stays inside the workspace, uploads are checked and never left partial, every bad request is
a 4xx with one line of JSON, and the pages' views read what the CLI left. Tokens and hosts:
test_ui_security.py."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from deepfake.errors import BadInputError  # noqa: E402
from deepfake.ui.app import UiConfig  # noqa: E402
from deepfake.ui.server import running  # noqa: E402

def call(base: str, method: str, path: str, body: bytes | dict | None = None, headers: dict | None = None,
         stream: bool = False):
    """(status, parsed JSON or raw bytes, headers) of one request; never raises on 4xx/5xx. A dict or
    list goes as JSON, bytes as application/octet-stream (urllib would call them a form), unless
    `headers` names the type."""
    as_json = isinstance(body, (dict, list))
    data = json.dumps(body).encode() if as_json else body
    req = urllib.request.Request(base.rstrip("/") + path, data=data, method=method, headers=headers or {})
    if data is not None and not req.has_header("Content-type"):
        req.add_header("Content-Type", "application/json" if as_json else "application/octet-stream")
    try:
        res = urllib.request.urlopen(req, timeout=30)
    except urllib.error.HTTPError as e:
        res = e
    if stream:
        return res.status, res, res.headers
    raw = res.read()
    kind = res.headers.get("content-type", "")
    return res.status, (json.loads(raw) if "json" in kind else raw), res.headers


def assert_refused(status: int, body, code: int | tuple[int, ...] | None = None) -> str:
    """A 4xx with exactly one line of JSON: {"error": "..."}. Returns the message."""
    assert 400 <= status < 500, (status, body)
    if code is not None:
        assert status in ((code,) if isinstance(code, int) else code), (status, body)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert body["error"] and "\n" not in body["error"] and "Traceback" not in body["error"]
    return body["error"]


def fake_faceset(root: Path) -> None:
    """A faceset as the CLI would leave one, with no faces (the listing only reads the manifest)."""
    root.mkdir(parents=True)
    (root / "faces.jsonl").write_text(json.dumps({"schema": "deepfake.faceset", "version": 1, "settings": {"size": 64}}) + "\n")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ui_ws")
    fake_faceset(ws / "facesets" / "a")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text("not for the API")
    shutil.copy(Path(__file__), outside / "clip.mp4")
    (ws / "inputs").mkdir()
    (ws / "inputs" / "escape").symlink_to(outside, target_is_directory=True)
    (ws / "inputs" / "escape.mp4").symlink_to(outside / "clip.mp4")
    (ws / "inputs" / "escape_album").mkdir()  # a folder of the workspace holding a link out of it
    (ws / "inputs" / "escape_album" / "clip.mp4").symlink_to(outside / "clip.mp4")
    (ws / "inputs" / "escape_dangling.mp4").symlink_to(outside / "gone.mp4")
    (ws / "outputs").mkdir()
    (ws / "outputs" / "note.txt").write_text("inside")
    (ws / "outputs" / "page.html").write_text("<script>fetch('/api/jobs', {method: 'POST'})</script>")
    (ws / "outputs" / "page.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'><script>1</script></svg>")
    with running(UiConfig(ws, port=0, max_upload_mb=0.2, stream_seconds=5, poll_s=0.1)) as (url, app):
        yield url, ws, outside, app


# ----------------------------------------------------------------------------------------------------
# Paths.

ESCAPES = ["../secret.txt", "inputs/../../secret.txt", "/etc/passwd", "inputs/escape/secret.txt", "inputs/escape.mp4",
           ".jobs/server.lock", "inputs/%2e%2e/x", "", "inputs\\..\\x"]


@pytest.mark.parametrize("endpoint", ["/api/file?path=", "/api/media?path=", "/api/frame?path=", "/api/reports?path="])
@pytest.mark.parametrize("path", ESCAPES)
def test_get_endpoints_refuse_paths_outside_the_workspace(server, endpoint, path):
    url, ws, outside, _ = server
    status, body, _ = call(url, "GET", endpoint + quote(path))
    msg = assert_refused(status, body, (400, 404, 422))
    assert "not for the API" not in msg


def test_absolute_path_to_the_outside_folder_is_refused(server):
    url, ws, outside, _ = server
    for endpoint in ("/api/file", "/api/media", "/api/frame", "/api/reports"):
        status, body, _ = call(url, "GET", f"{endpoint}?path={quote(str(outside / 'secret.txt'))}")
        assert "outside" in assert_refused(status, body, 400)


def test_a_file_inside_is_served(server):
    url, ws, _, _ = server
    status, body, headers = call(url, "GET", "/api/file?path=outputs/note.txt")
    assert status == 200 and body == b"inside" and "attachment" not in headers.get("content-disposition", "")
    assert "sandbox" in headers["content-security-policy"]
    status, body, _ = call(url, "GET", f"/api/file?path={quote(str(ws / 'outputs' / 'note.txt'))}")
    assert status == 200 and body == b"inside"


@pytest.mark.parametrize("name", ["page.html", "page.svg"])
def test_a_page_in_the_workspace_downloads_instead_of_running_on_this_origin(server, name):
    """Script in a workspace file served inline would run here, where its requests pass every
    cross-site check."""
    url, *_ = server
    status, _, headers = call(url, "GET", f"/api/file?path=outputs/{name}")
    assert status == 200 and headers["content-disposition"].startswith("attachment")
    assert "sandbox" in headers["content-security-policy"] and headers["x-content-type-options"] == "nosniff"


def test_the_listing_leaves_out_links_that_lead_outside_or_nowhere(server):
    url, ws, *_ = server
    status, listed, _ = call(url, "GET", "/api/workspace")
    assert status == 200
    names = {f["name"] for f in listed["inputs"]}
    assert "escape_album" in names and not names & {"escape", "escape.mp4", "escape_dangling.mp4"}


def test_a_report_folder_reads_no_file_through_a_link_out_of_the_workspace(server):
    url, ws, outside, _ = server
    d = ws / "outputs" / "linked_report"
    d.mkdir()
    (d / "report.md").symlink_to(outside / "secret.txt")
    (d / "results.csv").symlink_to(outside / "secret.txt")
    (d / "timeline.png").write_bytes(b"png")  # a report folder by its picture
    status, r, _ = call(url, "GET", "/api/reports?path=outputs/linked_report")
    assert status == 200 and "not for the API" not in json.dumps(r) and "ranked" not in r


@pytest.mark.parametrize("name", ["..", "...", "a/../..", "-rf", ".hidden", "a b"])
def test_name_endpoints_refuse_bad_names(server, name):
    url, *_ = server
    for method, path, body in (("GET", f"/api/facesets/{quote(name, safe='')}", None),
                               ("POST", f"/api/facesets/{quote(name, safe='')}/clean-preview", {}),
                               ("GET", f"/api/models/{quote(name, safe='')}", None)):
        status, out, _ = call(url, method, path, body)
        assert_refused(status, out, (400, 404))


JOB_ESCAPES = [
    {"kind": "extract", "inputs": ["../../etc/passwd"], "faceset": "x"},
    {"kind": "extract", "inputs": ["inputs/escape/secret.txt"], "faceset": "x"},
    {"kind": "extract", "inputs": ["/etc/passwd"], "faceset": "x"},
    {"kind": "extract", "inputs": ["facesets/a"], "faceset": "x"},  # inside, but not an input
    {"kind": "extract", "inputs": ["inputs/escape.mp4"], "faceset": "../../x"},
    {"kind": "faceset_info", "faceset": "../a"},
    {"kind": "faceset_clean", "faceset": "a/..", "thresholds": {}},
    {"kind": "train", "a": "../a", "b": "a", "model": "m"},
    {"kind": "train", "a": "a", "b": "a", "model": "../../m"},
    {"kind": "swap", "model": "m", "input": "/etc/passwd"},
    {"kind": "swap", "model": "m", "input": "inputs/escape.mp4", "output": "x.mp4"},
    {"kind": "evaluate", "model": "m", "a": "a", "b": "a", "frames": "inputs/escape.mp4"},
    {"kind": "sweep", "a": "a", "b": "a", "output": "../s", "grid": ["model.activation=relu,gelu"]},
    {"kind": "detect", "inputs": ["inputs/escape/secret.txt"]},
    {"kind": "detect", "inputs": ["../secret.txt"]},
    {"kind": "pretrain", "facesets": ["../a"], "model": "p"},
    {"kind": "pretrain", "facesets": ["a", "/etc"], "model": "p"},
    {"kind": "pretrain", "facesets": ["a"], "model": "../../p"},
    {"kind": "pretrain", "facesets": [], "model": "p"},
    {"kind": "extract", "inputs": ["inputs/escape_album"], "faceset": "x"},  # the link inside the folder
    {"kind": "detect", "inputs": ["inputs/escape_album"]},
]


@pytest.mark.parametrize("spec", JOB_ESCAPES, ids=lambda s: s["kind"])
def test_job_requests_refuse_paths_outside_their_area(server, spec):
    url, ws, _, app = server
    before = len(app.state.ctx.jobs.list())
    status, body, _ = call(url, "POST", "/api/jobs", spec)
    assert_refused(status, body, (400, 404))
    assert len(app.state.ctx.jobs.list()) == before  # nothing was queued


# ----------------------------------------------------------------------------------------------------
# Uploads.


def leftovers(ws: Path) -> list[str]:
    return sorted(p.name for p in (ws / "inputs").iterdir() if not p.name.startswith("escape"))


@pytest.mark.parametrize("name, data, code, words", [
    ("empty.mp4", b"", 400, "empty.mp4: empty file (0 bytes)"),
    ("notes.txt", b"hello", 415, "notes.txt: unsupported file type '.txt'"),
    ("big.mp4", b"\0" * 300_000, 413, "over the upload limit"),
    ("../up.mp4", b"x", 400, "a name is"),
    ("up/x.mp4", b"x", 400, "a name is"),
])
def test_bad_uploads_are_refused_and_leave_nothing(server, name, data, code, words):
    url, ws, *_ = server
    status, body, _ = call(url, "PUT", f"/api/upload?name={quote(name)}", data)
    assert words in assert_refused(status, body, code)
    assert leftovers(ws) == []


def test_a_corrupt_video_gets_the_clis_reason(server, tmp_path):
    from deepfake.io.video import VideoReader

    url, ws, *_ = server
    data = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8  # an MP4 header over garbage
    (tmp_path / "bad.mp4").write_bytes(data)
    with pytest.raises(BadInputError) as cli:
        with VideoReader(tmp_path / "bad.mp4") as reader:
            next(iter(reader))
    status, body, _ = call(url, "PUT", "/api/upload?name=bad.mp4", data)
    assert assert_refused(status, body, 400) == f"bad.mp4: {cli.value.reason}"
    assert leftovers(ws) == []


def test_a_corrupt_image_gets_the_clis_reason(server, tmp_path):
    from deepfake.io.images import read_image

    url, ws, *_ = server
    data = b"\xff\xd8\xff\xe0" + b"\x00" * 64  # a JPEG start, then nothing
    (tmp_path / "bad.jpg").write_bytes(data)
    with pytest.raises(BadInputError) as cli:
        read_image(tmp_path / "bad.jpg")
    status, body, _ = call(url, "PUT", "/api/upload?name=bad.jpg", data)
    assert assert_refused(status, body, 400) == f"bad.jpg: {cli.value.reason}"
    assert leftovers(ws) == []


def test_a_good_image_uploads_once(server):
    import cv2
    import numpy as np

    url, ws, *_ = server
    ok, png = cv2.imencode(".png", np.full((32, 48, 3), 128, np.uint8))
    status, body, _ = call(url, "PUT", "/api/upload?name=grey.png", png.tobytes())
    assert status == 200 and body["path"] == "inputs/grey.png" and body["kind"] == "image"
    status, body, _ = call(url, "PUT", "/api/upload?name=grey.png", png.tobytes())
    assert "already in inputs/" in assert_refused(status, body, 409)
    listed = call(url, "GET", "/api/workspace")[1]
    assert [f["name"] for f in listed["inputs"] if f["name"] == "grey.png"] == ["grey.png"]
    status, jpeg, headers = call(url, "GET", "/api/frame?path=inputs/grey.png&index=0")
    assert status == 200 and headers["content-type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
    (ws / "inputs" / "grey.png").unlink()


# ----------------------------------------------------------------------------------------------------
# Bad requests.


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/api/nothing-here", None),
    ("DELETE", "/api/workspace", None),
    ("POST", "/api/jobs", b"{not json"),
    ("POST", "/api/jobs", {"kind": "bake"}),
    ("POST", "/api/jobs", {"kind": "train", "a": "a", "b": "a"}),  # no model
    ("POST", "/api/jobs", {"kind": "train", "a": "a", "b": "a", "model": "m", "steps": "many"}),
    ("POST", "/api/jobs", {"kind": "train", "a": "a", "b": "a", "model": "m", "steps": -5}),
    ("POST", "/api/jobs", {"kind": "train", "a": "a", "b": "a", "model": "m", "set": ["--evil"]}),
    ("POST", "/api/jobs", {"kind": "train", "a": "a", "b": "a", "model": "m", "surprise": 1}),
    ("POST", "/api/jobs", {"kind": "swap", "model": "m", "input": "inputs/x.mp4", "color": "purple"}),
    ("POST", "/api/jobs", {"kind": "extract", "inputs": [], "faceset": "x"}),
    ("POST", "/api/jobs", [1, 2]),
    ("GET", "/api/jobs/no-such-job", None),
    ("POST", "/api/jobs/no-such-job/stop", None),
    ("GET", "/api/jobs/no-such-job/result", None),
    ("GET", "/api/events?job=no-such-job", None),
    ("GET", "/api/frame?path=outputs/note.txt&index=minus", None),
    ("GET", "/api/frame?path=outputs/note.txt&index=-1", None),
    ("GET", "/api/file?path=outputs", None),
    ("GET", "/api/file", None),
    ("GET", "/api/facesets/missing", None),
    ("GET", "/api/models/missing", None),
    ("GET", "/api/models/missing?smooth=2", None),
    ("GET", "/api/reports?path=outputs", None),
    ("POST", "/api/facesets/a/clean-preview", {"max_yaw": "steep"}),
    ("PUT", "/api/upload", b"x"),
])
def test_bad_requests_get_a_4xx_with_one_line(server, method, path, body):
    url, *_ = server
    status, out, _ = call(url, method, path, body)
    assert_refused(status, out)


@pytest.mark.parametrize("method, path", [("POST", "/api/jobs"), ("PUT", "/api/facesets/a/labels"),
                                          ("POST", "/api/facesets/a/clean-preview")])
def test_json_nested_past_the_recursion_limit_is_a_bad_body(server, method, path):
    url, *_ = server
    status, body, _ = call(url, method, path, b"[" * 100_000, headers={"Content-Type": "application/json"})
    assert "not valid JSON" in assert_refused(status, body, 400)


def test_a_body_over_the_limit_is_refused_before_it_is_read(server):
    import socket

    url, *_ = server
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(f"POST /api/jobs HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {400 << 20}\r\n\r\n".encode())  # the 400 MB never follow
        answer = b""
        while b"over 1 MiB" not in answer:  # the head and the body may come in separate segments
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"over 1 MiB" in answer, answer


def test_a_missing_query_parameter_is_named(server):
    url, *_ = server
    status, body, _ = call(url, "GET", "/api/file")
    assert assert_refused(status, body, 400) == "path: Field required"


def test_an_upload_onto_a_folder_is_refused(server):
    url, ws, *_ = server
    (ws / "inputs" / "folder.png").mkdir()
    try:
        status, body, _ = call(url, "PUT", "/api/upload?name=folder.png&overwrite=true", b"x")
        assert "folder" in assert_refused(status, body, 409)
    finally:
        (ws / "inputs" / "folder.png").rmdir()


def test_a_results_table_saved_in_another_encoding_still_shows(server):
    url, ws, *_ = server
    d = ws / "outputs" / "latin1"
    d.mkdir()
    (d / "results.md").write_text("# Sweep results\n")
    (d / "results.csv").write_bytes("rank,variant\n1,r\xe9lu\n".encode("latin-1"))
    status, r, _ = call(url, "GET", "/api/reports?path=outputs/latin1")
    assert status == 200 and r["ranked"][0]["rank"] == "1"


def test_finished_jobs_cannot_be_stopped_and_list_with_their_state(server):
    url, ws, _, app = server
    status, rec, _ = call(url, "POST", "/api/jobs", {"kind": "faceset_info", "faceset": "a"})
    assert status == 201 and rec["state"] == "queued" and rec["argv"][:3] == ["deepfake", "faceset", "info"]
    deadline = time.monotonic() + 60
    while call(url, "GET", f"/api/jobs/{rec['id']}")[1]["state"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    job = call(url, "GET", f"/api/jobs/{rec['id']}")[1]
    assert job["state"] in ("done", "failed") and isinstance(job["log"], list)
    assert "already" in assert_refused(*call(url, "POST", f"/api/jobs/{rec['id']}/stop")[:2], 409)
    listed = call(url, "GET", "/api/jobs")[1]["jobs"]
    assert rec["id"] in [j["id"] for j in listed]


def test_the_event_stream_sends_jobs_and_one_jobs_state(server):
    url, ws, _, app = server
    rec = app.state.ctx.jobs.list()[0] if app.state.ctx.jobs.list() else None
    path = "/api/events" + (f"?job={rec['id']}" if rec else "")
    status, res, headers = call(url, "GET", path, stream=True)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    seen = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not ({"jobs", "job"} <= set(seen) if rec else "jobs" in seen):
        line = res.readline().decode()
        if line.startswith("event: "):
            seen.append(line[7:].strip())
    res.close()
    assert "jobs" in seen and (rec is None or "job" in seen)


# ----------------------------------------------------------------------------------------------------
# Views of what the CLI left in the workspace.


def test_a_model_folder_shows_curves_overfitting_previews_and_checkpoints(server):
    """A model folder in the CLI's layout (model_dir.py): validation falls to step 40, then rises while
    training loss falls, so training's own rule marks over-fitting from step 40; best/ holds step 40,
    timeline/ and checkpoints/ the kept steps."""
    import torch

    from deepfake.evaluate.plots import overfit_step
    from deepfake.model_dir import AUTOENCODER, save_tensors
    from deepfake.train.metrics import write_metrics

    url, ws, *_ = server
    m = ws / "models" / "hand"
    (m / "previews").mkdir(parents=True)
    (m / "config.json").write_text(json.dumps({"preset": "tiny", "steps": 200, "batch": 4, "overfit_patience": 3,
                                               "keep_every": 20}))
    val = {10: 3.0, 20: 2.0, 30: 1.5, 40: 1.0, 50: 1.2, 60: 1.4, 70: 1.6}
    rows = [{"step": s, "loss": 4.0 - s / 40, "loss_a": 2.0 - s / 80, "loss_b": 2.0 - s / 80, "faces_per_s": 30.0,
             "gpu_busy": 0.8, "wall_s": s / 4, "val_loss": val[s], "val_a": val[s] / 2, "val_b": val[s] / 2}
            for s in sorted(val)]
    write_metrics(m / "metrics.csv", rows)
    for s in (10, 20):
        (m / "previews" / f"step_{s:06d}.png").write_bytes(b"png")
    weights = {"w": torch.zeros(1)}
    for folder, step in (("timeline/step_000020", 20), ("timeline/step_000040", 40), ("checkpoints/step_000060", 60),
                         ("checkpoints/step_000070", 70), ("best", 40), (".", 70)):
        (m / folder).mkdir(parents=True, exist_ok=True)
        save_tensors(m / folder / AUTOENCODER, weights, {"step": str(step)})
    (m / "checkpoints" / "step_000050").mkdir()  # an incomplete snapshot: no weights, not kept
    status, v, _ = call(url, "GET", "/api/models/hand?skip=15&smooth=0.5")
    assert status == 200
    expected = overfit_step({"train": ([r["step"] for r in rows], [r["loss"] for r in rows]),
                             "val": ([r["step"] for r in rows], [r["val_loss"] for r in rows])}, 3)
    assert v["overfit_step"] == expected == 40
    assert "over-fitting from step 40" in v["charts"]["loss"] and "best 40" in v["charts"]["loss"]
    assert v["step"] == 70 and v["target"] == 200 and v["eta_s"] == pytest.approx((200 - 70) / 4)  # 0.25 s a step
    assert [p["step"] for p in v["previews"]] == [10, 20]
    assert v["checkpoints"] == [20, 40, 60, 70]
    assert [k["timeline"] for k in v["kept"]] == [True, True, False, False]
    assert v["best"] == {"step": 40, "val_loss": 1.0, "path": "best/"} and v["last_saved"] == 70
    assert v["keep_every"] == 20 and v["timelines"] == []
    listed = call(url, "GET", "/api/workspace")[1]["models"]
    assert [(x["name"], x["step"]) for x in listed] == [("hand", 70)]


def test_an_evaluate_timeline_folder_shows_its_picture_and_marks(server):
    url, ws, *_ = server
    d = ws / "outputs" / "timeline_hand"
    d.mkdir(parents=True)
    (d / "timeline.png").write_bytes(b"png")
    (d / "timeline.json").write_text(json.dumps({"steps": [20, 40, 60], "marks": {"best": 40, "under": 20, "over": None}}))
    status, r, _ = call(url, "GET", "/api/reports?path=outputs/timeline_hand")
    assert status == 200 and r["kind"] == "timeline" and r["html"] == ""
    assert r["timeline"]["url"].startswith("/api/file?path=outputs/timeline_hand/timeline.png")
    assert r["timeline"]["steps"] == [20, 40, 60] and r["timeline"]["marks"]["best"] == 40
    kinds = {f["name"]: f["kind"] for f in call(url, "GET", "/api/workspace")[1]["outputs"]}
    assert kinds["timeline_hand"] == "timeline"
    # With the timeline.md that evaluate --timeline writes, its marks and rules show; the picture once.
    (d / "timeline.md").write_text("# Timeline\n\n![timeline](timeline.png)\n\n- **best**: step 40\n")
    r = call(url, "GET", "/api/reports?path=outputs/timeline_hand")[1]
    assert "<strong>best</strong>: step 40" in r["html"] and "<img" not in r["html"]


def test_reports_render_tables_plots_and_the_ranked_sweep(server):
    url, ws, outside, _ = server
    d = ws / "outputs" / "sweep_act"
    d.mkdir(parents=True)
    (d / "results.md").write_text("# Sweep results\n\n| rank | variant |\n|---|---|\n| 1 | **gelu** |\n\n"
                                  "![quality vs cost](quality_vs_cost.png)\n\n![stolen](../../../secret.txt)\n<script>x</script>\n")
    (d / "quality_vs_cost.png").write_bytes(b"png")
    (d / "results.csv").write_text("rank,variant,status,ssim,baseline,overrides\n1,gelu,done,0.7,False,act=gelu\n"
                                   "2,base,done,0.6,True,\n")
    status, r, _ = call(url, "GET", "/api/reports?path=outputs/sweep_act")
    assert status == 200 and r["kind"] == "sweep"
    assert [row["variant"] for row in r["ranked"]] == ["gelu", "base"]
    assert "<table" in r["html"] and "<strong>gelu</strong>" in r["html"]
    assert 'src="/api/file?path=outputs/sweep_act/quality_vs_cost.png"' in r["html"]
    assert "secret" not in r["html"].split("stolen")[0][-200:] and "<script>" not in r["html"]
    kinds = {f["name"]: f["kind"] for f in call(url, "GET", "/api/workspace")[1]["outputs"]}
    assert kinds["sweep_act"] == "sweep"


def test_an_upload_cut_off_midway_leaves_nothing(server):
    import socket

    url, ws, *_ = server
    host, port = url.split("//")[1].strip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"PUT /api/upload?name=cut.mp4 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n" + b"\0" * 1000)
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while leftovers(ws) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers(ws) == []
