"""The synthetic-media label: written into every image format and container we output, read back; and
what the Content Credentials give away (thumbnails, the user's name), their local signing chain, and how
trust in a signer is reported."""

from __future__ import annotations

import json
import multiprocessing

import av
import numpy as np
import pytest
from PIL import Image

from conftest import media_path
from deepfake.errors import BadInputError
from deepfake.provenance import credentials, signing
from deepfake.provenance.credentials import Credential, file_sha256, read_credentials, signed_output
from deepfake.io.video_writer import VideoWriter
from deepfake.provenance.label import (
    LABEL_PREFIX,
    add_watermark,
    make_record,
    parse_label,
    read_provenance,
    save_labelled_image,
    video_tags,
)


@pytest.fixture(scope="module")
def frame():
    with Image.open(media_path("d9.jpg")) as im:
        return np.asarray(im.convert("RGB").resize((96, 96)))


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".jpeg", ".webp", ".tif"])
def test_image_label_round_trip(tmp_path, frame, suffix):
    record = make_record("model_ab", direction="a2b")
    path = tmp_path / f"out{suffix}"
    save_labelled_image(path, frame, record)
    got = read_provenance(path)
    assert got == record
    assert got["tool"] == "deepfake" and got["version"] and got["model"] == "model_ab"
    with Image.open(path) as im:
        assert im.size == (96, 96)  # a real, decodable image in the asked format
        assert im.format == {"jpg": "JPEG", "jpeg": "JPEG", "tif": "TIFF"}.get(suffix[1:], suffix[1:].upper())


def test_jpeg_keeps_label_when_exif_is_stripped(tmp_path, frame):
    record = make_record("m")
    path = tmp_path / "a.jpg"
    save_labelled_image(path, frame, record)
    # Re-save keeping only the COM segment (what a tool that drops EXIF does).
    with Image.open(path) as im:
        comment = im.info["comment"]
        im.save(tmp_path / "b.jpg", comment=comment)
    assert read_provenance(tmp_path / "b.jpg")["model"] == "m"


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv"])
def test_container_label_round_trip(tmp_path, frame, suffix):
    record = make_record("model_ab")
    path = tmp_path / f"v{suffix}"
    with VideoWriter(path, 25, 96, 96, metadata=video_tags(record), preset="ultrafast") as w:
        for _ in range(3):
            w.write(frame)
    assert read_provenance(path) == record
    with av.open(str(path)) as c:
        comment = {k.lower(): v for k, v in c.metadata.items()}["comment"]
    assert comment.startswith(LABEL_PREFIX)  # human-readable in any player's info panel


def test_unlabelled_media_reads_none():
    assert read_provenance(media_path("d30.jpg")) is None
    assert read_provenance(media_path("d18.mp4")) is None


def test_missing_and_garbage_files_are_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        read_provenance(tmp_path / "nope.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a video" * 10)
    with pytest.raises(BadInputError, match="junk.mp4"):
        read_provenance(junk)


def test_parse_label_rejects_lookalikes():
    assert parse_label("hello") is None
    assert parse_label('{"synthetic": false, "tool": "x"}') is None
    assert parse_label(LABEL_PREFIX + '{"synthetic": true, "tool": "deepfake"}') == {"synthetic": True, "tool": "deepfake"}


def test_unsupported_image_suffix(tmp_path, frame):
    with pytest.raises(BadInputError, match="unsupported image format"):
        save_labelled_image(tmp_path / "x.bmp", frame, make_record("m"))
    assert not any(tmp_path.iterdir())


def test_watermark_is_visible_and_local(frame):
    frame = np.repeat(np.repeat(frame, 5, axis=0), 5, axis=1)  # (480, 480, 3): a typical video frame
    marked = add_watermark(frame)
    diff = np.any(marked != frame, axis=2)
    assert diff.sum() > 50  # something visible was drawn
    ys, xs = np.nonzero(diff)
    assert ys.min() >= frame.shape[0] // 2 and xs.min() >= frame.shape[1] // 4  # in the bottom-right corner
    assert not np.shares_memory(marked, frame)


# ----------------------------------------------------------------------------------------------------
# Content Credentials.


def _sign_still(path, source):
    """Sign a still of a real face into `path`, as swap does: `source` is the real picture it opened."""
    with signed_output(path, Credential(source=source)) as target:
        target.write_bytes(source.read_bytes())
    return path


def _store(path) -> dict:
    import c2pa

    with c2pa.Reader(str(path)) as reader:
        return json.loads(reader.json())


