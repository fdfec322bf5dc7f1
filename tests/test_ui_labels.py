"""The polygon label editor's API against a live server: labels.json round trips through the page's
endpoints as deepfake.segment.labels reads it, a bad polygon or body is a 4xx with one line and changes
nothing, every faceset, face and model the endpoints take stays inside the workspace, and a mask
model's prediction comes back as a mask of the face's size. Mask jobs plan the CLI's own argv."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from test_ui_api import assert_refused, call  # noqa: E402

from deepfake.ui.app import UiConfig  # noqa: E402
from deepfake.ui.server import running  # noqa: E402

SIZE = 64
SQUARE = [[8.0, 8.0], [56.0, 8.0], [56.0, 56.0], [8.0, 56.0]]
HOLE = [[20.5, 20.0], [30.0, 20.0], [30.0, 30.25]]


def make_faceset(root: Path, n: int = 3) -> None:
    """A faceset as extract leaves one: faces, hull masks and a manifest of n records."""
    import cv2

    from deepfake.faceset import FaceRecord, new_header, write_manifest

    (root / "faces").mkdir(parents=True)
    (root / "masks").mkdir()
    lm = [[32.0, 32.0]] * 68
    recs = []
    for i in range(n):
        cv2.imwrite(str(root / "faces" / f"{i:06d}.png"), np.full((SIZE, SIZE, 3), 60 + 40 * i, np.uint8))
        cv2.imwrite(str(root / "masks" / f"{i:06d}.png"), np.full((SIZE, SIZE), 255, np.uint8))
        recs.append(FaceRecord(file=f"faces/{i:06d}.png", mask=f"masks/{i:06d}.png", source="clip.mp4", source_id="x",
                               frame=i, time=i / 30, face_index=0, bbox=[0, 0, 1, 1], landmarks=lm, aligned_landmarks=lm,
                               matrix=[[1, 0, 0], [0, 1, 0]], size=SIZE, score=1.0, blur=100.0,
                               pose={"yaw": 0.0, "pitch": 0.0, "roll": 0.0}, embedding=[0.0] * 128))
    write_manifest(root, new_header({"size": SIZE, "coverage": 0.75}), recs)


def make_mask_model(folder: Path, step: int = 3) -> None:
    """A small untrained segmenter saved as `mask train` saves one."""
    from deepfake.segment.checkpoint import SEGMENTER, write_config
    from deepfake.config import MaskTrainConfig, SegmenterConfig
    from deepfake.model_dir import save_tensors
    from deepfake.models.segmenter import build_segmenter

    cfg = MaskTrainConfig(model=SegmenterConfig(resolution=32, base_channels=4, max_channels=8, depth=2))
    folder.mkdir(parents=True)
    write_config(folder, cfg)
    save_tensors(folder / SEGMENTER, build_segmenter(cfg.model).state_dict(), {"step": str(step)})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ui_labels_ws")
    outside = tmp_path_factory.mktemp("labels_outside")
    make_faceset(ws / "facesets" / "f")
    make_faceset(outside / "elsewhere")
    (ws / "facesets" / "link").symlink_to(outside / "elsewhere", target_is_directory=True)
    # A face of f whose picture is a link out of the workspace: listed, never read.
    (outside / "secret.png").write_bytes((ws / "facesets" / "f" / "faces" / "000000.png").read_bytes())
    (ws / "facesets" / "f" / "faces" / "000002.png").unlink()
    (ws / "facesets" / "f" / "faces" / "000002.png").symlink_to(outside / "secret.png")
    make_mask_model(ws / "models" / "seg")
    (ws / "models" / "ab").mkdir(parents=True)
    (ws / "models" / "ab" / "config.json").write_text(json.dumps({"steps": 10, "model": {}}))
    with running(UiConfig(ws, port=0, stream_seconds=3, poll_s=0.1)) as (url, app):
        yield url, ws


def labels_file(ws: Path) -> Path:
    return ws / "facesets" / "f" / "labels.json"


def put(url: str, body, name: str = "f"):
    return call(url, "PUT", f"/api/facesets/{name}/labels", body, headers={"Content-Type": "application/json"})[:2]


def test_a_label_round_trips_into_labels_json(server):
    from deepfake.faceset import read_faceset
    from deepfake.segment.labels import read_labels

    url, ws = server
    status, out = put(url, {"face": "faces/000001.png", "include": [SQUARE], "exclude": [HOLE]})
    assert status == 200, out
    assert out["include"] == [SQUARE] and out["exclude"] == [HOLE] and out["labelled"] == 1
    on_disk = read_labels(read_faceset(ws / "facesets" / "f"))  # what `mask train` will read
    np.testing.assert_allclose(on_disk["faces/000001.png"].include[0], SQUARE)
    np.testing.assert_allclose(on_disk["faces/000001.png"].exclude[0], HOLE)
    status, got = call(url, "GET", "/api/facesets/f/labels")[:2]
    assert status == 200 and got["faces"] == {"faces/000001.png": {"include": [SQUARE], "exclude": [HOLE]}}
    status, page = call(url, "GET", "/api/facesets/f/faces")[:2]
    assert status == 200 and page["total"] == 3 and page["labelled"] == 1
    first = page["faces"][0]  # labelled faces come first
    assert first["file"] == "faces/000001.png" and first["include"] == [SQUARE] and first["size"] == SIZE
    assert first["url"].startswith("/api/file?path=facesets/f/faces/000001.png") and first["hull"]
    # A second face is added beside the first; empty polygons remove a face's label.
    assert put(url, {"face": "faces/000000.png", "exclude": [HOLE]})[0] == 200
    assert set(json.loads(labels_file(ws).read_text())["faces"]) == {"faces/000000.png", "faces/000001.png"}
    status, out = put(url, {"face": "faces/000000.png", "include": [], "exclude": []})
    assert status == 200 and out["labelled"] == 1
    assert set(json.loads(labels_file(ws).read_text())["faces"]) == {"faces/000001.png"}


@pytest.mark.parametrize("body, code, words", [
    (b"{not json", 400, "body: not valid JSON"),
    ([1, 2], 400, "body: expected"),
    ({"include": [SQUARE]}, 400, "body: expected"),
    ({"face": "faces/000001.png", "include": [SQUARE], "colour": "red"}, 400, "body: expected"),
    ({"face": "faces/999999.png", "include": [SQUARE]}, 404, "not a face of faceset f"),
    ({"face": "../../labels_outside/secret.png", "include": [SQUARE]}, 404, "not a face"),
    ({"face": "faces/000001.png", "include": [[[8, 8], [70, 8], [8, 40]]]}, 400, "point (70, 8) is outside the 64 px face"),
    ({"face": "faces/000001.png", "include": [[[8, 8], [-1, 8], [8, 40]]]}, 400, "outside the 64 px face"),
    ({"face": "faces/000001.png", "include": [[[8, 8], [20, 8]]]}, 400, "needs at least 3 points"),
    ({"face": "faces/000001.png", "include": [[[8, 8], [20, "x"], [8, 40]]]}, 400, "is not [x, y] numbers"),
    ({"face": "faces/000001.png", "include": [[[8, 8], [16, 16], [24, 24]]]}, 400, "has no area"),
    ({"face": "faces/000001.png", "include": "square"}, 400, "expected a list of polygons"),
])
def test_bad_labels_are_refused_with_one_line_and_change_nothing(server, body, code, words):
    url, ws = server
    if not labels_file(ws).is_file():
        put(url, {"face": "faces/000001.png", "include": [SQUARE]})
    before = labels_file(ws).read_bytes()
    status, out = put(url, body)
    msg = assert_refused(status, out, code)
    assert words in msg and str(ws) not in msg
    assert labels_file(ws).read_bytes() == before
    assert not [p for p in labels_file(ws).parent.iterdir() if p.name.startswith(".")]  # no temp file left


@pytest.mark.parametrize("name", ["..", "a/../..", ".hidden", "-rf", "link", "missing"])
def test_label_endpoints_refuse_facesets_outside_or_missing(server, name):
    url, ws = server
    quoted = quote(name, safe="")
    for method, path, body in (("GET", f"/api/facesets/{quoted}/faces", None),
                               ("GET", f"/api/facesets/{quoted}/labels", None),
                               ("PUT", f"/api/facesets/{quoted}/labels", {"face": "faces/000000.png", "include": [SQUARE]}),
                               ("GET", f"/api/facesets/{quoted}/predict?face=faces/000000.png&model=seg", None)):
        status, out, _ = call(url, method, path, body)
        assert_refused(status, out, (400, 404))
    assert not ((ws / "facesets" / "link").resolve() / "labels.json").exists()


def test_a_prediction_is_a_mask_of_the_face(server):
    import cv2

    url, ws = server
    status, png, headers = call(url, "GET", "/api/facesets/f/predict?face=faces/000001.png&model=seg")
    assert status == 200 and headers["content-type"] == "image/png" and headers["x-mask-step"] == "3"
    mask = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (SIZE, SIZE) and mask.dtype == np.uint8


@pytest.mark.parametrize("query, code, words", [
    ("face=faces/000002.png&model=seg", 400, "outside facesets/"),  # the face's picture links outside
    ("face=faces/999999.png&model=seg", 404, "not a face"),
    ("face=faces/000001.png&model=ab", 400, "not a mask model"),
    ("face=faces/000001.png&model=..", 400, "a name is"),
    ("face=faces/000001.png&model=nothing", 404, "not found"),
    ("face=faces/000001.png", 400, "model"),
    ("model=seg", 400, "face"),
])
def test_predictions_refuse_bad_faces_and_models(server, query, code, words):
    url, _ = server
    status, out, _ = call(url, "GET", f"/api/facesets/f/predict?{query}")
    assert words in assert_refused(status, out, code)


@pytest.mark.parametrize("query", ["offset=-1", "limit=0", "limit=100000", "offset=many"])
def test_bad_face_pages_are_refused(server, query):
    url, _ = server
    assert_refused(*call(url, "GET", f"/api/facesets/f/faces?{query}")[:2], 400)


def test_mask_jobs_plan_the_clis_argv_and_refuse_the_wrong_model_kind(server):
    from deepfake.ui import specs
    from deepfake.ui.workspace import Workspace

    url, ws = server
    w = Workspace.open(ws)
    plan = specs.parse({"kind": "mask_train", "facesets": ["f"], "model": "seg", "more_steps": 10,
                        "pretrain_steps": 2, "device": "cpu"}).plan(w, lambda d: d or "cpu")
    assert plan.argv[:3] == ["mask", "train", str(w.root / "facesets" / "f")]
    assert f"--out={w.root / 'models' / 'seg'}" in plan.argv and "--steps=13" in plan.argv  # 3 saved + 10
    assert "--pretrain-steps=2" in plan.argv and plan.resource == "cpu" and plan.title.startswith("mask resume")
    fresh = specs.parse({"kind": "mask_train", "facesets": ["f"], "model": "new", "more_steps": 10}).plan(w, lambda d: "cpu")
    assert "--steps=10" in fresh.argv and fresh.title.startswith("mask train")
    apply = specs.parse({"kind": "mask_apply", "faceset": "f", "model": "seg"}).plan(w, lambda d: "cpu")
    assert apply.argv == ["mask", "apply", str(w.root / "facesets" / "f"), f"--model={w.root / 'models' / 'seg'}"]
    (ws / "inputs" / "x.png").write_bytes(b"png")
    swap = specs.parse({"kind": "swap", "model": "ab", "input": "inputs/x.png", "mask": "segmenter*hull",
                        "mask_model": "seg", "mask_region": "full"}).plan(w, lambda d: "cpu")
    assert f"--mask-model={w.root / 'models' / 'seg'}" in swap.argv and "--mask=segmenter*hull" in swap.argv
    assert "--mask-region=full" in swap.argv
    for spec, words in (({"kind": "mask_train", "facesets": ["f"], "model": "ab"}, "not a mask model"),
                        ({"kind": "swap", "model": "ab", "input": "inputs/x.png", "mask_model": "ab"}, "not a mask model"),
                        ({"kind": "swap", "model": "ab", "input": "inputs/x.png", "mask_model": "../x"}, "a name is"),
                        ({"kind": "mask_train", "facesets": ["../f"], "model": "m"}, "a name is"),
                        ({"kind": "mask_train", "facesets": ["link"], "model": "m"}, "outside"),
                        ({"kind": "mask_train", "facesets": ["f"], "model": "m", "steps": 5, "more_steps": 5}, "give one"),
                        ({"kind": "mask_apply", "faceset": "f", "model": "ab"}, "not a mask model"),
                        ({"kind": "train", "a": "f", "b": "f", "model": "seg"}, "not a face-swap model"),
                        ({"kind": "swap", "model": "seg", "input": "inputs/x.mp4"}, "not a face-swap model")):
        status, out, _ = call(url, "POST", "/api/jobs", spec)
        assert words in assert_refused(status, out, (400, 404)), spec
    listed = call(url, "GET", "/api/workspace")[1]
    assert [m["name"] for m in listed["models"]] == ["ab"]
    assert [(m["name"], m["step"]) for m in listed["mask_models"]] == [("seg", 3)]
