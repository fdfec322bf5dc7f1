"""Measured quality: metrics.py (pure metric functions), runner.py (a model over held-out faces or a
video), measure.py (dlib landmarks, pose and identity of swaps), training_log.py (the run's metrics.csv),
report.py (metrics.json and report.md), plots.py (loss curves, metric bars, swap grids, sweep plots)."""
