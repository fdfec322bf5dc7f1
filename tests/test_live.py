"""`deepfake live` on a real clip played as live: frames swapped, the newest frame winning over a slow
consumer (dropped frames counted, latency bounded), tracking instead of detecting every frame, the
visible mark, the output file tagged synthetic, every runtime and model kind, and each bad input."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import onnx
import pytest

from conftest import cut_clip
from deepfake.cli import main
from deepfake.io.video import VideoReader
from deepfake.config import LiveConfig
from deepfake.live.mailbox import Closed, Latest
from deepfake.live.run import run_live
from deepfake.provenance.label import read_provenance
from trained_pair import trained_model

STATS_KEYS = {"frames_in", "frames_swapped", "frames_dropped", "fps", "latency_ms", "stages_ms"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, faceset_a, faceset_b):
    return trained_model(tmp_path_factory, faceset_a, faceset_b)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """Two seconds of B's clip past the frames her faceset was made of, 30 fps."""
    return cut_clip("d14.mp4", tmp_path_factory.mktemp("clip") / "b.mp4", start=200, stop=260)


def _frames(path):
    with VideoReader(path) as r:
        return [rgb for _, _, rgb in r]


def test_newest_item_wins_and_drops_are_counted():
    box = Latest()
    for i in range(5):
        box.put(i)
    assert box.take(0.1) == 4 and box.dropped == 4
    with pytest.raises(TimeoutError):
        box.take(0.01)
    box.put(5)
    box.close()
    assert box.take(0.1) == 5
    with pytest.raises(Closed):
        box.take(0.1)


@pytest.mark.parametrize("kind", ["folder", "torch", "dfm", "onnx"])
def test_live_swaps_a_clip_played_as_live(kind, model_dir, clip, tmp_path, capsys):
    model = str(model_dir)
    extra = []
    if kind == "torch":
        extra = ["--runtime", "torch"]
    elif kind in ("dfm", "onnx"):  # exported files: DFL's crop and BGR, or ours and RGB
        model = str(tmp_path / f"ab.{kind}")
        assert main(["export", "-m", str(model_dir), "-o", model]) == 0
    out, stats_file = tmp_path / "live.mp4", tmp_path / "stats.json"
    assert main(["live", str(clip), "-m", model, "-o", str(out), "--stats", str(stats_file), "-q", *extra]) == 0
    stats = json.loads(stats_file.read_text())
    assert set(stats) == STATS_KEYS and set(stats["latency_ms"]) == {"p50", "p95"}
    print(f"\n{kind}: {stats}")
    assert stats["frames_in"] == 60
    assert stats["frames_swapped"] >= 0.5 * stats["frames_in"]
    assert stats["frames_swapped"] + stats["frames_dropped"] <= stats["frames_in"]
    assert 0 < stats["latency_ms"]["p50"] <= stats["latency_ms"]["p95"] < 1000
    assert {"detect", "track", "align", "model", "compose", "mark", "output"} <= set(stats["stages_ms"])

    # The file: tagged synthetic, real time kept (a frame stands in for those dropped before it).
    record = read_provenance(out)
    assert record and record["synthetic"] and record["live"] and record["model_step"] == 300
    if kind == "folder":  # issue 31's invisible mark, embedded on the encoder thread with swap's payload
        from deepfake.provenance.credentials import model_identity
        from deepfake.provenance.watermark import payload_for, payload_hex

        assert record["invisible_mark"] == payload_hex(payload_for(model_identity(model_dir)["sha256"]))
        assert stats["stages_ms"]["invisible_mark"] > 0
        # ... and signed Content Credentials; `detect` finds both.
        capsys.readouterr()
        assert main(["detect", str(out), "--json"]) == 0
        (report,) = json.loads(capsys.readouterr().out)["files"]
        assert report["credentials"]["valid"] and report["credentials"]["actions"][0] == "c2pa.opened"
        assert report["mark"]["found"] and report["mark"]["payload"] == record["invisible_mark"]
    got, src = _frames(out), _frames(clip)
    assert len(src) - 5 <= len(got) <= len(src)
    # The face region changed, the background did not, and the mark is in the corner.
    h, w = src[0].shape[:2]
    diff = np.abs(got[-1].astype(float) - src[len(got) - 1].astype(float)).mean(-1)  # (H, W)
    assert diff[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3].mean() > 8  # the face
    assert diff[: h // 8, w // 4 : 3 * w // 4].mean() < 4  # the wall above the head
    corner = got[-1][h - 24 :, w - 110 :]
    assert (corner.min(-1) > 200).mean() > 0.05 and (corner.max(-1) < 60).mean() > 0.3  # white text on dark


def test_a_slow_consumer_drops_frames_instead_of_queueing_them(model_dir, clip):
    """An output that takes 100 ms a frame (3 source frames): the newest frame wins, so most frames are
    dropped and the latency stays near one frame's work instead of growing over the clip."""
    result = run_live(str(clip), None, model_dir, LiveConfig(detect_every=5), progress=False,
                      on_frame=lambda rgb: time.sleep(0.1))
    s = result.stats.as_dict()
    print(f"\nslow output: {s}")
    assert s["frames_in"] == 60 and s["frames_dropped"] >= 30
    assert s["frames_swapped"] + s["frames_dropped"] == 60
    assert s["latency_ms"]["p95"] < 500  # queued, the last frames would wait 60 x 100 ms - 2 s = 4 s
    # Landmarks were tracked: the detector ran on about one in 6 of the frames the landmark stage took.
    ms = result.stats.stages.ms
    assert len(ms["detect"]) <= len(ms["align"]) / 5 + 2


def test_no_watermark_leaves_the_corner_and_says_why(model_dir, clip, tmp_path, capsys):
    out = tmp_path / "plain.mp4"
    assert main(["live", str(clip), "-m", str(model_dir), "-o", str(out), "--no-watermark", "--frames", "20", "-q"]) == 0
    err = capsys.readouterr().err
    assert sum("watermark off" in line for line in err.splitlines()) == 1
    got, src = _frames(out), _frames(clip)
    h, w = src[0].shape[:2]
    last = len(got) - 1
    assert np.abs(got[last][h - 24 :, w - 110 :].astype(float) - src[last][h - 24 :, w - 110 :]).mean() < 4
    assert read_provenance(out)["synthetic"]  # the file keeps its tag either way


# ----------------------------------------------------------------------------------------------------
# Bad input: one line each, nothing half-written.


def _not_dfm(path):
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64, 64, 3])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 64, 64, 3])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save(onnx.helper.make_model(graph), str(path))
    return path


