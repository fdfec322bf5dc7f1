"""Input/output helpers: atomic writes, image and video reading and writing."""

from __future__ import annotations

from pathlib import Path

from deepfake.errors import BadInputError


def format_for_suffix(path: str | Path, formats: dict[str, str], what: str, context: str = "") -> str:
    """The format `formats` maps `path`'s suffix to; a BadInputError listing the accepted suffixes otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in formats:
        raise BadInputError(path, f"unsupported {what} '{suffix or '(none)'}'{context} (use {', '.join(formats)})")
    return formats[suffix]
