"""A job's log file as a terminal would show it, and the progress its tqdm bar reports.

tqdm redraws its bar with carriage returns; in a file those pile up on one line. A terminal keeps
only what was drawn last, and so does `screen_lines`. Only the end of the file is read: a long
training run's log grows by a bar redraw every half second.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

TAIL_BYTES = 256 * 1024

# tqdm's default layout: "desc:  45%|####      | 27/60 [00:03<00:04,  7.2frame/s, loss=1.2]".
_BAR = re.compile(
    r"(?:(?P<desc>[^|]*?):\s*)?(?P<pct>\d{1,3})%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)"
    r"\s*\[(?P<elapsed>[\d:]+)<(?P<eta>[\d:?]+)(?:,\s*(?P<rate>[^,\]]*))?(?P<post>[^\]]*)\]"
)
_PLAIN_BAR = re.compile(r"^\s*(?P<desc>[^:|]*):?\s*(?P<n>\d+)(?:\w+)?\s*\[(?P<elapsed>[\d:]+),")


def read_tail(path: Path, limit: int = TAIL_BYTES) -> str:
    """The last `limit` bytes of the file as text ('' when it is missing); a cut first line is dropped."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    if size > limit:
        text = text.partition("\n")[2]
    return text


def screen_lines(text: str) -> list[str]:
    """Lines as a terminal shows them: on each line, what follows the last carriage return."""
    out = []
    for raw in text.split("\n"):
        segments = [s for s in raw.split("\r") if s.strip()]
        out.append(segments[-1].rstrip() if segments else "")
    while out and not out[-1]:
        out.pop()
    return out


def tail(path: Path, lines: int = 200) -> list[str]:
    return screen_lines(read_tail(path))[-lines:]


def _seconds(clock: str) -> float | None:
    if "?" in clock:
        return None
    total = 0.0
    for part in clock.split(":"):
        total = total * 60 + float(part)
    return total


def progress(path: Path) -> dict[str, Any] | None:
    """The last tqdm bar drawn in the log: {desc, n, total, fraction, elapsed_s, eta_s, rate, postfix};
    None when there is none. A bar without a total (an unknown frame count) has fraction None."""
    text = read_tail(path, 16 * 1024)
    for segment in reversed(re.split(r"[\r\n]", text)):
        m = _BAR.search(segment)
        if m:
            n, total = int(m["n"]), int(m["total"])
            return {
                "desc": (m["desc"] or "").strip(), "n": n, "total": total,
                "fraction": min(1.0, n / total) if total else None,
                "elapsed_s": _seconds(m["elapsed"]), "eta_s": _seconds(m["eta"]),
                "rate": (m["rate"] or "").strip(), "postfix": (m["post"] or "").strip(" ,"),
            }
        m = _PLAIN_BAR.search(segment)
        if m:
            return {"desc": m["desc"].strip(), "n": int(m["n"]), "total": None, "fraction": None,
                    "elapsed_s": _seconds(m["elapsed"]), "eta_s": None, "rate": "", "postfix": ""}
    return None
