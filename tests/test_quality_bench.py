"""The quality benchmark runs end to end in its --quick mode on real faces (a smoke test: the numbers of
a few seconds' training mean nothing; benchmarks/RESULTS.md has the 4-minute run)."""

from __future__ import annotations

import importlib.util
import json

from conftest import ROOT


def test_quick_mode_measures_both_presets_side_by_side(faceset_a, faceset_b, tmp_path, one_torch_thread, capsys):
    spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "quality.json"
    args = ["--quick", "--a", str(faceset_a), "--b", str(faceset_b), "--work", str(tmp_path / "w"), "--json", str(out)]
    assert bench.main(args) == 0
    report = json.loads(out.read_text())
    assert report["presets"] == ["tiny", "quick"]
    for name in ("tiny", "quick"):
        r = report["results"][name]
        assert r["steps"] > 0 and 0 < r["ssim"] <= 1 and 0 <= r["verification"] <= 1 and r["sharpness_ratio"] > 0
    assert set(report["verdict"]["quick"]) == {"masked SSIM higher by >= 0.03", "swap verification higher",
                                               "swap sharpness closer to the real faces'"}
    printed = capsys.readouterr().out
    assert "quick - tiny" in printed and "masked SSIM" in printed
