"""The dashboard's job records and queue (deepfake.ui.jobs), with a stand-in for the CLI: queueing per
device, cancel, stop (SIGTERM), a process that dies, adoption after a restart, atomic records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi")

from deepfake.errors import DeepfakeError  # noqa: E402
from deepfake.ui.jobs import JobManager  # noqa: E402

# Stands in for `python -m deepfake ...`: "sleep S [--trap]" (with --trap, SIGTERM saves and exits 0
# as `deepfake train` does), "fail" (one error line, exit 2).
STAND_IN = r"""
import signal, sys, time
args = sys.argv[1:]
if args[0] == "sleep":
    if "--trap" in args:
        def saved(*_):
            print("SIGTERM: saved at step 7; run the same command again to resume", flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, saved)
    print("started", flush=True)
    time.sleep(float(args[1]))
    print("finished", flush=True)
elif args[0] == "fail":
    print("working", flush=True)
    print("error: in.mp4: not a readable video", file=sys.stderr, flush=True)
    sys.exit(2)
"""


def manager(tmp_path) -> JobManager:
    return JobManager(tmp_path / ".jobs", tmp_path, poll_s=0.05, command=[sys.executable, "-c", STAND_IN]).start()


def wait_for(jobs: JobManager, job_id: str, states: tuple[str, ...], timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = jobs.get(job_id)
        if rec["state"] in states:
            return rec
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {jobs.get(job_id)['state']}, expected {states}")


def submit(jobs: JobManager, *argv: str, resource: str | None = "cpu") -> dict:
    return jobs.submit("test", list(argv), resource=resource, title=" ".join(argv), spec={})


@pytest.fixture
def jobs(tmp_path):
    m = manager(tmp_path)
    yield m
    m.stop_all(timeout=5)
    m.close()


def test_same_device_queues_and_a_queued_job_cancels(jobs):
    first = submit(jobs, "sleep", "1.5")
    second = submit(jobs, "sleep", "0")
    third = submit(jobs, "sleep", "0")
    wait_for(jobs, first["id"], ("running",))
    listed = {r["id"]: r for r in jobs.list()}
    assert listed[second["id"]]["state"] == "queued" and listed[second["id"]]["queue_position"] == 1
    assert listed[third["id"]]["queue_position"] == 2
    assert jobs.stop(second["id"])["state"] == "cancelled"
    done = wait_for(jobs, third["id"], ("done",))
    assert done["started"] >= jobs.get(first["id"])["ended"] - 0.01  # waited for the device
    assert jobs.get(second["id"])["started"] is None
    assert not (jobs.dir / second["id"] / "log.txt").exists()


def test_other_devices_and_deviceless_jobs_run_at_once(jobs):
    busy = submit(jobs, "sleep", "2")
    other = submit(jobs, "sleep", "0", resource="cuda:0")
    free = submit(jobs, "sleep", "0", resource=None)
    wait_for(jobs, other["id"], ("done",))
    wait_for(jobs, free["id"], ("done",))
    assert jobs.get(busy["id"])["state"] == "running"


def test_stop_sends_sigterm_and_the_job_saves(jobs):
    job = submit(jobs, "sleep", "30", "--trap")
    wait_for(jobs, job["id"], ("running",))
    # The stand-in prints "started" once its handler is in, as train installs its own before its first
    # step; a fixed pause is too short on a loaded machine.
    deadline = time.monotonic() + 20
    while "started" not in (jobs.log_path(job["id"]).read_text() if jobs.log_path(job["id"]).exists() else ""):
        assert time.monotonic() < deadline, "the stand-in never started"
        time.sleep(0.05)
    jobs.stop(job["id"])
    rec = wait_for(jobs, job["id"], ("stopped", "failed"))
    assert rec["state"] == "stopped" and rec["rc"] == 0
    assert rec["message"].startswith("SIGTERM: saved at step 7")


def test_a_failing_job_shows_the_cli_error(jobs):
    rec = wait_for(jobs, submit(jobs, "fail")["id"], ("failed",))
    assert rec["rc"] == 2 and rec["message"] == "error: in.mp4: not a readable video"
    assert "working" in rec["last_lines"]


def test_a_job_whose_process_died_is_failed_with_its_last_lines(jobs):
    job = submit(jobs, "sleep", "30")
    rec = wait_for(jobs, job["id"], ("running",))
    deadline = time.monotonic() + 10
    while "started" not in (jobs.dir / job["id"] / "log.txt").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(rec["pid"], signal.SIGKILL)  # the supervisor: no exit status is ever written
    rec = wait_for(jobs, job["id"], ("failed",))
    assert rec["rc"] is None
    assert rec["message"] == "the job's process died without an exit status: started"


def test_records_survive_a_restart_and_running_jobs_are_adopted(tmp_path):
    first = manager(tmp_path)
    running = submit(first, "sleep", "2")
    finished = submit(first, "fail", resource=None)
    wait_for(first, finished["id"], ("failed",))
    wait_for(first, running["id"], ("running",))
    first.close()  # the job keeps running without its server

    second = manager(tmp_path)
    try:
        assert second.get(finished["id"])["state"] == "failed"
        assert second.get(running["id"])["state"] == "running"
        rec = wait_for(second, running["id"], ("done", "failed"), timeout=30)
        assert rec["state"] == "done" and rec["rc"] == 0  # the exit status came through supervise.py
    finally:
        second.stop_all(timeout=5)
        second.close()


def test_a_record_left_running_by_a_dead_process_is_failed_on_start(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    job_dir = tmp_path / ".jobs" / "20240101-000000-abcdef"
    job_dir.mkdir(parents=True)
    (job_dir / "log.txt").write_text("step 10\rstep 20\rstep 30\nerror: out of memory\n")
    rec = {"id": job_dir.name, "kind": "train", "title": "train ab", "argv": ["deepfake", "train"], "resource": "cpu",
           "state": "running", "created": 1.0, "started": 1.0, "ended": None, "pid": dead.pid, "pid_start": "1",
           "rc": None, "stops": 0, "capture": False, "spec": {}, "targets": {}, "dedupe": None, "message": None}
    (job_dir / "job.json").write_text(json.dumps(rec))
    jobs = manager(tmp_path)
    try:
        rec = wait_for(jobs, job_dir.name, ("failed",))
        assert rec["message"].endswith("error: out of memory")
        assert rec["last_lines"] == ["step 30", "error: out of memory"]  # as a terminal showed them
    finally:
        jobs.close()


def test_records_are_written_atomically_and_one_server_holds_a_workspace(jobs, tmp_path):
    rec = wait_for(jobs, submit(jobs, "sleep", "0")["id"], ("done",))
    on_disk = json.loads((jobs.dir / rec["id"] / "job.json").read_text())
    assert on_disk["state"] == "done" and on_disk["rc"] == 0
    assert not [p for p in (jobs.dir / rec["id"]).iterdir() if p.name.startswith(".")]  # no temp files left
    with pytest.raises(DeepfakeError, match="another `deepfake ui`"):
        manager(tmp_path)


def test_dedupe_returns_the_active_job(jobs):
    a = jobs.submit("test", ["sleep", "1"], resource="cpu", title="x", spec={}, dedupe="info:a")
    b = jobs.submit("test", ["sleep", "1"], resource="cpu", title="x", spec={}, dedupe="info:a")
    assert a["id"] == b["id"]
