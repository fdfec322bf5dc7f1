"""Content Credentials and the invisible mark on real faces: written by swap, read back by detect."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from conftest import cut_clip, media_path
from trained_pair import trained_model
from deepfake.cli import main
from deepfake.io.video import VideoReader
from deepfake.provenance import credentials, watermark
from deepfake.provenance.credentials import Credential, read_credentials, signed_output

CLIP_FRAMES = 30


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The first CLIP_FRAMES frames of d14.mp4 (woman B, 512x512)."""
    return cut_clip("d14.mp4", tmp_path_factory.mktemp("clip") / "d14_cut.mp4", stop=CLIP_FRAMES)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, faceset_a, faceset_b):
    """The small model trained on A = d6 and B = d14 that the export and live tests share: its swapped
    faces look like faces, as a reader needs to find them."""
    return trained_model(tmp_path_factory, faceset_a, faceset_b)


@pytest.fixture(scope="module")
def swapped(tmp_path_factory, clip, model_dir):
    out = tmp_path_factory.mktemp("swapped") / "swapped.mp4"
    assert main(["swap", str(clip), "-m", str(model_dir), "-o", str(out), "--preset", "ultrafast", "-q",
                 "--all-faces", "--batch", "8"]) == 0
    return out


def _reencode(src: Path, dst: Path, crf: int, factor: float) -> None:
    """Scale by `factor` and re-encode with libx264 at `crf`, with PyAV alone."""
    with av.open(str(src)) as c_in, av.open(str(dst), "w") as c_out:
        s_in = c_in.streams.video[0]
        w, h = round(s_in.width * factor) // 2 * 2, round(s_in.height * factor) // 2 * 2
        s = c_out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt, s.options = w, h, "yuv420p", {"crf": str(crf), "preset": "ultrafast"}
        for frame in c_in.decode(s_in):
            small = cv2.resize(frame.to_ndarray(format="rgb24"), (w, h), interpolation=cv2.INTER_AREA)
            for p in s.encode(av.VideoFrame.from_ndarray(small, format="rgb24")):
                c_out.mux(p)
        for p in s.encode():
            c_out.mux(p)


def _detect(capsys, *paths: Path) -> list[dict]:
    capsys.readouterr()
    main(["detect", *map(str, paths), "--json"])
    return json.loads(capsys.readouterr().out)["files"]


def test_swapped_clip_is_found_after_crf30_and_half_scale(tmp_path, swapped, clip, model_dir, capsys):
    small = tmp_path / "small_crf30.mp4"
    _reencode(swapped, small, crf=30, factor=0.5)
    want = watermark.payload_hex(watermark.payload_for(credentials.model_identity(model_dir)["sha256"]))
    got, untouched = _detect(capsys, small, clip)
    assert got["mark"]["found"] is True, got["mark"]
    assert got["mark"]["payload"] == want
    assert got["mark"]["frames_checked"] == CLIP_FRAMES
    assert got["credentials"]["present"] is False  # the re-encode dropped the manifest; the mark stayed
    assert untouched["mark"]["found"] is False
    assert untouched["mark"]["faces_checked"] == CLIP_FRAMES


def test_signed_output_validates_and_a_flipped_byte_is_tampering(tmp_path, swapped, config_home, capsys):
    import c2pa

    with c2pa.Reader(str(swapped)) as reader:
        store = json.loads(reader.json())
    assert [s["code"] for s in store["validation_status"]] == [credentials.UNTRUSTED]
    report = read_credentials(swapped)
    assert report.valid and not report.tampered
    assert report.actions[0] == "c2pa.opened"
    assert report.digital_source_type.endswith("compositeWithTrainedAlgorithmicMedia")
    assert report.ours["model"]["sha256"] and "/" not in json.dumps(report.ours["model"])
    assert report.ours["invisible_mark"] is True
    # The local chain lives in the (test's) config folder, readable by the user alone.
    folder = config_home / "deepfake"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / credentials.LOCAL_KEY).stat().st_mode) == 0o600
    data = bytearray(swapped.read_bytes())
    at = data.find(b"mdat") + 4000
    data[at] ^= 0xFF
    bad = tmp_path / "flipped.mp4"
    bad.write_bytes(bytes(data))
    (got,) = _detect(capsys, bad)
    assert got["credentials"]["tampered"] is True and got["credentials"]["valid"] is False
    assert "assertion.bmffHash.mismatch" in got["credentials"]["status"]


def test_no_invisible_mark_is_said_in_the_manifest(tmp_path, clip, model_dir):
    out = tmp_path / "plain.png"
    frame = tmp_path / "frame.png"
    with VideoReader(clip) as r:
        cv2.imwrite(str(frame), cv2.cvtColor(next(iter(r))[2], cv2.COLOR_RGB2BGR))
    assert main(["swap", str(frame), "-m", str(model_dir), "-o", str(out), "--all-faces",
                 "--no-invisible-mark"]) == 0
    report = read_credentials(out)
    assert report.valid and report.ours["invisible_mark"] is False


