"""Checkpoints written on a background thread: the snapshot is the state at submit, writes land in order,
errors surface, and the training loop runs on while the disk works."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
import torch

import deepfake.train.checkpoint_writer as writer_module
import deepfake.train.loop as train_module
from deepfake.model_dir import list_snapshots
from deepfake.train.checkpoint import latest_snapshot, save_snapshot
from deepfake.train.checkpoint_writer import SnapshotWriter
from deepfake.models import preset_config
from test_checkpoint import tiny_snapshot


def test_background_write_equals_a_direct_write(tmp_path):
    snap, _ = tiny_snapshot(5)
    save_snapshot(tmp_path / "direct", snap)
    with SnapshotWriter(tmp_path / "background") as saver:
        saver.submit(snap)
    direct, background = latest_snapshot(tmp_path / "direct"), latest_snapshot(tmp_path / "background")
    assert background.step == direct.step == 5 and saver.last_step == 5
    for name in ("autoencoder", "discriminator"):
        a, b = getattr(direct, name), getattr(background, name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert background.optimizer_g["param_groups"] == direct.optimizer_g["param_groups"]
    for i, st in direct.optimizer_g["state"].items():
        assert all(torch.equal(v, background.optimizer_g["state"][i][k]) for k, v in st.items())
    assert background.state == direct.state


def test_the_snapshot_is_the_state_at_submit(tmp_path, monkeypatch):
    """The loop updates weights and optimizer moments in place right after saving, and appends to its
    bookkeeping: none of that may reach the file being written."""
    release = threading.Event()
    real = writer_module.save_snapshot

    def held_back(*args, **kwargs):
        assert release.wait(30), "the test never released the write"
        return real(*args, **kwargs)

    monkeypatch.setattr(writer_module, "save_snapshot", held_back)
    snap, ae = tiny_snapshot(3)
    snap.state["overfit_history"] = [[1, 0.5, 0.6]]
    before = {k: v.clone() for k, v in snap.autoencoder.items()}
    moments = {i: st["exp_avg"].clone() for i, st in snap.optimizer_g["state"].items()}
    saver = SnapshotWriter(tmp_path)
    saver.submit(snap)
    assert saver.busy()
    with torch.no_grad():
        for p in ae.parameters():
            p.add_(1.0)  # what the next optimizer step does, in place
    for st in snap.optimizer_g["state"].values():
        st["exp_avg"].mul_(-3)
    snap.state["overfit_history"].append([2, 0.4, 0.7])
    release.set()
    saver.close()
    saved = latest_snapshot(tmp_path)
    assert all(torch.equal(saved.autoencoder[k], v) for k, v in before.items())
    assert not torch.equal(saved.autoencoder["encoder.body.0.0.weight"], ae.state_dict()["encoder.body.0.0.weight"])
    assert all(torch.equal(saved.optimizer_g["state"][i]["exp_avg"], m) for i, m in moments.items())
    assert saved.state["overfit_history"] == [[1, 0.5, 0.6]]


def test_writes_land_in_step_order_one_at_a_time(tmp_path, monkeypatch):
    running, most = [0], [0]
    lock = threading.Lock()
    real = writer_module.save_snapshot

    def counted(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(writer_module, "save_snapshot", counted)
    with SnapshotWriter(tmp_path, keep=10) as saver:
        for step in (1, 2, 3, 4):
            saver.submit(tiny_snapshot(step)[0])
    assert [p.name for p in list_snapshots(tmp_path)] == [f"step_{s:06d}" for s in (1, 2, 3, 4)]
    assert most[0] == 1


def test_a_failed_write_is_raised_by_the_next_call(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer_module, "save_snapshot", full_disk)
    saver = SnapshotWriter(tmp_path)
    saver.submit(tiny_snapshot(1)[0])  # returns: the write fails on the thread
    with pytest.raises(OSError, match="No space left"):
        saver.close()
    saver.submit(tiny_snapshot(2)[0])
    with pytest.raises(OSError, match="No space left"):
        saver.submit(tiny_snapshot(3)[0])
    saver.close()  # the error was raised once; nothing is pending


def test_training_goes_on_while_a_checkpoint_is_written(faceset_a, faceset_b, tmp_path, monkeypatch):
    """The write of step 4's checkpoint is held until the loop has started two more steps. Written in the
    loop, as before, the loop could not move on: the write would give up waiting and the test fail."""
    steps_started = [0]
    advanced: dict[int, bool] = {}
    real = writer_module.save_snapshot

    class CountingTimer(train_module.StepTimer):
        def data_start(self):
            steps_started[0] += 1
            super().data_start()

    def slow_disk(model_dir, snap, keep=3):
        if snap.step == 4:
            target = steps_started[0] + 2
            for _ in range(400):  # up to 20 s
                if steps_started[0] >= target:
                    break
                threading.Event().wait(0.05)
            advanced[snap.step] = steps_started[0] >= target
        return real(model_dir, snap, keep=keep)

    monkeypatch.setattr(train_module, "StepTimer", CountingTimer)
    monkeypatch.setattr(writer_module, "save_snapshot", slow_disk)
    cfg = dataclasses.replace(preset_config("tiny"), steps=12, batch=4, log_every=4, val_every=0, save_every=4,
                              preview_every=0, keep_backups=5)
    result = train_module.train(cfg, faceset_a, faceset_b, tmp_path / "m", progress=False)
    assert advanced == {4: True}
    assert result.step == 12
    assert [p.name for p in list_snapshots(tmp_path / "m")] == ["step_000004", "step_000008", "step_000012"]
    assert latest_snapshot(tmp_path / "m").step == 12  # train() returns after its last write


def test_reused_host_buffers_do_not_leak_one_save_into_another(tmp_path):
    """The writer copies every save into the same host buffers: each folder must still hold its own step."""
    snap, ae = tiny_snapshot(1)
    with SnapshotWriter(tmp_path, keep=10) as saver:
        saver.submit(snap)
        first = {k: v.clone() for k, v in snap.autoencoder.items()}
        with torch.no_grad():
            for p in ae.parameters():
                p.mul_(-2.0)
        snap.step = 2
        saver.submit(snap)
    from deepfake.train.checkpoint import load_snapshot

    one, two = (load_snapshot(p) for p in list_snapshots(tmp_path))
    assert (one.step, two.step) == (1, 2)
    assert all(torch.equal(one.autoencoder[k], v) for k, v in first.items())
    assert all(torch.equal(two.autoencoder[k], v * -2.0) for k, v in first.items() if v.is_floating_point())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_on_cuda_a_save_does_not_wait_for_the_queued_steps(tmp_path):
    """After the first save (which allocates the pinned host buffers), the copies are queued behind the
    work so far: submit returns while a one-second kernel still runs, and the file holds the values from
    before the update queued after it."""
    w = torch.full((256, 256), 2.0, device="cuda")
    snap, _ = tiny_snapshot(1)
    snap.autoencoder = {"w": w}
    saver = SnapshotWriter(tmp_path)
    saver.submit(snap)
    saver.wait()
    torch.cuda.synchronize()
    torch.cuda._sleep(2_000_000_000)  # stands for the steps still queued (about a second)
    w.add_(1.0)  # the last update before the save: 3.0
    snap.step = 2
    t0 = time.perf_counter()
    saver.submit(snap)
    took = time.perf_counter() - t0
    busy = not torch.cuda.current_stream().query()
    w.add_(10.0)  # queued after the save: must not reach the file
    saver.close()
    print(f"submit took {took * 1e3:.1f} ms while the queue was busy: {busy}")
    assert busy and took < 0.3
    saved = latest_snapshot(tmp_path)
    assert saved.step == 2 and torch.equal(saved.autoencoder["w"], torch.full((256, 256), 3.0))
