"""evaluate --timeline: the kept steps of a run side by side, with its under-trained, best and
over-trained columns marked by rules on the validation curve."""

from __future__ import annotations

import dataclasses
import json

import pytest

from deepfake.config import EvaluateConfig
from deepfake.evaluate.timeline import marks, timeline
from deepfake.models import preset_config
from deepfake.train import train


def planted_rows(val: list[float], train: list[float]) -> list[dict]:
    return [{"step": 100 * (i + 1), "loss": t, "val_loss": v} for i, (v, t) in enumerate(zip(val, train))]


def test_marks_find_a_planted_over_fitting_run():
    """Validation falls fast, bottoms out at step 500, then rises while training keeps falling."""
    val = [5.0, 3.0, 2.2, 2.0, 1.9, 2.0, 2.2, 2.5, 2.9]
    train_loss = [5.0, 3.0, 2.1, 1.8, 1.6, 1.4, 1.2, 1.0, 0.8]
    steps = [100 * (i + 1) for i in range(9)]
    m = marks(steps, planted_rows(val, train_loss), patience=3)
    assert m["best"] == 500
    # Under-trained: the last step with more than a quarter of the improvement (5.0 -> 1.9) to come:
    # 1.9 + 0.25 * 3.1 = 2.675, so step 200 (3.0), not 300 (2.2).
    assert m["under"] == 200
    # Over-trained: three validations above the minimum (600, 700, 800) with training lower: step 800.
    assert m["over"] == 800


def test_marks_say_none_when_the_run_is_still_improving():
    val = [5.0, 4.0, 3.2, 2.6, 2.2]
    m = marks([100, 200, 300, 400, 500], planted_rows(val, val), patience=3)
    assert m["best"] == 500 and m["over"] is None and m["under"] == 300
    # Validation rising with training rising too is not over-fitting (the model got worse everywhere).
    m = marks([100, 200, 300, 400, 500, 600], planted_rows([5, 3, 2, 2.5, 3, 3.5], [5, 3, 2, 2.5, 3, 3.5]), patience=2)
    assert m["best"] == 300 and m["over"] is None


def test_timeline_picture_from_kept_steps(faceset_a, faceset_b, tmp_path, one_torch_thread):
    cfg = dataclasses.replace(preset_config("tiny"), steps=12, batch=2, log_every=2, val_every=2, save_every=100,
                              preview_every=0, keep_every=4, device="cpu")
    train(cfg, faceset_a, faceset_b, tmp_path / "m", progress=False)
    result = timeline(tmp_path / "m", faceset_a, faceset_b, tmp_path / "report", EvaluateConfig(device="cpu"), faces=3)
    assert result["steps"] == [4, 8, 12] and result["marks"]["best"] in (4, 8, 12)
    assert (tmp_path / "report" / "timeline.png").stat().st_size > 10_000
    assert f"**best**: step {result['marks']['best']} (" in (tmp_path / "report" / "timeline.md").read_text()
    assert json.loads((tmp_path / "report" / "timeline.json").read_text())["kept_steps"] == [4, 8, 12]
    with pytest.raises(Exception, match="keep-every"):
        timeline(tmp_path / "none", faceset_a, faceset_b, tmp_path / "r2", EvaluateConfig(device="cpu"))
