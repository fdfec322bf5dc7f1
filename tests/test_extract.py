"""`deepfake extract` on real faces: detection, per-frame results, small faces, identity filter,
appending without duplicates, and the manifest schema (the contract with train and swap)."""

from __future__ import annotations

import json
import os
import signal
import sys

import cv2
import numpy as np
import pytest

from conftest import media_path
from deepfake.cli import main
from deepfake.config import ExtractConfig
from deepfake.errors import OutputError
from deepfake.extract import extract
from deepfake.faces.align import canonical_points, transform_points
from deepfake.faces.analyzer import FaceAnalyzer
from deepfake.faces.landmarks import interocular
from deepfake.faceset import MANIFEST, SCHEMA, SCHEMA_VERSION, read_faceset
from deepfake.io.images import read_image
from deepfake.io.video import VideoReader


@pytest.fixture(scope="module")
def analyzer():
    return FaceAnalyzer(ExtractConfig(size=128))


def _frames(clip: str, indices: list[int]) -> dict[int, np.ndarray]:
    wanted = set(indices)
    with VideoReader(media_path(clip), stop=max(indices) + 1) as v:
        return {i: rgb for i, _, rgb in v if i in wanted}


def _sane(face, frame_shape) -> None:
    """Landmarks inside the frame, eyes level-ish, a plausible face size, and aligned close to the
    canonical face."""
    h, w = frame_shape[:2]
    lm = face.landmarks
    assert lm.shape == (68, 2)
    assert (lm[:, 0] > -5).all() and (lm[:, 0] < w + 5).all() and (lm[:, 1] > -5).all() and (lm[:, 1] < h + 5).all()
    x0, y0, x1, y1 = face.bbox
    iod = interocular(lm)
    assert 0.2 * (x1 - x0) < iod < 0.7 * (x1 - x0)
    right_eye, left_eye = lm[36:42].mean(0), lm[42:48].mean(0)
    assert right_eye[0] < left_eye[0]  # subject's right eye is on the image left
    assert lm[30, 1] > right_eye[1] and lm[8, 1] > lm[57, 1] > lm[30, 1]  # eyes above nose above mouth above chin
    err = np.linalg.norm(face.aligned_landmarks[17:] - canonical_points(face.size, 0.75)[17:], axis=1).mean()
    assert err < 0.06 * face.size
    assert abs(face.pose["yaw"]) < 35 and abs(face.pose["roll"]) < 25


def test_face_found_on_d9_and_none_on_the_dog(analyzer):
    faces = analyzer.analyze(read_image(media_path("d9.jpg")))
    assert len(faces) == 1
    _sane(faces[0], (720, 720))
    assert faces[0].aligned.shape == (128, 128, 3) and faces[0].mask.shape == (128, 128)
    assert faces[0].embedding.shape == (128,)
    assert analyzer.analyze(read_image(media_path("s33.jpg"))) == []


def test_every_frame_of_a_clip_yields_one_sane_face(faceset_a):
    fs = read_faceset(faceset_a)
    assert [r.frame for r in fs.records] == list(range(60))  # one face per frame, none missed
    assert all(r.face_index == 0 for r in fs.records)
    for r in fs.records:
        lm = np.asarray(r.landmarks)
        aligned = transform_points(lm, np.asarray(r.matrix))
        assert np.abs(aligned - np.asarray(r.aligned_landmarks)).max() < 0.05
        assert 80 < interocular(lm) < 200  # d6 is a 480 px talking head
        assert abs(r.pose["yaw"]) < 30 and abs(r.pose["pitch"]) < 30