def test_signing_failure_leaves_no_output(tmp_path, clip, model_dir, capsys):
    cert = tmp_path / "self_signed.pem"
    key = tmp_path / "key.pem"
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import datetime as dt

    k = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bare")])
    now = dt.datetime.now(dt.timezone.utc)
    c = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
         .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)).sign(k, hashes.SHA256()))
    cert.write_bytes(c.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rc = main(["swap", str(clip), "-m", str(model_dir), "-o", str(out_dir / "x.mp4"), "--all-faces", "-q",
               "--preset", "ultrafast", "--frames", "4", "--sign-cert", str(cert), "--sign-key", str(key)])
    assert rc != 0
    assert "sign" in capsys.readouterr().err.lower()
    assert list(out_dir.iterdir()) == []


def test_bad_inputs_get_one_line_each(tmp_path, swapped, capsys):
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(swapped.read_bytes()[: swapped.stat().st_size // 3])
    signed_jpg = tmp_path / "signed.jpg"
    src = media_path("d9.jpg")
    with signed_output(signed_jpg, Credential(source=src)) as target:
        target.write_bytes(src.read_bytes())
    corrupt = tmp_path / "corrupt.jpg"
    data = bytearray(signed_jpg.read_bytes())
    at = data.find(b"jumb")
    data[at + 200 : at + 260] = bytes(60)
    corrupt.write_bytes(bytes(data))
    tiny = tmp_path / "tiny.png"
    small = cv2.resize(cv2.imread(str(src)), (40, 40), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(tiny), small)
    t, c, s = _detect(capsys, truncated, corrupt, tiny)
    # Its pixels stop a third of the way in, but its tag and its (now tampered) credentials are still read.
    assert t["error"] is None and t["provenance_tag"] is True and t["credentials"]["tampered"] is True
    assert "truncated" in t["decode_error"] or "corrupt video" in t["decode_error"]
    assert c["credentials"]["error"].startswith("corrupt manifest") and c["credentials"]["tampered"] is True
    assert s["mark"]["note"] == "too small to carry a mark" and s["mark"]["found"] is False
    capsys.readouterr()
    main(["detect", str(truncated), str(corrupt), str(tiny)])
    text = capsys.readouterr().out
    assert sum(1 for line in text.splitlines() if line.startswith(str(truncated))) == 1
    assert "too small to carry a mark" in text and "corrupt manifest" in text


def test_mark_on_a_still_survives_brightness_and_is_absent_unmarked():
    from PIL import Image

    from deepfake.provenance.reading import mark_analyzer, read_still

    analyzer = mark_analyzer()
    rgb = np.asarray(Image.open(media_path("d9.jpg")).convert("RGB")).copy()
    assert read_still(rgb, analyzer).found is False
    payload = watermark.payload_for("beef")
    marked = rgb.copy()
    assert watermark.embed_still(marked, analyzer, payload) == 1
    psnr = 10 * np.log10(255.0**2 / np.mean((marked.astype(float) - rgb) ** 2))
    assert psnr >= 40
    brighter = np.clip(marked.astype(np.int16) + 8, 0, 255).astype(np.uint8)  # a flat change moves no pattern
    for picture in (marked, brighter):
        reading = read_still(picture, analyzer)
        assert reading.found and reading.payload == watermark.payload_hex(payload) and reading.model_hash == "beef"


def test_formats_without_credentials_say_why(tmp_path, clip, model_dir, caplog):
    frame = tmp_path / "frame.png"
    with VideoReader(clip) as r:
        cv2.imwrite(str(frame), cv2.cvtColor(next(iter(r))[2], cv2.COLOR_RGB2BGR))
    out = tmp_path / "out.webp"
    assert main(["swap", str(frame), "-m", str(model_dir), "-o", str(out), "--all-faces"]) == 0
    assert "out.webp: no Content Credentials: .webp is not one of the formats" in caplog.text
    assert read_credentials(out).present is False


# ----------------------------------------------------------------------------------------------------
# Two people in one still: only the swapped one is marked; what detect says of it, whole and damaged.


@pytest.fixture(scope="module")
def pair(tmp_path_factory, model_dir):
    """(input, swapped PNG): d14's woman (the model's B) beside d18's man, swapped without --all-faces,
    so only she is replaced."""
    with VideoReader(media_path("d14.mp4"), stop=1) as r:
        left = next(iter(r))[2]
    with VideoReader(media_path("d18.mp4"), stop=1) as r:
        right = cv2.resize(next(iter(r))[2], (512, 512), interpolation=cv2.INTER_AREA)
    folder = tmp_path_factory.mktemp("pair")
    src = folder / "pair.png"
    rgb = np.concatenate([left, right], axis=1)  # (512, 1024, 3)
    cv2.imwrite(str(src), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = folder / "pair_swapped.png"
    assert main(["swap", str(src), "-m", str(model_dir), "-o", str(out)]) == 0
    return rgb, out


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_a_still_marks_only_the_swapped_face(tmp_path, pair, capsys):
    rgb, out = pair
    got = _rgb(out)
    assert np.abs(got[:, :512].astype(int) - rgb[:, :512]).max() > 20  # she was swapped
    np.testing.assert_array_equal(got[:, 512:], rgb[:, 512:])  # he was not touched at all (PNG: lossless)
    swapped_crop, untouched_crop = tmp_path / "swapped_face.png", tmp_path / "untouched_face.png"
    cv2.imwrite(str(swapped_crop), cv2.cvtColor(got[:, :512], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(untouched_crop), cv2.cvtColor(got[:, 512:], cv2.COLOR_RGB2BGR))
    swapped_face, untouched_face = _detect(capsys, swapped_crop, untouched_crop)
    assert swapped_face["mark"]["found"] is True, swapped_face["mark"]
    assert untouched_face["mark"]["found"] is False and untouched_face["mark"]["faces_checked"] >= 1


def _flip_in_idat(src: Path, dst: Path) -> None:
    """One byte flipped in the middle of the PNG's first IDAT chunk (its compressed pixels)."""
    data = bytearray(src.read_bytes())
    at = data.find(b"IDAT")
    length = int.from_bytes(data[at - 4 : at], "big")
    data[at + 4 + length // 2] ^= 0xFF
    dst.write_bytes(bytes(data))


def test_a_changed_byte_in_the_pixels_is_tampering_not_a_skip(tmp_path, pair, capsys):
    bad = tmp_path / "flipped.png"
    _flip_in_idat(pair[1], bad)
    (got,) = _detect(capsys, bad)
    assert got["error"] is None  # read: not skipped
    assert got["credentials"]["tampered"] is True and got["credentials"]["valid"] is False
    assert "assertion.dataHash.mismatch" in got["credentials"]["status"]
    assert got["provenance_tag"] is True and got["provenance"]["tool"] == "deepfake"
    assert got["decode_error"] and got["mark"]["found"] is False and got["mark"]["error"] == got["decode_error"]
    assert got["labelled_by"] == ["provenance tag"] and got["overall"] == "synthetic"
    assert main(["detect", str(bad)]) == 0  # exit code as for a file that was read
    text = capsys.readouterr().out
    assert "content credentials: TAMPERED (assertion.dataHash.mismatch)" in text
    assert "invisible mark: not read: the pixels do not decode" in text and "skipped" not in text.splitlines()[0]


class _CallsEverythingReal(torch.nn.Module):
    """A discriminator that scores every face real: what a discriminator trained against another
    generator may well say of our swaps."""

    def forward(self, x):
        return torch.full((x.shape[0], 1, 4, 4), 6.0)


def test_with_a_discriminator_the_headline_still_follows_the_marks(pair):
    from deepfake.config import DetectConfig
    from deepfake.provenance.inspect import Detector, detect_files, format_reports

    rgb, out = pair
    detector = Detector(_CallsEverythingReal(), 64, 128, 0.75, DetectConfig(), "cpu")
    marked, = detect_files([out], detector, progress=False)
    assert marked.verdict == "real" and marked.mean_p_real > 0.99  # the discriminator's own answer is kept
    assert marked.labelled_by == ["content credentials", "provenance tag", "invisible mark"]
    assert marked.overall == "synthetic"
    lines = format_reports([marked], 0.5).splitlines()
    assert lines[0] == f"{out}: synthetic (labelled by its content credentials, provenance tag and invisible mark)"
    assert any(line.startswith("  discriminator: real (mean P(real) 0.998") for line in lines)
    plain = out.parent / "plain_pair.png"
    cv2.imwrite(str(plain), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    real, = detect_files([plain], detector, progress=False)
    assert real.labelled_by == [] and real.overall == "real"


def test_a_mark_after_a_long_intro_without_a_face_is_found(tmp_path, swapped, capsys):
    """The frame budget (--max-frames) spreads over the whole clip: faceless frames first do not use it up."""
    from deepfake.io.video_writer import VideoWriter

    dog = cv2.resize(_rgb(media_path("s33.jpg")), (512, 512), interpolation=cv2.INTER_AREA)
    late = tmp_path / "late.mp4"
    with VideoWriter(late, 30, 512, 512, preset="ultrafast") as w, VideoReader(swapped) as r:
        for _ in range(20):
            w.write(dog)
        for _, _, rgb in r:
            w.write(rgb)
    capsys.readouterr()
    main(["detect", str(late), "--json", "--max-frames", "10"])
    (got,) = json.loads(capsys.readouterr().out)["files"]
    assert got["mark"]["found"] is True, got["mark"]
    assert got["mark"]["frames_checked"] <= 10 + 1
