"""The synthetic-media label: written into every image format and container we output, read back."""

from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image

from conftest import media_path
from deepfake.errors import BadInputError
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
