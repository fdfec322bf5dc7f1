"""`deepfake faceset info` and `clean` on real extracted faces."""

from __future__ import annotations

import dataclasses
import shutil

import cv2
import numpy as np
import pytest

from deepfake.cli import main
from deepfake.faces.quality import blur_score
from deepfake.faceset import read_faceset, write_manifest
from deepfake.faceset.tools import REMOVED, CleanThresholds, clean_faceset, faceset_info


def _mixed_faceset(faceset_a, faceset_b, dst, n_b=6):
    """faceset_a plus n_b faces of another person (from faceset_b), renamed into one faceset."""
    shutil.copytree(faceset_a, dst)
    a, b = read_faceset(dst), read_faceset(faceset_b)
    records = list(a.records)
    for k, r in enumerate(b.records[:n_b]):
        for attr in ("file", "mask"):
            rel = getattr(r, attr)
            new = rel.replace(rel.split("/")[-1].split(".")[0], f"b{k:05d}")
            shutil.copy(faceset_b / rel, dst / new)
            setattr(r, attr, new)
        records.append(r)
    write_manifest(dst, a.header, records)
    return dst


def test_info_counts_and_plots(faceset_a, tmp_path, capsys):
    info = faceset_info(faceset_a, tmp_path / "info")
    assert info.faces == 60 and info.video_frames == 60 and info.stills == 0 and info.size == 128
    assert len(info.sources) == 1 and info.blur["min"] > 0
    hist = cv2.imread(str(tmp_path / "info" / "pose_histogram.png"))
    sheet = cv2.imread(str(tmp_path / "info" / "contact_sheet.png"))
    assert hist is not None and hist.shape[1] >= 1000
    assert sheet is not None and sheet.shape == (8 * 96, 8 * 96, 3)  # 60 faces -> 8 x 8 grid
    assert sheet.std() > 20  # real faces, not an empty canvas
    assert main(["faceset", "info", str(faceset_a), "-o", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "faces: 60" in out and "contact_sheet.png" in out


def test_clean_drops_other_identity_blur_and_extreme_pose(faceset_a, faceset_b, tmp_path):
    root = _mixed_faceset(faceset_a, faceset_b, tmp_path / "mixed")
    fs = read_faceset(root)
    # Blur three of A's faces for real, with their scores recomputed as extract would.
    for r in fs.records[5:8]:
        img = cv2.imread(str(root / r.file))
        img = cv2.GaussianBlur(img, (0, 0), 3.0)
        cv2.imwrite(str(root / r.file), img)
        mask = cv2.imread(str(root / r.mask), cv2.IMREAD_UNCHANGED)
        r.blur = blur_score(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), mask)
    fs.records[20].pose["yaw"] = 75.0  # an extreme profile
    write_manifest(root, fs.header, fs.records)
    blurred = {r.file for r in fs.records[5:8]}

    dry = clean_faceset(root, CleanThresholds(), dry_run=True)
    assert dry.kept == 56 and read_faceset(root).records == fs.records  # nothing changed
    result = clean_faceset(root, CleanThresholds())
    assert result.dropped == {"blurry": 3, "extreme yaw": 1, "other identity": 6}
    kept = read_faceset(root)
    assert len(kept) == 56
    assert not any(r.file.startswith("faces/b") for r in kept.records)
    assert not blurred & {r.file for r in kept.records}
    assert all((root / r.file).exists() for r in kept.records)
    removed = read_faceset(root / REMOVED)
    assert len(removed) == 10 and all((root / REMOVED / r.file).exists() for r in removed.records)


def test_clean_cli_with_thresholds_off(faceset_a, tmp_path, capsys):
    root = tmp_path / "fs"
    shutil.copytree(faceset_a, root)
    args = ["faceset", "clean", str(root), "--blur-fraction", "none", "--max-identity", "none", "--max-yaw", "0.5"]
    assert main(args + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would drop" in out and len(read_faceset(root)) == 60
    yaw = np.array([abs(r.pose["yaw"]) for r in read_faceset(root).records])
    assert main(args) == 0
    assert len(read_faceset(root)) == int((yaw <= 0.5).sum())


def test_faceset_commands_on_a_missing_folder(tmp_path, capsys):
    assert main(["faceset", "info", str(tmp_path / "nope")]) == 2
    assert "not a faceset" in capsys.readouterr().err


@pytest.mark.parametrize("action", ["info", "clean"])
def test_help(action, capsys):
    with pytest.raises(SystemExit):
        main(["faceset", action, "--help"])
    assert "FACESET" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["../../victim.png", "/tmp/victim.png", "faces/../../victim.png", ""])
def test_a_manifest_naming_a_file_outside_its_faceset_is_refused(faceset_a, tmp_path, capsys, bad):
    """`clean` moves and deletes the files a manifest names: one outside the faceset is refused in one
    line before anything moves."""
    root = tmp_path / "sets" / "fs"
    shutil.copytree(faceset_a, root)
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"not the faceset's")
    fs = read_faceset(root)
    fs.records[3].file = bad if bad != "/tmp/victim.png" else str(victim)
    fs.records[3].pose["yaw"] = 89.0  # the face clean would drop
    write_manifest(root, fs.header, fs.records)
    assert main(["faceset", "clean", str(root), "--max-yaw", "45"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "faces.jsonl:5" in err and "not a path inside the faceset" in err
    assert "\n" not in err and victim.read_bytes() == b"not the faceset's"
    assert not (root / REMOVED).exists()


def _turn_away(root, files) -> dict:
    """Give the faces stored as `files` an extreme yaw, so clean drops them; their (face, mask) bytes by key."""
    fs = read_faceset(root)
    picked = {}
    for r in fs.records:
        if r.file in files:
            r.pose["yaw"] = 80.0
            picked[r.key] = ((root / r.file).read_bytes(), (root / r.mask).read_bytes())
    write_manifest(root, fs.header, fs.records)
    return picked


def _assert_removed(root, expected: dict) -> None:
    """removed/ lists exactly the faces dropped, each record naming its own images."""
    removed = read_faceset(root / REMOVED).records
    assert sorted(r.key for r in removed) == sorted(expected)
    for r in removed:
        assert ((root / REMOVED / r.file).read_bytes(), (root / REMOVED / r.mask).read_bytes()) == expected[r.key]


NO_IDENTITY_OR_BLUR = CleanThresholds(blur_fraction=None, max_identity=None)


def test_clean_after_an_append_keeps_every_removed_face(faceset_a, tmp_path):
    """clean, extract more into the faceset, clean again: the second clean's faces never take the names,
    or the place, of the first's."""
    from conftest import media_path
    from deepfake.config import ExtractConfig
    from deepfake.extract import extract

    root = tmp_path / "fs"
    shutil.copytree(faceset_a, root)
    last = sorted(r.file for r in read_faceset(root).records)[-3:]  # the numbers an append would take next
    expected = _turn_away(root, set(last))
    clean_faceset(root, NO_IDENTITY_OR_BLUR)
    before = {r.file for r in read_faceset(root).records}
    extract([media_path("d14.mp4")], root, ExtractConfig(size=128, frames=4), progress=False)
    new = {r.file for r in read_faceset(root).records} - before
    assert len(new) == 4 and not new & {r.file for r in read_faceset(root / REMOVED).records}
    expected |= _turn_away(root, new)
    clean_faceset(root, NO_IDENTITY_OR_BLUR)
    _assert_removed(root, expected)


def test_clean_never_overwrites_a_removed_face(faceset_a, tmp_path):
    """A kept face stored under a removed face's name (an extract that numbered past removed/ only
    counted faces/) is moved to a free name, recorded as such."""
    root = tmp_path / "fs"
    shutil.copytree(faceset_a, root)
    target = read_faceset(root).records[-1]
    expected = _turn_away(root, {target.file})
    clean_faceset(root, NO_IDENTITY_OR_BLUR)
    fs = read_faceset(root)
    donor = fs.records[0]
    twin = dataclasses.replace(donor, file=target.file, mask=target.mask, frame=1000, pose=dict(donor.pose))
    shutil.copy(root / donor.file, root / twin.file)
    shutil.copy(root / donor.mask, root / twin.mask)
    write_manifest(root, fs.header, fs.records + [twin])
    expected |= _turn_away(root, {twin.file})
    clean_faceset(root, NO_IDENTITY_OR_BLUR)
    _assert_removed(root, expected)
    assert len(read_faceset(root)) == 59


def test_a_rerun_after_a_killed_extract(faceset_a, tmp_path, capsys):
    """A killed extract leaves images its manifest does not list yet (or no manifest) and a half-written
    temp file: a re-run keeps clear of the images and removes the temp; `info` counts the orphans."""
    from conftest import media_path
    from deepfake.config import ExtractConfig
    from deepfake.extract import extract

    root = tmp_path / "fs"
    orphans = {}
    for r in read_faceset(faceset_a).records[:3]:
        for rel in (r.file, r.mask):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(faceset_a / rel, root / rel)
            orphans[rel] = (root / rel).read_bytes()
    temp = root / "faces" / ".000003.x1y2z3ab.tmp.png"
    temp.write_bytes(b"half a png")
    assert extract([media_path("d9.jpg")], root, ExtractConfig(size=128), progress=False).faces_kept == 1
    assert not temp.exists()
    assert all((root / rel).read_bytes() == data for rel, data in orphans.items())
    assert read_faceset(root).records[0].file not in orphans
    assert main(["faceset", "info", str(root), "-o", str(tmp_path / "info")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("orphans:")]
    assert len(lines) == 1 and lines[0].startswith("orphans: 6 images")