def test_bad_inputs_fail_in_one_line(model_dir, clip, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    m = str(model_dir)
    cases = [
        (["--camera", "9", "-m", m], "camera 9: cannot be opened"),
        (["/dev/video9", "-m", m], "/dev/video9: no such camera"),
        (["-m", m], "no source"),
        ([str(tmp_path / "missing.mp4"), "-m", m], "missing.mp4: file not found"),
        ([str(clip), "-m", str(tmp_path / "empty")], "config.json: missing"),
        ([str(clip), "-m", str(_not_dfm(tmp_path / "plain.onnx"))], "not a DFM model"),
        ([str(clip), "-m", m, "--virtual-camera"], "--virtual-camera: no virtual camera device"),
        ([str(clip), "-m", m, "--stats", str(tmp_path / "s.txt")], "use a .json name"),
    ]
    for args, reason in cases:
        assert main(["live", *args, "-o", str(tmp_path / "out.mp4"), "-q"]) == 2, args
        err = capsys.readouterr().err.strip()
        assert reason in err and len(err.splitlines()) == 1, (args, err)
    assert not (tmp_path / "out.mp4").exists() and not list(tmp_path.glob(".out*"))


def test_outputs_are_checked_before_the_run_and_a_failed_run_leaves_no_folder(clip, tmp_path, capsys):
    """A folder where a file is to be written is refused before the model is read; a run that fails removes
    the folders it made for its outputs."""
    for name in ("dir.mp4", "dir.json", "ok.mp4.live.json"):
        (tmp_path / name).mkdir()
    missing = str(tmp_path / "no-model")
    cases = [
        (["-o", str(tmp_path / "dir.mp4")], "dir.mp4: is a folder"),
        (["--stats", str(tmp_path / "dir.json")], "dir.json: is a folder"),
        (["-o", str(tmp_path / "ok.mp4")], "ok.mp4.live.json: is a folder"),
        (["-o", str(tmp_path / "new" / "a" / "out.mp4"), "--stats", str(tmp_path / "new" / "b" / "s.json")],
         "no-model: not found"),
    ]
    for args, reason in cases:
        assert main(["live", str(clip), "-m", missing, *args, "-q"]) == 2, args
        err = capsys.readouterr().err.strip()
        assert reason in err and len(err.splitlines()) == 1, (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.json", "dir.mp4", "ok.mp4.live.json"]


def test_an_exported_file_swaps_and_records_its_own_direction(model_dir, clip, tmp_path, capsys):
    """The file holds one decoder: live records the direction it was exported with, refuses a --direction
    it was not, and records "unknown" for a file made elsewhere (our .dfm without our metadata)."""
    ba, foreign = tmp_path / "ba.dfm", tmp_path / "foreign.dfm"
    assert main(["export", "-m", str(model_dir), "-o", str(ba), "--direction", "b2a"]) == 0
    proto = onnx.load(str(ba))
    del proto.metadata_props[:]
    onnx.save(proto, str(foreign))
    for model, direction in ((ba, "b2a"), (foreign, "unknown")):
        out = tmp_path / f"{model.stem}.mp4"
        assert main(["live", str(clip), "-m", str(model), "-o", str(out), "--frames", "10", "-q"]) == 0
        assert read_provenance(out)["direction"] == direction
        assert json.loads((tmp_path / f"{out.name}.live.json").read_text())["direction"] == direction
    capsys.readouterr()
    for model, reason in ((ba, "exported with --direction b2a"), (foreign, "a file made elsewhere")):
        out = tmp_path / "refused.mp4"
        assert main(["live", str(clip), "-m", str(model), "-o", str(out), "--direction", "a2b", "-q"]) == 2
        err = capsys.readouterr().err.strip()
        assert f"{model.name}: {reason}" in err and "not --direction a2b" in err and len(err.splitlines()) == 1, err
        assert not out.exists()


def test_a_camera_that_stops_leaves_no_file(model_dir, clip, tmp_path):
    """A capture device that stops after 60 frames (OpenCV's capture of the clip stands in for the camera)."""
    from deepfake.errors import BadInputError
    from deepfake.live.sources import CaptureSource

    source = CaptureSource(cv2.VideoCapture(str(clip)), "camera 0")
    out = tmp_path / "rec.mp4"
    with pytest.raises(BadInputError, match="camera 0: stopped delivering frames after 60"):
        run_live(source, None, model_dir, LiveConfig(), output=out, progress=False)
    assert not out.exists() and not list(tmp_path.iterdir())
