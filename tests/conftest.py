"""Shared test fixtures.

Real media lives in ../shared/media (never copied into the project). Tests that need it skip when the
folder is absent, except under CI=true, where a missing folder is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("DEEPFAKE_MEDIA", ROOT.parent / "shared" / "media"))


def media_path(name: str) -> Path:
    """Path of a shared media file; skip (or fail under CI=true) when it is absent."""
    p = MEDIA / name
    if not p.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but shared media {p} is missing")
        pytest.skip(f"shared media not available: {p}")
    return p


@pytest.fixture
def media():
    return media_path


def cut_clip(name: str, out: Path, start: int = 0, stop: int | None = None, audio: bool = False) -> Path:
    """Frames [start, stop) of a shared clip re-encoded near-losslessly at 30 fps into `out` (with the
    clip's audio of those frames when `audio`, which needs start 0 and a stop)."""
    from fractions import Fraction

    from deepfake.io.video import VideoReader
    from deepfake.io.video_writer import VideoWriter

    src = media_path(name)
    assert not audio or (start == 0 and stop is not None)
    sound = dict(audio_from=src, audio_until=stop / 30) if audio else {}
    with VideoReader(src, start=start, stop=stop) as r, \
            VideoWriter(out, Fraction(30), r.width, r.height, crf=12, preset="ultrafast", **sound) as w:
        for _, _, rgb in r:
            w.write(rgb)
    return out


@pytest.fixture(scope="session", autouse=True)
def config_home(tmp_path_factory):
    """The user's config folder (where the local signing chain is made) points into the test's temp
    folder, for this process and the ones it starts: tests never touch the real home."""
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("config_home")
    mp.setenv("XDG_CONFIG_HOME", str(folder))
    yield folder
    mp.undo()


# ----------------------------------------------------------------------------------------------------
# Facesets shared by the train, swap and evaluate tests: the first 60 frames of two people, at 128 px.


def _extract_fixture(tmp_path_factory, clip: str, name: str):
    from deepfake.config import ExtractConfig
    from deepfake.extract import extract

    src = media_path(clip)
    out = tmp_path_factory.mktemp(name)
    summary = extract([src], out, ExtractConfig(size=128, frames=60), progress=False)
    assert summary.faces_kept > 0, f"no faces extracted from {src}"
    return out


@pytest.fixture(scope="session")
def faceset_a(tmp_path_factory):
    """Path of a faceset folder of woman A: first 60 frames of d6.mp4, 128 px (read it with read_faceset)."""
    return _extract_fixture(tmp_path_factory, "d6.mp4", "faceset_a")


@pytest.fixture(scope="session")
def faceset_b(tmp_path_factory):
    """Path of a faceset folder of woman B: first 60 frames of d14.mp4, 128 px (read it with read_faceset)."""
    return _extract_fixture(tmp_path_factory, "d14.mp4", "faceset_b")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Training tests run torch on one thread: two intra-op threads on a shared 2-core box spin against
    each other (measured: 6 vs 36 faces/s)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def pool_facesets(tmp_path_factory):
    """Faceset folders of three people who are neither A nor B (woman C, man D, woman E: d3, d18, s18),
    first 60 frames each, 128 px: a pretraining pool."""
    return [_extract_fixture(tmp_path_factory, f"{clip}.mp4", f"pool_{clip}") for clip in ("d3", "d18", "s18")]
