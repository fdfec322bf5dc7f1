"""Atomic writes: write to a temp file in the same folder, fsync, then rename over the target.

A kill at any moment leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process's umask. Reading it means setting it: under a lock, and to a restrictive value in
    between, so a file another thread creates in that instant gets fewer permissions, never more
    (checkpoints are written on a background thread while the loop writes its metrics)."""
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path next to `path`; on success it is renamed onto `path`, on error removed.

    The temp file keeps the target's suffix (or `suffix`) so libraries that pick a format from the
    extension (PyAV, PIL, safetensors) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; outputs should get the usual permissions (0666 minus the umask).
    mode = 0o666 & ~_umask()
    os.chmod(tmp_path, mode)
    inode = tmp_path.stat().st_ino
    try:
        yield tmp_path
        # Some writers replace the file rather than write into it (safetensors' save_file does), and the
        # replacement is 0600. One the writer kept is left as it set it (a private key stays 0600).
        if tmp_path.stat().st_ino != inode:
            os.chmod(tmp_path, mode)
        fsync_path(tmp_path)
        os.replace(tmp_path, path)
        fsync_path(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def fsync_path(path: Path) -> None:
    """Flush a file's data, or a folder's entries (so a rename survives a crash), to disk. Best effort."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