def test_small_face_clip_s18(tmp_path):
    """s18 is a 720p wide shot. Every third frame of its first second yields the face; and the same frames
    shrunk 4x into a 720p canvas (a ~60 px face, too small for HOG at the 640 px detection scale)
    are still found by the upsampled second pass."""
    frames = _frames("s18.mp4", list(range(0, 30, 3)))
    a = FaceAnalyzer(ExtractConfig(size=64))
    smoother = a.new_smoother()
    for i, rgb in frames.items():
        faces = a.analyze(rgb, smoother, i / 30)
        assert len(faces) == 1, f"frame {i}"
        _sane(faces[0], rgb.shape)
    small_sizes = []
    video_smoother = a.new_smoother()
    for n, (i, rgb) in enumerate(frames.items()):
        canvas = np.full_like(rgb, 90)
        small = cv2.resize(rgb, (320, 180), interpolation=cv2.INTER_AREA)
        canvas[400:580, 100:420] = small
        # As a still (first two frames) and as video: found on the first frame, then tracked.
        for faces in ([a.analyze(canvas)] if n < 2 else []) + [a.analyze(canvas, video_smoother, i / 30)]:
            assert len(faces) == 1, f"small face missed in frame {i}"
            x0, y0, x1, y1 = faces[0].bbox
            assert 100 <= x0 and x1 <= 420 and 400 <= y0 and y1 <= 580
            small_sizes.append(y1 - y0)
    assert max(small_sizes) < 80  # it really was a small face


