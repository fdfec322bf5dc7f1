"""The bad-input matrix of `deepfake extract`: every bad file gets one line naming it and the reason,
extraction carries on, the summary lists it, and nothing ends in a traceback. Bad files are made in
tmp from the real sample media."""

from __future__ import annotations

import os
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import media_path
from deepfake.cli import main
from deepfake.errors import BadInputError
from deepfake.faceset import read_faceset
from deepfake.io.images import read_image, read_image_scaled


def _remux_mkv(src: Path, dst: Path) -> None:
    """Copy the video stream into Matroska (no re-encode). Unlike this mp4, whose index sits at the
    end, a cut Matroska file still plays up to the cut: a truncated video that partly reads."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format="matroska") as o:
        s_in = i.streams.video[0]
        s_out = o.add_stream_from_template(s_in)
        for packet in i.demux(s_in):
            if packet.dts is None:
                continue
            packet.stream = s_out
            o.mux(packet)


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory) -> dict[str, Path]:
    """Good-but-odd images (each must give one face) and bad files (each must be skipped)."""
    root = tmp_path_factory.mktemp("données_visages")  # non-ASCII folder name
    d9 = Image.open(media_path("d9.jpg")).convert("RGB")
    files: dict[str, Path] = {}

    def path(name: str) -> Path:
        files[name] = root / name
        return files[name]

    # Odd but valid: each holds d9's face.
    d9.convert("L").save(path("gray.png"))
    rgba = d9.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(d9.size).point(lambda v: 255 if v > 40 else 0))
    rgba.save(path("rgba.png"))
    gray16 = (np.asarray(d9.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(path("gray16.png"))  # mode I;16
    cv2.imwrite(str(path("rgb16.png")), (np.asarray(d9)[..., ::-1].astype(np.uint16) * 257))
    d9.convert("CMYK").save(path("cmyk.jpg"), quality=92)
    # Stored sideways (rotated 90 degrees counter-clockwise) with EXIF orientation 6 ("rotate 90 CW
    # to display"): HOG finds no face in the raw pixels, only in the upright image.
    exif = Image.Exif()
    exif[0x0112] = 6
    d9.rotate(90, expand=True).save(path("exif_rotated.jpg"), exif=exif.tobytes(), quality=92)
    d9.save(path("visage_élodie_顔.jpg"), quality=92)  # non-ASCII file name
    # Bad.
    path("empty.jpg").write_bytes(b"")
    path("not_an_image.png").write_text("these are not the pixels you are looking for\n")
    data = media_path("d9.jpg").read_bytes()
    path("corrupt.jpg").write_bytes(data[:600])  # header, then nothing
    path("garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(5000))
    path("notes.txt").write_text("a stray file in the folder\n")
    video = media_path("d18.mp4").read_bytes()
    path("truncated.mp4").write_bytes(video[: len(video) * 4 // 10])  # its index (moov) is at the end: lost
    mkv = root / "whole.mkv.tmp"
    _remux_mkv(media_path("d18.mp4"), mkv)
    blob = mkv.read_bytes()
    mkv.unlink()
    path("truncated.mkv").write_bytes(blob[: len(blob) // 8])  # reads the first frames, then stops
    Image.open(media_path("s33.jpg")).save(path("dog.jpg"))  # no face
    return files


GOOD = ["gray.png", "rgba.png", "gray16.png", "rgb16.png", "cmyk.jpg", "exif_rotated.jpg", "visage_élodie_顔.jpg"]
BAD = ["empty.jpg", "not_an_image.png", "corrupt.jpg", "garbage.jpg", "notes.txt", "truncated.mp4"]


@pytest.mark.parametrize("name", GOOD)
def test_odd_images_read_as_upright_rgb(bad_folder, name):
    rgb = read_image(bad_folder[name])
    assert rgb.dtype == np.uint8 and rgb.shape == (720, 720, 3)
    ref = np.asarray(Image.open(media_path("d9.jpg")).convert("L"), dtype=np.float64)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float64)
    # Same picture, same way up (the RGBA one is composited on grey at the top, so compare the rest).
    assert np.abs(gray[200:] - ref[200:]).mean() < 12


@pytest.mark.parametrize("name", ["empty.jpg", "not_an_image.png", "corrupt.jpg", "garbage.jpg"])
def test_bad_images_raise_one_line_errors(bad_folder, name):
    with pytest.raises(BadInputError) as e:
        read_image(bad_folder[name])
    msg = str(e.value)
    assert name in msg and "\n" not in msg


def test_folder_with_the_whole_matrix(bad_folder, tmp_path, capsys):
    root = bad_folder["gray.png"].parent
    missing = root / "missing.jpg"
    dangling = tmp_path / "dangling.jpg"
    dangling.symlink_to(tmp_path / "nowhere.jpg")
    out = tmp_path / "sortie_é"
    code = main(["extract", str(root), str(missing), str(dangling), "-o", str(out), "--size", "64", "--no-progress", "--workers", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err + captured.out
    fs = read_faceset(out)
    sources = sorted(Path(r.source).name for r in fs.records)
    # Every odd-but-valid image gives its face; the mkv gives the frames before the cut.
    for name in GOOD:
        assert sources.count(name) == 1, name
    mkv_frames = [r.frame for r in fs.records if r.source.endswith("truncated.mkv")]
    assert 3 <= len(mkv_frames) < 216 and mkv_frames == list(range(len(mkv_frames)))
    # Each bad file: named once, with a reason, in the live log and the summary.
    for name in BAD + ["missing.jpg", "dangling.jpg"]:
        live = [line for line in captured.err.splitlines() if name in line]
        assert len(live) == 1, (name, captured.err)
        assert live[0].startswith("skipped: ") and len(live[0].split(": ", 2)[-1]) > 5
        assert any(name in line for line in captured.out.splitlines()), name
    assert "partly read: " in captured.out and "truncated.mkv: read " in captured.out
    assert f"files skipped: {len(BAD) + 2}" in captured.out
    assert "frames without a face: 1" in captured.out  # the dog
    # EXIF: the landmarks are in the upright image's pixels (the face is upright there).
    rec = next(r for r in fs.records if r.source.endswith("exif_rotated.jpg"))
    lm = np.asarray(rec.landmarks)
    assert lm[8, 1] > lm[27, 1] + 100  # chin well below the nose bridge


def test_huge_image_is_reduced_for_detection_and_reported_in_source_pixels(tmp_path):
    """A 12000x12000 JPEG (144 MP, 432 MB as RGB) is decoded at half size straight from the JPEG, and
    the face geometry comes back in the original file's pixels."""
    d9 = Image.open(media_path("d9.jpg")).convert("RGB")
    big = Image.new("RGB", (12000, 12000), (120, 110, 100))
    big.paste(d9.resize((6000, 6000), Image.Resampling.BILINEAR), (3000, 4000))
    path = tmp_path / "huge.jpg"
    big.save(path, quality=80)
    del big
    rgb, scale = read_image_scaled(path)
    assert scale == pytest.approx(0.5) and rgb.shape == (6000, 6000, 3)
    del rgb
    out = tmp_path / "fs"
    assert main(["extract", str(path), "-o", str(out), "--size", "64", "--no-progress", "--workers", "1"]) == 0
    (rec,) = read_faceset(out).records
    x0, y0, x1, y1 = rec.bbox
    # d9's face box is about (235, 235)-(478, 478) in 720 px, so ~(4960, 5960)-(6980, 7980) here.
    assert 4500 < x0 < 5400 and 6500 < x1 < 7500 and 5500 < y0 < 6400 and 7500 < y1 < 8500
    aligned = np.asarray(rec.landmarks) @ np.asarray(rec.matrix)[:, :2].T + np.asarray(rec.matrix)[:, 2]
    assert np.abs(aligned - np.asarray(rec.aligned_landmarks)).max() < 0.1


