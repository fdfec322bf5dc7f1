"""Measured quality: metrics.py (pure metric functions), runner.py (a model over held-out faces or a
video), report.py (metrics.json and report.md), plots.py (loss curves, metric bars, swap grids, sweep plots)."""
