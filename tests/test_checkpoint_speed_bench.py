"""The checkpoint speed and compile scope benchmarks run end to end in their CPU --quick modes (smoke tests: no speed claims)."""

from __future__ import annotations

import importlib.util
import json
import time

import pytest

from conftest import ROOT


def test_quick_mode_reports_both_ways_of_saving(tmp_path):
    spec = importlib.util.spec_from_file_location("checkpoint_speed", ROOT / "benchmarks" / "checkpoint_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "ckpt.json"
    assert bench.main(["--quick", "--dir", str(tmp_path), "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    assert row["preset"] == "tiny" and row["device"] == "cpu" and row["written_MiB"] > 1
    for key in ("in_loop_s", "submit_s", "behind_s", "loop_wait_ratio"):
        assert row[key] > 0, key
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.json"]  # the model folders are gone


def _load_compile_scope():
    spec = importlib.util.spec_from_file_location("compile_scope", ROOT / "benchmarks" / "compile_scope.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_compile_scope_quick_mode_times_both_scopes_in_turns(tmp_path):
    """benchmarks/compile_scope.py runs the phases and the whole step side by side (eager in --quick) and
    reports both, from the same weights: their first steps' logged losses agree."""
    bench = _load_compile_scope()
    out = tmp_path / "scope.json"
    assert bench.main(["--quick", "--json", str(out)]) == 0
    phases, step = json.loads(out.read_text())["rows"]
    assert (phases["scope"], step["scope"]) == ("phases", "step") and phases["preset"] == "tiny"
    for row in (phases, step):
        assert len(row["round_ms"]) == 2 and all(ms > 0 for ms in row["round_ms"]) and row["faces_per_s"] > 0
        assert row["first_step_s"] > 0 and row["gflop_per_step"] > 0 and row["mfu_pct"] > 0
    assert step["step_over_phases"] == round(phases["median_ms"] / step["median_ms"], 3)
    assert step["gflop_per_step"] == phases["gflop_per_step"]  # one count: the same arithmetic
    assert step["first_loss"] == pytest.approx(phases["first_loss"], rel=1e-5) and phases["first_loss"] > 0
    # The CPU's memory column: what one more step held above what was in use when it began.
    assert phases["step_heap_mib"] > 0 and step["step_heap_mib"] > 0


def test_heap_peak_sees_a_transient_tensor_and_not_a_freed_one():
    """compile_scope.py's CPU memory column: the peak above the start, not the sum of allocations."""
    bench = _load_compile_scope()
    heap = bench.HeapPeak()
    if heap._mallinfo2 is None:
        pytest.skip("this C library has no mallinfo2 (glibc >= 2.33)")
    import torch

    def twice():
        for _ in range(2):  # 64 MiB, held 50 ms, freed; then again
            x = torch.ones(16 * 2**20)
            time.sleep(0.05)
            del x

    grew = heap.during(twice) / 2**20
    assert 64 <= grew < 100, grew  # one at a time: about 64 MiB, not 128
    assert heap.during(lambda: None) / 2**20 < 8


def test_compile_scope_reports_a_failing_scope_and_times_the_other(tmp_path, monkeypatch, capsys):
    """A scope that breaks on the device (the whole step has not yet run on CUDA) must not cost the GPU
    session the other scope's numbers: its error is reported and the phases are timed."""
    bench = _load_compile_scope()
    real_make_step = bench.make_step

    class Broken:
        def step(self, *args):
            raise RuntimeError("simulated: this device cannot run the whole step\nsecond line")

    def make_step(cfg, *args):
        return Broken() if cfg.compile_scope == "step" else real_make_step(cfg, *args)

    monkeypatch.setattr(bench, "make_step", make_step)
    out = tmp_path / "scope.json"
    assert bench.main(["--quick", "--json", str(out)]) == 1  # a failed scope fails the run
    phases, step = json.loads(out.read_text())["rows"]
    assert step["error"] == "RuntimeError: simulated: this device cannot run the whole step"
    assert "first_step_s" not in step and "step_over_phases" not in step
    assert len(phases["round_ms"]) == 2 and phases["faces_per_s"] > 0 and "error" not in phases
    assert "| step | failed: RuntimeError: simulated" in capsys.readouterr().out
