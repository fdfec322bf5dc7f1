"""What a face cache is keyed on, and why an existing cache no longer fits.

The key covers everything the cache decodes: the manifest's bytes, the masks (faceset/mask_files.py's
`source_key`) and each image file the build reads, by its size and modification time. That is one stat
per file and nothing read, so a face painted over in place, or a faceset copied with `cp -r` whose copy is
then edited, cannot keep serving the pixels of before (measured in benchmarks/RESULTS.md: 10,000 faces).

Each cache folder keeps its key's parts in `key.json`; when no folder fits, the newest one of the same
faceset and resolution is compared with the new key to say in one line what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from deepfake.faceset import MANIFEST, Faceset
from deepfake.faceset.mask_files import HULL, MaskSource, source_key

# Bump when the cache layout or the decoding changes, so old caches are rebuilt instead of misread.
CACHE_FORMAT = 1
KEY_FILE = "key.json"


@dataclass(frozen=True)
class CacheKey:
    manifest: str  # hash of the manifest bytes (mask apply's note left out)
    masks: str  # hash of source_key: which masks, and for segmenter masks their files
    files: dict[str, str]  # every image file the build reads -> "SIZE MTIME_NS" (or "missing")

    @property
    def digest(self) -> str:
        h = hashlib.sha1(f"deepfake.facecache/{CACHE_FORMAT}\n{self.manifest}\n{self.masks}\n".encode())
        h.update("".join(f"{name} {stat}\n" for name, stat in self.files.items()).encode())
        return h.hexdigest()[:16]

    def to_json(self, root: Path) -> dict:
        return {"root": str(root.resolve()), "manifest": self.manifest, "masks": self.masks, "files": self.files}


def manifest_hash(root: str | os.PathLike) -> str:
    """Hash of a faceset's manifest bytes. `mask apply`'s note in the header is left out: it changes no
    face and no hull."""
    data = (Path(root) / MANIFEST).read_bytes()
    head, newline, rest = data.partition(b"\n")
    header = json.loads(head)
    if "masks" in header:  # re-serialised as write_manifest wrote it before the note: the same bytes
        header.pop("masks")
        data = json.dumps(header, separators=(",", ":")).encode() + newline + rest
    return hashlib.sha1(data).hexdigest()[:16]


def source_files(fs: Faceset, masks: MaskSource) -> list[str]:
    """The image files a cache build reads, relative to the faceset: each face, and its hull file when
    the hulls are the extracted ones (segmenter masks are covered by `source_key`, redrawn hulls read none)."""
    files = [rec.file for rec in fs.records]
    if masks.kind == HULL and masks.redraw is None:
        files += [rec.mask for rec in fs.records]
    return files


def cache_key(fs: Faceset, masks: MaskSource) -> CacheKey:
    """The key of `fs` decoded with `masks`; one os.stat per image file."""
    files = {}
    base = os.fspath(fs.root) + os.sep  # plain strings: a Path per file costs more than its stat
    for name in source_files(fs, masks):
        try:
            st = os.stat(base + name)
            files[name] = f"{st.st_size} {st.st_mtime_ns}"
        except OSError:
            files[name] = "missing"  # the build skips the face and says so
    return CacheKey(manifest_hash(fs.root), hashlib.sha1(source_key(fs, masks)).hexdigest()[:16], files)


def write_key(path: Path, key: CacheKey, root: Path) -> None:
    from deepfake.io.atomic import atomic_write_json

    atomic_write_json(path / KEY_FILE, key.to_json(root))


def stale_reason(folder: Path, resolution: int, key: CacheKey, root: Path) -> tuple[Path | None, str | None]:
    """(the cache folder `key` replaces, what changed in words), comparing with the newest cache of this
    faceset at `resolution` and the same masks; (None, None) when there is none (a first build).

    In the faceset's own cache folder every cache is of this faceset (or of the one it was copied from);
    in a shared `cache_dir`, only those whose key.json names this faceset's folder."""
    own = folder == root / ".cache"
    best: tuple[float, Path, dict] | None = None
    for candidate in folder.glob(f"r{resolution}-*/{KEY_FILE}"):
        try:
            old = json.loads(candidate.read_text(encoding="utf-8"))
            when = candidate.stat().st_mtime
        except (OSError, ValueError):
            continue
        if candidate.parent.name.endswith(key.digest) or old.get("masks") != key.masks:
            continue
        if not own and old.get("root") != str(root.resolve()):
            continue
        if best is None or when > best[0]:
            best = (when, candidate.parent, old)
    if best is None:
        return None, None
    _, previous, old = best
    if old.get("manifest") != key.manifest:
        return previous, "the manifest changed (faces added, removed or re-extracted)"
    old_files = old.get("files") or {}
    changed = [name for name, stat in key.files.items() if old_files.get(name) != stat]
    if changed:
        return previous, (f"{len(changed)} image file(s) changed size or modification time since it was built "
                          f"(first: {changed[0]})")
    return previous, "its key changed"