def test_identity_filter_on_a_two_person_folder(tmp_path, monkeypatch):
    """Also: the manifest's embeddings come from batches across images and equal dlib's own."""
    import dlib

    from deepfake.faces.dlib_models import RESNET, dlib_model_path
    from deepfake.faces.identity import FaceEmbedder

    batches = []
    embed_chips = FaceEmbedder.embed_chips
    monkeypatch.setattr(FaceEmbedder, "embed_chips", lambda self, chips: batches.append(len(chips)) or embed_chips(self, chips))
    folder = tmp_path / "two_people"
    folder.mkdir()
    for clip, tag in (("d6.mp4", "a"), ("d14.mp4", "b")):
        for i, rgb in _frames(clip, [100, 250, 400]).items():
            cv2.imwrite(str(folder / f"{tag}_{i}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    ref = tmp_path / "ref.jpg"
    cv2.imwrite(str(ref), cv2.cvtColor(_frames("d6.mp4", [700])[700], cv2.COLOR_RGB2BGR))
    out = tmp_path / "fs"
    summary = extract([folder], out, ExtractConfig(size=64, reference=[str(ref)], workers=1), progress=False)
    assert summary.faces_found == 6
    assert summary.faces_kept == 3 and summary.rejected_identity == 3
    kept = read_faceset(out).records
    assert sorted(r.source.split("/")[-1] for r in kept) == ["a_100.jpg", "a_250.jpg", "a_400.jpg"]
    assert batches == [1, 6]  # the reference, then all six images' faces in one batch
    resnet = dlib.face_recognition_model_v1(str(dlib_model_path(RESNET)))
    for r in kept:
        rgb = read_image(r.source)
        points = dlib.points([dlib.point(int(round(x)), int(round(y))) for x, y in r.landmarks])
        shape = dlib.full_object_detection(dlib.rectangle(*(int(v) for v in r.bbox)), points)
        ref = np.asarray(resnet.compute_face_descriptor(rgb, shape))
        ours = np.asarray(r.embedding)
        assert ours @ ref / (np.linalg.norm(ours) * np.linalg.norm(ref)) >= 0.9999


def test_appending_never_duplicates_and_the_manifest_schema(tmp_path):
    out = tmp_path / "fs"
    d9, clip = media_path("d9.jpg"), media_path("d18.mp4")
    cfg = ExtractConfig(size=96, frames=12, every=3)
    first = extract([d9, clip], out, cfg, progress=False)
    assert first.faces_kept == 5 and first.frames_read == 5  # d9 + frames 0, 3, 6, 9
    again = extract([clip, d9], out, cfg, progress=False)  # same inputs, other order
    assert again.faces_kept == 0 and again.duplicates == 5
    more = extract([clip], out, ExtractConfig(size=96, frames=12, every=2), progress=False)
    assert more.faces_kept == 4 and more.duplicates == 2  # frames 2, 4, 8, 10 are new; 0 and 6 are known

    lines = (out / MANIFEST).read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    assert header["schema"] == SCHEMA and header["version"] == SCHEMA_VERSION
    assert header["settings"]["size"] == 96 and header["settings"]["coverage"] == 0.75
    records = [json.loads(line) for line in lines[1:]]
    assert len(records) == 9
    keys = [(r["source_id"], r["frame"], r["face_index"]) for r in records]
    assert len(set(keys)) == len(keys)
    assert len({r["file"] for r in records}) == len(records)
    for r in records:
        for k in ("file", "mask", "source", "frame", "time", "bbox", "landmarks", "aligned_landmarks",
                  "matrix", "size", "score", "blur", "pose", "embedding"):
            assert k in r, k
        assert np.asarray(r["landmarks"]).shape == (68, 2)
        assert np.asarray(r["aligned_landmarks"]).shape == (68, 2)
        assert np.asarray(r["matrix"]).shape == (2, 3)
        assert len(r["bbox"]) == 4 and len(r["embedding"]) == 128 and r["size"] == 96
        assert set(r["pose"]) == {"yaw", "pitch", "roll"}
        if r["source"].endswith(".jpg"):
            assert r["frame"] is None and r["time"] is None
        else:
            assert r["time"] == pytest.approx(r["frame"] / 30.0, abs=1e-3)
        face = cv2.imread(str(out / r["file"]))
        mask = cv2.imread(str(out / r["mask"]), cv2.IMREAD_UNCHANGED)
        assert face.shape == (96, 96, 3) and mask.shape == (96, 96)
        assert set(np.unique(mask)) <= {0, 255} and 0.3 < (mask > 0).mean() < 0.95
    assert (out / "extract_config.json").is_file()
    # A different crop size cannot be mixed into the same faceset.
    with pytest.raises(OutputError):
        extract([d9], out, ExtractConfig(size=128), progress=False)


def test_cli_exit_codes(tmp_path, capsys):
    assert main(["extract", str(media_path("d9.jpg")), "-o", str(tmp_path / "ok"), "--size", "64", "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "faces kept: 1" in out.out and "frames read: 1" in out.out
    assert main(["extract", str(media_path("s33.jpg")), "-o", str(tmp_path / "dog"), "--no-progress"]) == 1
    out = capsys.readouterr()
    assert "error: no face was extracted" in out.err and "frames without a face: 1" in out.out
    assert "Traceback" not in out.err


def test_output_inside_the_input_folder_is_not_read_back(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "d9.jpg").write_bytes(media_path("d9.jpg").read_bytes())
    out = photos / "faceset"
    cfg = ExtractConfig(size=64, workers=1)
    assert extract([photos], out, cfg, progress=False).faces_kept == 1
    again = extract([photos], out, cfg, progress=False)
    assert again.frames_read == 1 and again.duplicates == 1 and not again.skipped


def test_cli_fails_when_every_face_is_another_person(tmp_path, capsys):
    frame = _frames("d14.mp4", [50])[50]
    other = tmp_path / "b.jpg"
    cv2.imwrite(str(other), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    args = ["extract", str(other), "-o", str(tmp_path / "fs"), "--size", "64", "--no-progress"]
    assert main(args + ["--reference", str(media_path("d9.jpg"))]) == 1
    assert "matched the --reference person" in capsys.readouterr().err


def test_cli_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["extract", "--help"])
    text = capsys.readouterr().out
    assert "--size" in text and "default: 256" in text and "--reference" in text


def test_pool_matches_inline(tmp_path):
    """The multi-process path (segments of one video) gives the same faces as one process."""
    clip = media_path("d18.mp4")
    inline = tmp_path / "inline"
    pool = tmp_path / "pool"
    extract([clip], inline, ExtractConfig(size=64, frames=120, workers=1), progress=False)
    s = extract([clip], pool, ExtractConfig(size=64, frames=120, workers=2), progress=False)
    assert s.frames_read == 120 and s.faces_kept == 120
    a, b = read_faceset(inline).records, read_faceset(pool).records
    assert [r.frame for r in a] == [r.frame for r in b] == list(range(120))
    # Segments restart tracking at their seam (after a warm-up), so allow a small difference there.
    diff = [np.abs(np.asarray(x.landmarks) - np.asarray(y.landmarks)).max() for x, y in zip(a, b)]
    assert np.median(diff) < 0.5 and max(diff) < 6.0


def test_a_failed_embedding_batch_costs_only_the_tasks_waiting_for_it():
    from types import SimpleNamespace

    from deepfake.extract.workers import embedded

    class Analyzer:
        def pending_embeddings(self):
            return 0

        def flush_embeddings(self):
            raise RuntimeError("boom")

    messages = [
        ("faces", 1, 0, 0.0, [SimpleNamespace(embedding=None)], "clip.mp4", 1.0),
        ("faces", 1, 1, 0.1, [SimpleNamespace(embedding=None)], "clip.mp4", 1.0),
        ("done", 1, 2, None),
        ("faces", 2, None, None, [], "empty.jpg", 1.0),  # no face: nothing waited for the batch
        ("done", 2, 1, None),
    ]
    out = list(embedded(Analyzer(), iter(messages), ExtractConfig()))
    assert out == [("error", 1, "clip.mp4", "identity embeddings failed: RuntimeError: boom"),
                   ("frame", 2, None, None, []), ("done", 2, 1, None)]


def test_cnn_detector_finds_the_face_hog_misses():
    """d8.jpg (glasses, curly hair): dlib HOG finds nothing; `--detector cnn` (MMOD) finds the face.
    Detection runs at 360 px to keep the CNN to a couple of seconds on CPU."""
    rgb = read_image(media_path("d8.jpg"))
    assert FaceAnalyzer(ExtractConfig(size=64), with_embedding=False).analyze(rgb) == []
    faces = FaceAnalyzer(ExtractConfig(size=64, detector="cnn", detect_max_side=360), with_embedding=False).analyze(rgb)
    assert len(faces) == 1
    _sane(faces[0], rgb.shape)


def _children(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (from /proc)."""
    from pathlib import Path

    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers through /proc")
def test_workers_end_when_extract_is_killed(tmp_path):
    """SIGKILL (or the OOM killer) runs no cleanup: the worker processes must still not outlive extract."""
    import subprocess
    import time
    from pathlib import Path

    cmd = [sys.executable, "-m", "deepfake", "extract", str(media_path("d6.mp4")), "-o", str(tmp_path / "fs"),
           "--size", "64", "--frames", "3000", "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(workers) < 2:
            time.sleep(0.2)
            workers = [p for p in _children(proc.pid)
                       if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
            assert proc.poll() is None, "extract ended before its workers started"
        assert len(workers) == 2
        time.sleep(3)  # into the work: past the workers' start-up
        proc.kill()
        proc.wait()
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.2)
        assert not [p for p in workers if _alive(p)]
    finally:
        proc.kill()
        for p in workers:  # the test's own strays, when the check fails
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def test_tail_split_holds_out_the_clip_end_after_an_append(tmp_path):
    """`--val-split tail` holds out a video's last frames, also when an append added frames between
    the ones a first pass took: extract keeps the manifest in frame order."""
    from deepfake.faceset import side_split

    out = tmp_path / "fs"
    clip = media_path("d18.mp4")
    extract([clip], out, ExtractConfig(size=64, frames=60, every=6), progress=False)  # frames 0, 6, ..., 54
    one_pass = read_faceset(out).records
    assert [r.frame for r in one_pass] == list(range(0, 60, 6))
    assert side_split(len(one_pass), 0.3, 0, "a", "tail")[1].tolist() == [7, 8, 9]

    extract([clip], out, ExtractConfig(size=64, frames=24, every=4), progress=False)  # adds 4, 8, 16, 20
    fs = read_faceset(out)
    frames = sorted(r.frame for r in fs.records)
    assert len(frames) == 14 and [r.frame for r in fs.records] == frames
    train, val = side_split(len(fs), 0.3, 0, "a", "tail")
    assert [fs.records[i].frame for i in val] == frames[-4:]
    assert sorted(fs.records[i].frame for i in train) == frames[:-4]
