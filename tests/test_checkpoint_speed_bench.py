"""The checkpoint speed benchmark runs end to end in its CPU --quick mode (a smoke test: no speed claims)."""

from __future__ import annotations

import importlib.util
import json


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