def _pem_pair(tmp_path, name="other"):
    """A self-signed certificate and its key, as PEM files: a CA that signed nothing of ours."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_signed_still_carries_no_thumbnail_of_the_unswapped_source(tmp_path):
    import c2pa

    src = media_path("d9.jpg")  # a real face, 720x720
    out = _sign_still(tmp_path / "swapped.jpg", src)
    data = out.read_bytes()
    store = _store(out)
    manifest = store["manifests"][store["active_manifest"]]
    assert b"c2pa.thumbnail" not in data  # neither the ingredient's (the real person) nor the claim's
    assert "thumbnail" not in manifest and all("thumbnail" not in i for i in manifest["ingredients"])
    overhead = len(data) - src.stat().st_size
    assert overhead < 8192 and overhead < 0.1 * len(data), overhead  # a thumbnail alone is tens of kB
    # Still named: the ingredient, the action that opened it, and the source's hash.
    (ingredient,) = manifest["ingredients"]
    assert ingredient["title"] == "d9.jpg" and ingredient["format"] == "image/jpeg"
    assert ingredient["relationship"] == "parentOf"
    report = read_credentials(out)
    assert report.ours["source"] == {"title": "d9.jpg", "sha256": file_sha256(src)}
    assert report.actions == ["c2pa.opened", "c2pa.edited"] and report.valid and not report.tampered
    assert report.status == [credentials.UNTRUSTED]
    # A source with Content Credentials of its own (a camera's, or an earlier swap's) carrying a thumbnail:
    # neither its manifest nor its thumbnail is carried into the output.
    with_thumb = tmp_path / "camera.jpg"
    with credentials.make_signer() as signer, open(src, "rb") as s, open(with_thumb, "w+b") as d, \
            c2pa.Builder(credentials.manifest_definition("camera.jpg", "image/jpeg", Credential())) as builder:
        builder.sign(signer, "image/jpeg", s, d)
    assert b"c2pa.thumbnail" in with_thumb.read_bytes()  # c2pa's default: a thumbnail
    again = _sign_still(tmp_path / "again.jpg", with_thumb)
    assert b"c2pa.thumbnail" not in again.read_bytes()
    assert len(_store(again)["manifests"]) == 1
    assert read_credentials(again).valid


def test_signed_file_does_not_name_the_user(tmp_path, monkeypatch):
    name = "zq-unlikely-login-7341"
    for var in ("USER", "LOGNAME", "USERNAME"):
        monkeypatch.setenv(var, name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # the chain is made now, under that name
    out = _sign_still(tmp_path / "out.jpg", media_path("d9.jpg"))
    assert read_credentials(out).valid
    assert name.encode() not in out.read_bytes()
    for f in (tmp_path / "config" / "deepfake").iterdir():
        assert name.encode() not in f.read_bytes(), f


def _first_use(barrier, results):
    barrier.wait()  # both processes find the config folder empty at the same moment
    _, cert, _, key = signing.signing_material()
    results.put((cert, key))


def test_two_processes_signing_for_the_first_time_make_one_chain(tmp_path, monkeypatch):
    ctx = multiprocessing.get_context("fork")  # the children need only cryptography, already imported
    # 12 runs: without the lock, 43 of 60 runs measured made two chains (and 46 a mismatched pair).
    for run in range(12):
        config = tmp_path / str(run)
        monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_first_use, args=(barrier, results)) for _ in range(2)]
        for p in procs:
            p.start()
        got = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
        folder = config / "deepfake"
        on_disk = (folder / signing.LOCAL_CERT).read_bytes(), (folder / signing.LOCAL_KEY).read_bytes()
        for cert, key in (on_disk, *got):
            assert signing.mismatch(cert, key) is None, f"run {run}: a key does not match its certificate"
        assert got[0] == got[1] == on_disk, f"run {run}: two chains were made"
        assert on_disk[0].endswith((folder / signing.LOCAL_ROOT).read_bytes())


def test_a_broken_local_chain_is_made_anew_on_next_use(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    folder = tmp_path / "config" / "deepfake"
    signing.signing_material()
    _, stray_key = _pem_pair(tmp_path)
    (folder / signing.LOCAL_KEY).write_bytes(stray_key.read_bytes())  # as a race or a crash between writes leaves
    out = _sign_still(tmp_path / "out.jpg", media_path("d9.jpg"))
    assert read_credentials(out).valid
    cert, key = (folder / signing.LOCAL_CERT).read_bytes(), (folder / signing.LOCAL_KEY).read_bytes()
    assert signing.mismatch(cert, key) is None
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert str(folder) in warning and "made a new one" in warning and "\n" not in warning


def test_a_users_own_mismatched_key_is_a_one_line_error(tmp_path):
    cert = tmp_path / "mine.pem"  # a chain c2pa signs with, given with another key
    cert.write_bytes(signing.signing_material()[1])
    _, other_key = _pem_pair(tmp_path, "other")
    before = other_key.read_bytes()
    out = tmp_path / "out.jpg"
    with pytest.raises(BadInputError) as e:
        with signed_output(out, Credential(sign_cert=cert, sign_key=other_key)) as target:
            target.write_bytes(media_path("d9.jpg").read_bytes())
    assert str(e.value).startswith(str(other_key)) and str(cert) in str(e.value)
    assert "not the private key" in str(e.value) and "\n" not in str(e.value)
    assert other_key.read_bytes() == before and not out.exists()  # never replaced, nothing written


def test_trust_is_reported_as_not_checked_without_anchors(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    out = _sign_still(tmp_path / "out.jpg", media_path("d9.jpg"))
    plain = read_credentials(out)
    assert plain.valid and plain.trusted is None and plain.trust == "trust not checked (no trust anchors given)"
    root = tmp_path / "config" / "deepfake" / signing.LOCAL_ROOT
    anchored = read_credentials(out, trust_anchors=root)
    assert anchored.valid and anchored.trusted is True and anchored.trust == "trusted signer"
    other, _ = _pem_pair(tmp_path)
    stranger = read_credentials(out, trust_anchors=other)
    assert stranger.valid and stranger.trusted is False
    assert stranger.trust == "signer not under the given trust anchors"
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(BadInputError, match="junk.pem: not a PEM bundle of certificates"):
        read_credentials(out, trust_anchors=junk)


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".m4v"])
def test_every_container_the_writer_makes_in_the_mp4_family_is_signed(tmp_path, frame, suffix):
    """MOV and M4V are MP4's own box format (the writer makes them), so they carry credentials too."""
    out = tmp_path / f"clip{suffix}"
    assert credentials.why_unsigned(out) is None
    with signed_output(out, Credential(source=media_path("d18.mp4"))) as target:
        with VideoWriter(target, 25, 96, 96, preset="ultrafast") as w:
            for _ in range(3):
                w.write(frame)
    report = read_credentials(out)
    assert report.present and report.valid and not report.tampered
