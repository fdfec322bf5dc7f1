"""A one-slot mailbox where the newest item wins: `put` replaces an item nobody took yet (counted as
dropped), so a slow consumer always gets the latest frame and nothing queues up behind it."""

from __future__ import annotations

import threading

_EMPTY = object()


class Closed(Exception):
    """The producer finished (or failed: then `error` is set) and the slot is empty."""


class Latest:
    def __init__(self):
        self._cv = threading.Condition()
        self._item = _EMPTY
        self._closed = False
        self.error: BaseException | None = None
        self.dropped = 0

    def put(self, item) -> None:
        with self._cv:
            if self._item is not _EMPTY:
                self.dropped += 1
            self._item = item
            self._cv.notify_all()

    def close(self, error: BaseException | None = None) -> None:
        with self._cv:
            self._closed, self.error = True, error
            self._cv.notify_all()

    def take(self, timeout: float | None = None):
        """The newest item; raises Closed once the producer is done and nothing is left, TimeoutError after
        `timeout` seconds without an item."""
        with self._cv:
            if not self._cv.wait_for(lambda: self._item is not _EMPTY or self._closed, timeout):
                raise TimeoutError
            if self._item is _EMPTY:
                raise Closed
            item, self._item = self._item, _EMPTY
            return item
