"""Jobs: CLI subprocesses with a record on disk, queued per device.

A job is `WORKSPACE/.jobs/ID/`: job.json (the record, replaced atomically on every change), log.txt
(stdout and stderr; stderr only when stdout is captured to out.txt) and rc (the exit status, written by
supervise.py). The records are the truth: a page reload, a second tab or a restarted server reads
them again, adopts jobs whose process still runs, and marks as failed those whose process died
without an exit status.

Jobs that name the same device run one at a time, in the order they were submitted; jobs with no
device (faceset info, reading provenance tags) start at once. One scheduler thread starts and reaps
them; request threads only change records under the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from deepfake.errors import DeepfakeError
from deepfake.io.atomic import atomic_write_json
from deepfake.ui import joblog

ACTIVE = ("queued", "running")
# queued -> running -> done | failed | stopped; queued -> cancelled.
FINISHED = ("done", "failed", "stopped", "cancelled")


class JobError(DeepfakeError):
    """A job request that cannot be carried out: unknown id, or a state that forbids it (HTTP 404/409)."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks (Linux), so a reused pid is not taken for our job;
    None where /proc is missing. 'Z' (a zombie: exited, not yet reaped) counts as gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _alive(pid: int | None, start: str | None) -> bool:
    if not pid:
        return False
    if Path("/proc").is_dir():
        return start is not None and _proc_start(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobManager:
    """Submit, list, stop and cancel jobs of one workspace. `start()` takes the workspace's lock and
    starts the scheduler; `close()` stops the scheduler and leaves running jobs running."""

    def __init__(self, jobs_dir: Path, cwd: Path, poll_s: float = 0.3, env: dict[str, str] | None = None,
                 command: list[str] | None = None):
        self.dir, self.cwd, self.poll_s = Path(jobs_dir), Path(cwd), poll_s
        self.env = env  # extra environment for job processes (tests pin thread counts with it)
        # What a record's argv runs under: the same CLI (`python -m deepfake`); tests swap in a stand-in.
        self.command = command or [sys.executable, "-m", "deepfake"]
        self.records: dict[str, dict[str, Any]] = {}
        self.procs: dict[str, subprocess.Popen] = {}  # the jobs this server started (their parent)
        self.lock = threading.RLock()
        self.wake = threading.Event()
        self.closing = threading.Event()
        self.thread: threading.Thread | None = None
        self.lock_file = None

    # ------------------------------------------------------------------------------------------------
    # Life cycle.

    def start(self) -> "JobManager":
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lock_file = open(self.dir / "server.lock", "w")
        try:
            # Two servers on one workspace would each start the other's queued jobs.
            fcntl.flock(self.lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.lock_file.close()
            raise DeepfakeError(f"{self.dir.parent}: another `deepfake ui` is serving this workspace (open its address, "
                                "or stop it with Ctrl-C first)") from None
        for d in sorted(self.dir.iterdir()):
            try:
                rec = json.loads((d / "job.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # not a job folder, or one whose first write never finished
            self.records[rec["id"]] = rec
        self.thread = threading.Thread(target=self._loop, name="deepfake-ui-jobs", daemon=True)
        self.thread.start()
        return self

    def close(self) -> None:
        self.closing.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        if self.lock_file is not None:
            self.lock_file.close()
            self.lock_file = None

    def stop_all(self, timeout: float = 30.0) -> None:
        """Cancel queued jobs and stop running ones, waiting up to `timeout` s (for tests and shutdown)."""
        for rec in self.list():
            if rec["state"] in ACTIVE:
                self.stop(rec["id"])
        deadline = time.monotonic() + timeout
        while any(r["state"] in ACTIVE for r in self.list()) and time.monotonic() < deadline:
            time.sleep(self.poll_s)
        for rec in self.list():  # a second signal: train aborts without saving again
            if rec["state"] == "running" and rec.get("pid"):
                self._signal(rec, signal.SIGKILL)

    # ------------------------------------------------------------------------------------------------
    # Requests.

    def submit(self, kind: str, argv: list[str], *, resource: str | None, title: str, spec: dict[str, Any],
               targets: dict[str, str] | None = None, capture: bool = False, dedupe: str | None = None) -> dict[str, Any]:
        """Queue `python -m deepfake ARGV...`. With `dedupe`, an active job with the same key is returned
        instead of a second one."""
        with self.lock:
            if dedupe is not None:
                for rec in self.records.values():
                    if rec.get("dedupe") == dedupe and rec["state"] in ACTIVE:
                        return dict(rec)
            job_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
            rec = {
                "id": job_id, "kind": kind, "title": title, "argv": ["deepfake", *argv], "resource": resource,
                "state": "queued", "created": time.time(), "started": None, "ended": None, "pid": None,
                "pid_start": None, "rc": None, "stops": 0, "capture": capture, "spec": spec,
                "targets": targets or {}, "dedupe": dedupe, "message": None,
            }
            (self.dir / job_id).mkdir(parents=True)
            self._save(rec)
        self.wake.set()
        return dict(rec)

    def get(self, job_id: str) -> dict[str, Any]:
        with self.lock:
            rec = self.records.get(job_id)
            if rec is None:
                raise JobError(f"job {job_id!r}: not found", 404)
            return dict(rec)

    def list(self) -> list[dict[str, Any]]:
        """All records, newest first; a queued one has its place in its device's queue (1 = next)."""
        with self.lock:
            recs = sorted((dict(r) for r in self.records.values()), key=lambda r: r["created"])
        places: dict[Any, int] = {}
        for r in recs:
            if r["state"] == "queued":
                places[r["resource"]] = r["queue_position"] = places.get(r["resource"], 0) + 1
        return recs[::-1]

    def stop(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued job; send SIGTERM to a running one (train saves; a second stop aborts it)."""
        with self.lock:
            rec = self.records.get(job_id)
            if rec is None:
                raise JobError(f"job {job_id!r}: not found", 404)
            if rec["state"] == "queued":
                rec.update(state="cancelled", ended=time.time(), message="cancelled before it started")
                self._save(rec)
            elif rec["state"] == "running":
                rec["stops"] += 1
                self._save(rec)
                self._signal(rec, signal.SIGTERM)
            else:
                raise JobError(f"job {job_id}: already {rec['state']}")
            out = dict(rec)
        self.wake.set()
        return out

    def log_path(self, job_id: str) -> Path:
        return self.dir / job_id / "log.txt"

    def result(self, job_id: str) -> Any:
        """The JSON a job printed on stdout (detect --json)."""
        rec = self.get(job_id)
        if not rec["capture"]:
            raise JobError(f"job {job_id}: prints no result", 404)
        if rec["state"] in ACTIVE:
            raise JobError(f"job {job_id}: still {rec['state']}")
        try:
            return json.loads((self.dir / job_id / "out.txt").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise JobError(f"job {job_id}: left no readable result ({rec.get('message') or rec['state']})", 404) from None

    # ------------------------------------------------------------------------------------------------
    # The scheduler.

    def _loop(self) -> None:
        while not self.closing.is_set():
            try:
                self.tick()
            except Exception as e:  # noqa: BLE001 - one bad record must not stop every later job
                print(f"deepfake ui: job scheduler: {type(e).__name__}: {e}", file=sys.stderr)
            self.wake.wait(self.poll_s)
            self.wake.clear()

    def tick(self) -> None:
        """Reap finished jobs, then start queued ones whose device is free."""
        with self.lock:
            recs = sorted(self.records.values(), key=lambda r: r["created"])
            for rec in recs:
                if rec["state"] == "running":
                    self._reap(rec)
            busy = {r["resource"] for r in recs if r["state"] == "running" and r["resource"] is not None}
            for rec in recs:
                if rec["state"] == "queued" and (rec["resource"] is None or rec["resource"] not in busy):
                    self._launch(rec)
                    if rec["resource"] is not None:
                        busy.add(rec["resource"])

    def _launch(self, rec: dict[str, Any]) -> None:
        job_dir = self.dir / rec["id"]
        env = {**os.environ, **(self.env or {}), "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "0.5"}
        command = [*self.command, *rec["argv"][1:]]
        try:
            log = open(job_dir / "log.txt", "ab")
            out = open(job_dir / "out.txt", "wb") if rec["capture"] else log
            with log, out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "deepfake.ui.supervise", str(job_dir), "--", *command],
                    cwd=self.cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=log,
                    start_new_session=True,  # a job outlives the server; Ctrl-C on the server is not for it
                )
        except OSError as e:
            rec.update(state="failed", ended=time.time(), message=f"could not start: {e}")
            self._save(rec)
            return
        self.procs[rec["id"]] = proc
        rec.update(state="running", started=time.time(), pid=proc.pid, pid_start=_proc_start(proc.pid))
        self._save(rec)

    def _reap(self, rec: dict[str, Any]) -> None:
        proc = self.procs.get(rec["id"])
        if proc is not None:
            if proc.poll() is None:
                return
            del self.procs[rec["id"]]
        elif _alive(rec["pid"], rec["pid_start"]):
            return  # adopted after a restart and still running
        rc_file = self.dir / rec["id"] / "rc"
        try:
            rc = int(rc_file.read_text().strip())
        except (OSError, ValueError):
            rc = None
        last = [line for line in joblog.tail(self.log_path(rec["id"]), 8) if line.strip()]
        if rc is None:
            state, message = "failed", "the job's process died without an exit status" + (f": {last[-1]}" if last else "")
        elif rc == 0:
            state, message = ("stopped" if rec["stops"] else "done"), (last[-1] if last else "finished")
        elif rec["stops"] and rc in (-signal.SIGTERM, -signal.SIGKILL, 130, 143):
            state, message = "stopped", f"stopped (exit status {rc})"
        else:
            errors = [line for line in last if line.startswith("error:")]
            state, message = "failed", (errors or last or [f"exit status {rc}"])[-1]
        rec.update(state=state, rc=rc, ended=time.time(), message=message, last_lines=last)
        self._save(rec)
        # Whatever still runs in the job's session (extract's worker processes after a SIGTERM, the CLI
        # process when the supervisor is killed) ends with it. A session id stays reserved while any
        # member lives, so this cannot reach another program.
        self._killpg(rec)

    def _signal(self, rec: dict[str, Any], signum: int) -> None:
        """SIGTERM goes to the supervisor, which passes it to the CLI process (train saves on it);
        SIGKILL goes to the job's whole session."""
        if signum == signal.SIGKILL:
            self._killpg(rec)
            return
        if not _alive(rec["pid"], rec["pid_start"]) and rec["id"] not in self.procs:
            return
        try:
            os.kill(rec["pid"], signum)
        except ProcessLookupError:
            pass

    @staticmethod
    def _killpg(rec: dict[str, Any]) -> None:
        if rec.get("pid"):
            try:
                os.killpg(rec["pid"], signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _save(self, rec: dict[str, Any]) -> None:
        self.records[rec["id"]] = rec
        atomic_write_json(self.dir / rec["id"] / "job.json", rec)
