"""Ctrl-C and SIGTERM as a clean stop for the training loops (`train` and `mask train`)."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Iterator

log = logging.getLogger(__name__)


@contextlib.contextmanager
def stop_signals() -> Iterator[dict[str, str | None]]:
    """SIGINT (Ctrl-C) and SIGTERM (`kill`, `docker stop`, systemd, SLURM) set state["stop"] to the
    signal's name; the loop checks it after each step, saves and exits. A second signal aborts at once:
    snapshots are written atomically, so the last complete one stays intact. Off the main thread
    (signals can only be handled there) the flag simply never changes."""
    state: dict[str, str | None] = {"stop": None}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if state["stop"] is not None:
            log.warning("%s again: exiting without saving; the last complete checkpoint is kept", name)
            raise KeyboardInterrupt
        state["stop"] = name
        log.warning("%s: saving after this step (send it again to exit without saving)", name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield state
    finally:
        for s, h in old.items():
            signal.signal(s, h)
