"""Producer threads joined by bounded queues, so a slow consumer keeps memory flat and the first error in
any stage stops all of them and is raised in the consumer (swap's decode and detect threads)."""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator

_END = object()


class Stream:
    """The output side of a stage: a bounded queue that re-raises the stage's error in the consumer."""

    def __init__(self, stages: "Stages", depth: int):
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.stages = stages
        self.done = False

    def get(self):
        while True:
            try:
                item = self.q.get(timeout=0.1)
            except queue.Empty:
                self.stages.check()
                continue
            if item is _END:
                self.done = True
                self.stages.check()
            return item

    def take(self, n: int) -> list:
        """The next n items (fewer only at the end of the stream), waiting for them to arrive."""
        out = []
        while len(out) < n and not self.done:
            item = self.get()
            if item is _END:
                break
            out.append(item)
        return out

    def __iter__(self):
        while not self.done:
            item = self.get()
            if item is _END:
                return
            yield item


class Stages:
    """Runs producer threads; the first error stops all of them and is raised in the consumer."""

    def __init__(self):
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> "Stages":
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def _put(self, out: Stream, item) -> bool:
        while not self.stop.is_set():
            try:
                out.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _start(self, body: Callable[[], None], name: str) -> None:
        def run():
            try:
                body()
            except BaseException as e:  # handed to the consumer, which raises it
                self.error = e
                self.stop.set()

        t = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(t)
        t.start()

    def source(self, items: Iterator, depth: int, name: str = "stage-source") -> Stream:
        out = Stream(self, depth)

        def body():
            for item in items:
                if not self._put(out, item):
                    return
            self._put(out, _END)

        self._start(body, name)
        return out

    def map(self, fn: Callable, inp: Stream, depth: int, name: str = "stage-map") -> Stream:
        out = Stream(self, depth)

        def body():
            for item in inp:
                if not self._put(out, fn(item)):
                    return
            self._put(out, _END)

        self._start(body, name)
        return out
