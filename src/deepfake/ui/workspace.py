"""The workspace: one folder in the layout the CLI's README uses, and the only door to it.

Every path the API takes goes through `Workspace.resolve` (or `Workspace.child` for a bare name): it
must name something inside the workspace after symbolic links are followed, with no `..` and no
hidden component (temp files of atomic writes and `.jobs/` start with a dot).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from deepfake.errors import DeepfakeError
from deepfake.io.images import IMAGE_EXTENSIONS
from deepfake.io.video import VIDEO_EXTENSIONS

AREAS = ("facesets", "models", "inputs", "outputs")
JOBS = ".jobs"
# A name the UI creates (faceset, model, output): starts like a word, so it never reads as an option.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


class PathError(DeepfakeError):
    """A path or name from a request that is malformed or points outside the workspace (HTTP 400)."""


class NotFoundError(DeepfakeError):
    """A path inside the workspace that does not exist (HTTP 404)."""


# What the CLI's inputs accept, by suffix (io's lists: those extract reads).
SUFFIX_KINDS = {**{s: "video" for s in VIDEO_EXTENSIONS}, **{s: "image" for s in IMAGE_EXTENSIONS}}


def media_kind(path: Path) -> str:
    """image | video | folder | file."""
    return "folder" if path.is_dir() else SUFFIX_KINDS.get(path.suffix.lower(), "file")


def model_kind(path: Path) -> str | None:
    """'swap' for a `deepfake train` folder, 'mask' for a `deepfake mask train` one, None otherwise; each
    folder's own module says (segment/checkpoint.py, model_dir.py)."""
    from deepfake.errors import DeepfakeError
    from deepfake.model_dir import CONFIG, read_config
    from deepfake.segment.checkpoint import is_mask_model

    if not (path / CONFIG).is_file():
        return None
    if is_mask_model(path):
        return "mask"
    try:
        read_config(path)
    except DeepfakeError:
        return None
    return "swap"


def _pool(path: Path) -> list[str]:
    """A pretraining run's facesets (config.json's data.pool); [] for a pair's model."""
    from deepfake.errors import DeepfakeError
    from deepfake.model_dir import read_config

    try:
        return list(read_config(path).data.pool)
    except DeepfakeError:
        return []


def report_kind(folder: Path) -> str | None:
    """report (evaluate), sweep, timeline (evaluate --timeline) or None, by the files the CLI leaves."""
    for name, kind in (("report.md", "report"), ("results.md", "sweep"), ("timeline.png", "timeline")):
        if (folder / name).is_file():
            return kind
    return None


