"""evaluate --timeline: the kept steps of a run side by side, with its under-trained, best and
over-trained columns marked by rules on the validation curve."""

from __future__ import annotations

import dataclasses
import json

import pytest

from deepfake.config import EvaluateConfig
from deepfake.evaluate.timeline import marks, timeline, timeline_markdown
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


@pytest.fixture(scope="module")
def kept(faceset_a, faceset_b, tmp_path_factory, one_torch_thread):
    """A tiny run whose weights were kept at steps 4, 8 and 12."""
    cfg = dataclasses.replace(preset_config("tiny"), steps=12, batch=2, log_every=2, val_every=2, save_every=100,
                              preview_every=0, keep_every=4, device="cpu")
    out = tmp_path_factory.mktemp("timeline") / "m"
    train(cfg, faceset_a, faceset_b, out, progress=False)
    return out


def test_timeline_picture_from_kept_steps(kept, faceset_a, faceset_b, tmp_path):
    result = timeline(kept, faceset_a, faceset_b, tmp_path / "report", EvaluateConfig(device="cpu"), faces=3)
    assert result["steps"] == [4, 8, 12] and result["marks"]["best"] in (4, 8, 12)
    assert (tmp_path / "report" / "timeline.png").stat().st_size > 10_000
    assert f"**best**: step {result['marks']['best']} (" in (tmp_path / "report" / "timeline.md").read_text()
    assert json.loads((tmp_path / "report" / "timeline.json").read_text())["kept_steps"] == [4, 8, 12]
    with pytest.raises(Exception, match="keep-every"):
        timeline(tmp_path / "none", faceset_a, faceset_b, tmp_path / "r2", EvaluateConfig(device="cpu"))


def test_best_shows_the_validation_minimum_it_was_marked_by():
    """Kept step 125 lies as near the validation at 120 as the minimum at 130: best reports the minimum."""
    rows = [{"step": s, "loss": 2.0, "val_loss": v} for s, v in ((110, 2.1), (120, 1.936), (130, 1.869), (140, 1.95))]
    steps = [100, 125, 150]
    result = {"direction": "a2b", "steps": steps, "kept_steps": steps, "marks": marks(steps, rows), "picture": "p.png",
              "rules": {"under_fraction": 0.25, "patience": 3, "margin": 0.05}}
    assert result["marks"]["best"] == 125
    assert "**best**: step 125 (training loss 2, validation 1.869 at step 130)" in timeline_markdown(result, "m", rows)


def timeline_cli(model, a, b, out, *more) -> list[str]:
    return ["evaluate", "-m", str(model), "--a", str(a), "--b", str(b), "-o", str(out), "--device", "cpu",
            "--timeline", *more]


@pytest.mark.parametrize("more, words", [
    (["--checkpoint", "best"], "leave out --checkpoint best"),
    (["--distractors", "x"], "leave out --distractors"),
    (["--frames", "x.mp4"], "--timeline measures no flicker"),
])
def test_timeline_refuses_what_it_would_ignore(kept, faceset_a, faceset_b, tmp_path, capsys, more, words):
    from deepfake.cli import main

    assert main(timeline_cli(kept, faceset_a, faceset_b, tmp_path / "r", *more)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


def test_timeline_refuses_a_file_as_output_and_other_facesets(kept, faceset_a, faceset_b, tmp_path, capsys):
    import shutil

    from deepfake.cli import main
    from deepfake.faceset import read_faceset, write_manifest

    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(timeline_cli(kept, faceset_a, faceset_b, afile)) == 2
    assert capsys.readouterr().err == f"error: {afile}: timeline output exists and is not a folder\n"
    assert main(timeline_cli(kept, faceset_b, faceset_a, tmp_path / "r")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --a and --b look swapped") and err.count("\n") == 1, err
    fewer = tmp_path / "fewer"  # B's faceset with faces removed since training
    shutil.copytree(faceset_b, fewer, ignore=shutil.ignore_patterns(".cache"))
    fs = read_faceset(fewer)
    write_manifest(fewer, fs.header, fs.records[:-10])
    assert main(timeline_cli(kept, faceset_a, fewer, tmp_path / "r")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {fewer}: not the faceset side B trained on") and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


def test_timeline_rows_follow_max_faces(kept, faceset_a, faceset_b, tmp_path, capsys):
    from deepfake.cli import main

    assert main(timeline_cli(kept, faceset_a, faceset_b, tmp_path / "r", "--max-faces", "2")) == 0
    assert json.loads((tmp_path / "r" / "timeline.json").read_text())["faces"] == 2
