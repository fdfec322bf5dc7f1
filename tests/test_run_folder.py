"""The run folder every training loop shares: its metrics.csv has one writer and one reader (and evaluate
reads the columns training writes), and a run limited by time alone shows its bar against the budget."""

from __future__ import annotations

import time

import pytest

from deepfake.evaluate.training_log import read_training_log
from deepfake.run_folder import RunBar, read_metrics
from deepfake.train.metrics import METRIC_FIELDS, write_metrics


def test_metrics_round_trip_and_evaluate_reads_the_written_columns(tmp_path):
    rows = [{"step": 10, "loss": 0.5, "loss_a": 0.6, "val_loss": None, "wall_s": 12.0, "faces_per_s": 40.0,
             "gpu_busy": 0.8, "peak_mem_gib": 1.5},
            {"step": 20, "loss": 0.25, "val_loss": 0.3, "wall_s": 24.0, "faces_per_s": 44.0, "gpu_busy": 0.9,
             "peak_mem_gib": 1.75, "not_a_column": 1}]
    write_metrics(tmp_path / "metrics.csv", rows)
    back = read_metrics(tmp_path / "metrics.csv")
    assert list(back[0]) == list(METRIC_FIELDS) and "not_a_column" not in back[1]
    assert [r["step"] for r in back] == [10, 20] and back[0]["val_loss"] is None and back[1]["loss"] == 0.25
    log = read_training_log(tmp_path)
    assert log["train"] == ([10.0, 20.0], [0.5, 0.25]) and log["val"] == ([20.0], [0.3])
    assert (log["steps"], log["wall_seconds"], log["faces_per_s"], log["peak_mem_gib"]) == (20, 24.0, 42.0, 1.75)
    assert log["gpu_busy"] == pytest.approx(0.85)
    assert log["throughput"] == ([10.0, 20.0], [40.0, 44.0], [0.8, 0.9])


def test_a_time_budgeted_bar_counts_seconds_of_the_budget(capsys):
    bar = RunBar(start=5, end=None, minutes=2.0, enabled=True)
    assert bar.by_time and bar.total == 120  # not a billion steps
    bar.t0 -= 30  # half a minute spent
    bar.advance(7)
    assert bar.n == 30 and bar.desc == "step 7"
    bar.t0 = time.perf_counter() - 1000  # past the budget: the bar stops at its end
    bar.advance(8)
    assert bar.n == 120
    bar.close()
    steps = RunBar(start=5, end=9, minutes=2.0, enabled=True)  # a step limit: steps, whatever the budget
    steps.advance(6)
    assert not steps.by_time and (steps.n, steps.total) == (6, 9)
    steps.close()
    assert "/120 [" in capsys.readouterr().err  # what `deepfake demo` shows: seconds of its budget
