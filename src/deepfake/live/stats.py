"""What a live run reports: frames in, swapped and dropped, the swap rate, capture-to-output latency and
the time per stage. `as_dict()` has exactly the keys `--stats FILE.json` writes."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict

import numpy as np


class StageTimes:
    """Milliseconds per call of each named stage, appended from any thread."""

    def __init__(self):
        self.ms: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - start) * 1000.0)

    def add(self, name: str, ms: float) -> None:
        with self._lock:
            self.ms[name].append(ms)

    def means(self) -> dict[str, float]:
        with self._lock:
            return {k: round(float(np.mean(v)), 2) for k, v in self.ms.items() if v}


class LiveStats:
    def __init__(self):
        self.frames_in = 0
        self.frames_out = 0  # frames that reached the outputs (swapped or with no face in them)
        self.frames_swapped = 0
        self.dropped = 0
        self.latency_ms: list[float] = []
        self.stages = StageTimes()
        self.start = time.perf_counter()
        self.end: float | None = None

    def seconds(self) -> float:
        return (self.end or time.perf_counter()) - self.start

    def as_dict(self) -> dict:
        lat = np.asarray(self.latency_ms or [float("nan")])
        secs = self.seconds()
        return {
            "frames_in": self.frames_in,
            "frames_swapped": self.frames_swapped,
            "frames_dropped": self.dropped,
            "fps": round(self.frames_swapped / secs, 2) if secs > 0 else 0.0,
            "latency_ms": {"p50": _r(np.percentile(lat, 50)), "p95": _r(np.percentile(lat, 95))},
            "stages_ms": self.stages.means(),
        }

    def line(self) -> str:
        d = self.as_dict()
        share = d["frames_dropped"] / d["frames_in"] if d["frames_in"] else 0.0
        return (f"{d['frames_in']} frames in, {d['frames_swapped']} swapped, {d['frames_dropped']} dropped "
                f"({share:.0%}); {d['fps']:.1f} swapped frames/s; latency p50 {d['latency_ms']['p50']} ms, "
                f"p95 {d['latency_ms']['p95']} ms")


def _r(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 1)
