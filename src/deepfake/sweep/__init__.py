"""Sweeps: train a grid of variants of one config and rank them by measured quality. grid.py the grid
(KEY=v1,v2 axes, overrides, names), run.py training and evaluating each variant with resume, report.py
the results table and plots."""
