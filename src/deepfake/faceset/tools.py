"""Faceset utilities: `info` (counts, pose histogram, contact sheet) and `clean` (drop blurry faces,
extreme poses and other people's faces by thresholds).

Cleaning never deletes: dropped faces move to FACESET/removed/ with their own manifest, so a too
strict threshold can be undone by hand.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from deepfake.config import CleanThresholds
from deepfake.errors import DeepfakeError
from deepfake.faceset import MANIFEST, Faceset, FaceRecord, read_faceset, write_manifest
from deepfake.io.atomic import atomic_path

REMOVED = "removed"


# ----------------------------------------------------------------------------------------------------
# Info.


@dataclass
class FacesetInfo:
    root: str
    faces: int
    size: int
    coverage: float
    sources: dict[str, int]  # source path -> faces
    stills: int
    video_frames: int
    blur: dict[str, float]  # min, median, max
    pose: dict[str, dict[str, float]]  # yaw/pitch/roll -> min, median, max
    plots: list[str] = field(default_factory=list)
    orphans: int = 0  # image files in faces/ and masks/ that no record names

    def lines(self) -> list[str]:
        out = [
            f"faceset: {self.root}",
            f"faces: {self.faces} ({self.stills} from stills, {self.video_frames} from video frames), {self.size} px, coverage {self.coverage}",
            f"sources: {len(self.sources)}",
        ]
        out += [f"  {n:6d}  {src}" for src, n in sorted(self.sources.items(), key=lambda kv: -kv[1])[:20]]
        if self.faces:
            out.append("blur (higher = sharper): min {min:.0f}, median {median:.0f}, max {max:.0f}".format(**self.blur))
            for k, v in self.pose.items():
                out.append(f"{k:>5}: min {v['min']:+.1f}, median {v['median']:+.1f}, max {v['max']:+.1f} degrees")
        if self.orphans:
            out.append(f"orphans: {self.orphans} images in faces/ and masks/ are not in {MANIFEST} (from an "
                       "interrupted or running extract; unused, and never reused by a later extract)")
        out += [f"saved: {p}" for p in self.plots]
        return out


def orphan_images(fs: Faceset) -> list[str]:
    """Image files under faces/ and masks/ that no record names (a killed extract writes its images
    before the manifest that lists them). Hidden temp files are left out."""
    named = {rel for r in fs.records for rel in (r.file, r.mask)}
    found = []
    for sub in ("faces", "masks"):
        folder = fs.root / sub
        if folder.is_dir():
            found += [f"{sub}/{p.name}" for p in folder.iterdir() if not p.name.startswith(".") and p.is_file()]
    return sorted(rel for rel in found if rel not in named)


def _stats(values) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return {"min": float("nan"), "median": float("nan"), "max": float("nan")}
    return {"min": float(a.min()), "median": float(np.median(a)), "max": float(a.max())}


def faceset_info(root: str | Path, out_dir: str | Path | None = None, sheet_faces: int = 64) -> FacesetInfo:
    """Counts and measures; saves pose_histogram.png and contact_sheet.png in out_dir (default FACESET/info)."""
    fs = read_faceset(root)
    recs = fs.records
    info = FacesetInfo(
        root=str(fs.root),
        faces=len(recs),
        size=fs.size,
        coverage=fs.coverage,
        sources=dict(Counter(r.source for r in recs)),
        stills=sum(r.frame is None for r in recs),
        video_frames=sum(r.frame is not None for r in recs),
        blur=_stats([r.blur for r in recs]),
        pose={k: _stats([r.pose.get(k, np.nan) for r in recs]) for k in ("yaw", "pitch", "roll")},
        orphans=len(orphan_images(fs)),
    )
    out_dir = Path(out_dir) if out_dir is not None else fs.root / "info"
    if recs:
        info.plots.append(str(save_pose_histogram(recs, out_dir / "pose_histogram.png")))
        info.plots.append(str(save_contact_sheet(fs, out_dir / "contact_sheet.png", sheet_faces)))
    return info


def save_pose_histogram(records: list[FaceRecord], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), constrained_layout=True)
    for ax, key in zip(axes, ("yaw", "pitch", "roll")):
        vals = np.asarray([r.pose.get(key, np.nan) for r in records], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        ax.hist(vals, bins=np.arange(-90, 91, 5), color="#4c72b0", edgecolor="white")
        ax.set_title(f"{key} (median {np.median(vals) if vals.size else float('nan'):+.1f} deg)")
        ax.set_xlabel("degrees")
        ax.set_xlim(-90, 90)
    axes[0].set_ylabel("faces")
    fig.suptitle(f"head pose of {len(records)} faces")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


def save_contact_sheet(fs: Faceset, path: Path, n: int = 64, tile: int = 96) -> Path:
    """A grid of up to n faces spread evenly over the faceset, each labelled with its blur score."""
    import cv2

    recs = fs.records
    pick = np.unique(np.linspace(0, len(recs) - 1, min(n, len(recs))).round().astype(int))
    cols = int(np.ceil(np.sqrt(len(pick))))
    rows = int(np.ceil(len(pick) / cols))
    sheet = np.full((rows * tile, cols * tile, 3), 32, dtype=np.uint8)
    for k, i in enumerate(pick):
        img = cv2.imread(str(fs.root / recs[i].file), cv2.IMREAD_COLOR)
        if img is None:
            img = np.zeros((tile, tile, 3), np.uint8)
            cv2.putText(img, "missing", (4, tile // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 255), 1)
        img = cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA)
        cv2.putText(img, f"{recs[i].blur:.0f}", (3, tile - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        r, c = divmod(k, cols)
        sheet[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = img
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), sheet):
            raise DeepfakeError(f"{path}: could not write the contact sheet")
    return path


# ----------------------------------------------------------------------------------------------------
# Clean.


@dataclass
class CleanResult:
    kept: int
    dropped: dict[str, int]  # reason -> count
    dropped_files: list[tuple[str, str]]  # (file, reason)
    dry_run: bool

    def lines(self) -> list[str]:
        verb = "would drop" if self.dry_run else "dropped"
        total = sum(self.dropped.values())
        out = [f"kept {self.kept} faces; {verb} {total}"]
        out += [f"  {n:6d}  {reason}" for reason, n in sorted(self.dropped.items())]
        if total and not self.dry_run:
            out.append(f"dropped faces were moved to {REMOVED}/ (with their own {MANIFEST})")
        return out


def main_identity(embeddings: np.ndarray, threshold: float, iterations: int = 3) -> np.ndarray:
    """The faceset's dominant identity: start from the median embedding, then re-average over the
    faces within `threshold` of it, so a minority of other people does not pull the centre."""
    centre = np.median(embeddings, axis=0)
    for _ in range(iterations):
        close = np.linalg.norm(embeddings - centre, axis=1) <= threshold
        if not close.any():
            break
        centre = embeddings[close].mean(axis=0)
    return centre


def drop_reasons(fs: Faceset, th: CleanThresholds, reference: np.ndarray | None = None) -> list[str | None]:
    """For each record: None (keep) or the first reason to drop it."""
    recs = fs.records
    if not recs:
        return []
    blur = np.asarray([r.blur for r in recs], dtype=np.float64)
    blur_floor = -np.inf
    if th.min_blur is not None:
        blur_floor = th.min_blur
    if th.blur_fraction is not None:
        blur_floor = max(blur_floor, th.blur_fraction * float(np.median(blur)))
    dist = None
    if th.max_identity is not None:
        emb = fs.embeddings()
        centre = reference if reference is not None else main_identity(emb, th.max_identity)
        dist = np.linalg.norm(emb - centre, axis=1)
    reasons: list[str | None] = []
    for i, r in enumerate(recs):
        reason = None
        if blur[i] < blur_floor:
            reason = f"blurry (score < {blur_floor:.0f})"
        else:
            for key, limit in (("yaw", th.max_yaw), ("pitch", th.max_pitch), ("roll", th.max_roll)):
                v = r.pose.get(key)
                if limit is not None and v is not None and np.isfinite(v) and abs(v) > limit:
                    reason = f"extreme {key} (|{key}| > {limit:g} degrees)"
                    break
        if reason is None and dist is not None and dist[i] > th.max_identity:
            reason = f"other identity (distance > {th.max_identity:g})"
        reasons.append(reason)
    return reasons


def clean_faceset(
    root: str | Path,
    thresholds: CleanThresholds,
    reference: np.ndarray | None = None,  # identity to keep (128-D); default: the faceset's main identity
    dry_run: bool = False,
) -> CleanResult:
    fs = read_faceset(root)
    reasons = drop_reasons(fs, thresholds, reference)
    keep = [r for r, why in zip(fs.records, reasons) if why is None]
    drop = [(r, why) for r, why in zip(fs.records, reasons) if why is not None]
    result = CleanResult(
        kept=len(keep),
        dropped=dict(Counter(why.split(" (")[0] for _, why in drop)),
        dropped_files=[(r.file, why) for r, why in drop],
        dry_run=dry_run,
    )
    if dry_run or not drop:
        return result
    removed = fs.root / REMOVED
    previous: list[FaceRecord] = []
    if (removed / MANIFEST).exists():
        previous = read_faceset(removed).records
    # Where each dropped file goes: its own name, or a free one when removed/ already holds that name
    # (a face extracted after an earlier clean can reuse a removed face's number).
    taken = {rel for r in previous for rel in (r.file, r.mask)}
    moves: list[tuple[str, str]] = []
    moved: list[FaceRecord] = []
    for r, _ in drop:
        names = {}
        for attr in ("file", "mask"):
            rel = getattr(r, attr)
            dst = _free_name(removed, rel, taken)
            taken.add(dst)
            moves.append((rel, dst))
            names[attr] = dst
        moved.append(dataclasses.replace(r, **names))
    # The main manifest is rewritten before any file moves, so it never names a missing file.
    header = json.loads(json.dumps(fs.header))
    write_manifest(removed, header, previous + moved)
    write_manifest(fs.root, fs.header, keep)
    for rel, dst in moves:
        src = fs.root / rel
        if src.exists():
            (removed / dst).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), str(removed / dst))
    return result


def _free_name(folder: Path, rel: str, taken: set[str]) -> str:
    """`rel`, or `rel` with a counter after its stem, whichever names no file in `folder` and no
    record in `taken`."""
    path = PurePosixPath(rel)
    candidate, k = rel, 0
    while candidate in taken or (folder / candidate).exists():
        k += 1
        candidate = str(path.with_name(f"{path.stem}_{k}{path.suffix}"))
    return candidate