@dataclass(frozen=True)
class Workspace:
    root: Path  # resolved

    @classmethod
    def open(cls, root: str | Path) -> "Workspace":
        """The workspace at `root`, with its four areas and .jobs/ created when missing."""
        path = Path(root).expanduser()
        try:
            path.mkdir(parents=True, exist_ok=True)
            for area in (*AREAS, JOBS):
                (path / area).mkdir(exist_ok=True)
        except OSError as e:
            raise DeepfakeError(f"{path}: cannot use as a workspace ({e.strerror or e})") from None
        return cls(path.resolve())

    @property
    def jobs_dir(self) -> Path:
        return self.root / JOBS

    # ------------------------------------------------------------------------------------------------
    # Paths from requests.

    def resolve(self, rel: Any, area: str | tuple[str, ...] | None = None, must_exist: bool = True) -> Path:
        """The real path of `rel` (relative to the workspace, or absolute inside it), inside `area`
        (one of AREAS, or a tuple of them) when given. PathError / NotFoundError otherwise."""
        if not isinstance(rel, str) or not rel.strip():
            raise PathError("path: expected a non-empty string")
        if "\x00" in rel or "\\" in rel:
            raise PathError(f"{rel!r}: bad character in path")
        pure = PurePosixPath(rel)
        parts = pure.parts[1:] if pure.is_absolute() else pure.parts
        if any(p == ".." for p in parts):
            raise PathError(f"{rel}: '..' is not allowed in paths")
        if any(p.startswith(".") for p in parts):
            raise PathError(f"{rel}: hidden files are not served")
        candidate = Path(rel) if pure.is_absolute() else self.root / rel
        real = Path(os.path.realpath(candidate))  # follows every symlink, so an escape shows up below
        areas = (area,) if isinstance(area, str) else tuple(area or ())
        bases = [self.root / a for a in areas] or [self.root]
        if not any(real == b or b in real.parents for b in bases):
            where = " or ".join(f"{a}/" for a in areas) if areas else "the workspace"
            raise PathError(f"{rel}: outside {where}")
        if must_exist and not real.exists():
            raise NotFoundError(f"{rel}: not found")
        return real

    def resolve_input(self, rel: Any, area: str | tuple[str, ...]) -> Path:
        """`resolve`, and for a folder every entry below it too: a job given a folder reads the files
        in it, so a link in there to outside the workspace is refused as if it had been named."""
        real = self.resolve(rel, area)
        if real.is_dir():
            for top, dirs, files in os.walk(real):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for name in (*dirs, *files):
                    if not name.startswith("."):
                        self.resolve(self.rel(Path(top, name)), area)
        return real

    def child(self, area: str, name: Any, must_exist: bool = True) -> Path:
        """AREA/NAME for a bare name (a faceset, a model, an output): NAME must match `NAME`."""
        if not isinstance(name, str) or not NAME.match(name) or name in (".", ".."):
            raise PathError(f"{name!r}: a name is 1-80 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return self.resolve(f"{area}/{name}", area, must_exist=must_exist)

    def rel(self, path: Path) -> str:
        return Path(path).relative_to(self.root).as_posix()

    # ------------------------------------------------------------------------------------------------
    # Listings: whatever is in the layout, made by the UI or by hand with the CLI.

    def _entries(self, area: str) -> list[Path]:
        base = self.root / area
        if not base.is_dir():
            return []
        real_base = Path(os.path.realpath(base))
        return sorted((p for p in base.iterdir() if not p.name.startswith(".") and self._inside(p, real_base)),
                      key=lambda p: p.name.lower())

    @staticmethod
    def _inside(path: Path, real_base: Path) -> bool:
        """Whether `path` exists and really lies in `real_base`: what `resolve` serves, so the listing
        never names a dangling link or one to outside the workspace."""
        real = Path(os.path.realpath(path))
        return real.parent == real_base and real.exists()

    def file_in(self, folder: Path, name: str) -> Path | None:
        """FOLDER/NAME when it is a file inside FOLDER's area, else None (missing, or a link that leads
        out): how views read the files a folder is expected to hold."""
        try:
            p = self.resolve(f"{self.rel(folder)}/{name}", self.rel(folder).split("/", 1)[0])
        except DeepfakeError:
            return None
        return p if p.is_file() else None

    def facesets(self) -> list[dict[str, Any]]:
        out = []
        for p in self._entries("facesets"):
            manifest = p / "faces.jsonl"
            if p.is_dir() and manifest.is_file():
                with open(manifest, "rb") as f:
                    faces = max(0, sum(1 for line in f if line.strip()) - 1)  # minus the header line
                out.append({"name": p.name, "path": self.rel(p), "faces": faces, "modified": manifest.stat().st_mtime})
        return out

    def models(self, kind: str = "swap") -> list[dict[str, Any]]:
        """Model folders of `kind` ('swap' or 'mask'), each with the step of its latest weights."""
        from deepfake.segment.checkpoint import SEGMENTER
        from deepfake.model_dir import AUTOENCODER, CONFIG, DISCRIMINATOR, step_of

        weights = AUTOENCODER if kind == "swap" else SEGMENTER
        out = []
        for p in self._entries("models"):
            if not p.is_dir() or model_kind(p) != kind:
                continue
            out.append({
                "name": p.name, "path": self.rel(p), "step": (step_of(p / weights) or 0) if (p / weights).is_file() else 0,
                "discriminator": (p / DISCRIMINATOR).is_file(), "pool": len(_pool(p)) if kind == "swap" else 0,
                "previews": len(list((p / "previews").glob("step_*.png"))),
                "modified": (p / CONFIG).stat().st_mtime,
            })
        return out

    def files(self, area: str) -> list[dict[str, Any]]:
        """Top-level entries of inputs/ or outputs/: media files, folders, and report folders."""
        out = []
        for p in self._entries(area):
            kind = media_kind(p)
            if kind == "folder":
                kind = report_kind(p) or kind
            st = p.stat()
            out.append({"name": p.name, "path": self.rel(p), "kind": kind,
                        "bytes": st.st_size if p.is_file() else None, "modified": st.st_mtime})
        return out

    def listing(self) -> dict[str, Any]:
        return {"root": str(self.root), "facesets": self.facesets(), "models": self.models(),
                "mask_models": self.models("mask"),
                "inputs": self.files("inputs"), "outputs": self.files("outputs")}
