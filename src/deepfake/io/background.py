"""A writer on its own thread. File writes and video encoding release the GIL, so they overlap the
caller's work (extract's face images, swap's encoded frames)."""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

_END = object()


class BackgroundWriter:
    """Calls `write(item)` for each `put(item)`, in order, on one thread; at most `depth` items wait.

    The first error stops the writing, and the next `put` or `close` raises it. Items still queued are
    drained unwritten, so a `put` never blocks on a writer that has given up.
    """

    def __init__(self, write: Callable[[Any], None], depth: int, name: str):
        self._write = write
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is _END:
                return
            if self.error is None:
                try:
                    self._write(item)
                except BaseException as e:  # the caller's thread raises it
                    self.error = e

    def put(self, item: Any) -> None:
        if self.error is not None:
            raise self.error
        self._q.put(item)

    def close(self) -> None:
        """Wait until everything put has been written; raise the writer's error if there was one."""
        self._q.put(_END)
        self._thread.join()
        if self.error is not None:
            raise self.error