def test_output_folder_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "faceset"
    target.write_text("I am a file")
    code = main(["extract", str(media_path("d9.jpg")), "-o", str(target), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == f"error: {target}: output exists and is a file, not a folder"
    assert target.read_text() == "I am a file"  # untouched


def test_only_bad_inputs_exit_nonzero_with_a_message(bad_folder, tmp_path, capsys):
    code = main(["extract", str(bad_folder["empty.jpg"]), str(bad_folder["dog.jpg"]), "-o", str(tmp_path / "fs"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    assert "error: no face was extracted" in captured.err and "Traceback" not in captured.err
    assert "empty.jpg: empty file (0 bytes)" in captured.err


def test_truncated_video_split_between_workers(bad_folder, tmp_path):
    """With two workers the cut Matroska file is split in two segments; the second starts past the
    cut. The frames before the cut are kept and the early end is reported once, for the whole file."""
    from deepfake.config import ExtractConfig
    from deepfake.extract import extract

    s = extract([bad_folder["truncated.mkv"]], tmp_path / "fs", ExtractConfig(size=64, workers=2), progress=False)
    assert 3 <= s.faces_kept < 216 and s.frames_read == s.faces_kept and not s.skipped
    assert len(s.warnings) == 1 and f"read {s.frames_read} of 216 frames" in s.warnings[0][1]
