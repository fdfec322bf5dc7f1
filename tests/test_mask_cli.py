"""`deepfake mask train|apply|label` through the CLI: parsing, resolved configs, one-line errors."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from deepfake.cli import build_parser, main
from deepfake.config_io import load_json, save_json
from deepfake.segment.checkpoint import load_mask_model
from deepfake.config import MaskTrainConfig

TINY = ["--resolution", "32", "--set", "model.base_channels=2", "--set", "model.max_channels=4",
        "--set", "model.depth=2", "--batch", "2", "--set", "log_every=1", "--set", "val_faces=2"]


def test_help_defaults_match_the_config():
    """The help of options that fall back to the config names its defaults: keep them in step."""
    p = build_parser(only="mask")
    sub = next(a for a in p._actions if getattr(a, "choices", None) and "mask" in a.choices).choices["mask"]
    train = next(a for a in sub._actions if getattr(a, "choices", None) and "train" in a.choices).choices["train"]
    text = " ".join(train.format_help().split())
    d = MaskTrainConfig()
    for option, value in (("--pretrain-steps", d.pretrain_steps), ("--steps", d.steps),
                          ("--resolution", d.model.resolution), ("--batch", d.batch), ("--lr", f"{d.lr:.0e}".replace("e-03", "e-3"))):
        assert re.search(rf"{option} \S+ .*?\(default {value}", text), option
    assert d.region == "whole"


def test_dry_run_resolves_and_saves_the_config(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["mask", "train", "fs", "-o", str(out), "--steps", "7", "--pretrain-steps", "3", "--mask-region", "full",
                 "--set", "augment.jpeg=0.5", "--dry-run"]) == 0
    cfg = load_json(MaskTrainConfig, out / "config.json")
    assert (cfg.steps, cfg.pretrain_steps, cfg.region, cfg.augment.jpeg) == (7, 3, "full", 0.5)
    assert json.loads(capsys.readouterr().out.split("\nsaved")[0])["region"] == "full"
    save_json(cfg, tmp_path / "c.json")
    assert load_json(MaskTrainConfig, tmp_path / "c.json") == cfg


@pytest.mark.parametrize("argv, words", [
    (["--set", "steps=1e3"], ["steps", "whole number"]),
    (["--set", "model.widht=3"], ["unknown config field", "model.widht"]),
    (["--set", "region=head"], ["region 'head'"]),
    (["--minutes", "0"], ["--minutes 0"]),
])
def test_bad_options_are_one_line(tmp_path, capsys, argv, words):
    assert main(["mask", "train", "fs", "-o", str(tmp_path / "m"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    for w in words:
        assert w in err, err


@pytest.mark.parametrize("more", [["--steps", "2"], ["--dry-run"]])
def test_a_file_as_output_is_one_line(tmp_path, capsys, more):
    """Refused before the facesets are read (this one does not exist) or anything is written."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["mask", "train", str(tmp_path / "fs"), "-o", str(afile), *TINY, *more]) == 2
    assert capsys.readouterr().err == f"error: {afile}: mask model output exists and is not a folder\n"
    assert afile.read_text() == "x"


def test_missing_mask_model_is_one_line(tmp_path, capsys, faceset_a):
    assert main(["mask", "apply", str(faceset_a), "-m", str(tmp_path / "nope")]) == 2
    assert "mask model folder does not exist" in capsys.readouterr().err


@pytest.mark.media
@pytest.mark.slow
def test_train_apply_label_end_to_end(faceset_a, tmp_path, capsys, one_torch_thread):
    fs = tmp_path / "fs"
    shutil.copytree(faceset_a, fs, ignore=shutil.ignore_patterns(".cache"))
    model = tmp_path / "m"
    assert main(["mask", "train", str(fs), "-o", str(model), "--steps", "2", "--no-progress", *TINY]) == 0
    out = capsys.readouterr().out
    assert "step 2 (pretrain)" in out and "no labels: hull targets only" in out and "reached the step limit (2)" in out
    assert main(["mask", "train", str(fs), "-o", str(model), "--steps", "3", "--no-progress"]) == 0  # resumes
    assert load_mask_model(model).step == 3
    assert main(["mask", "apply", str(fs), "-m", str(model), "--device", "cpu", "--no-progress"]) == 0
    assert "wrote 60 segmenter masks" in capsys.readouterr().out
    assert main(["mask", "label", str(fs), "--export", "-n", "4", "-m", str(model), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "0 of 60 faces labelled" in out and "4 faces worth labelling (2 pose, 2 unsure)" in out
    assert (fs / "labels_todo.png").is_file()

    (fs / "labels.json").write_text('{"schema": "deepfake.mask_labels", "version": 1, "faces": '
                                    '{"faces/000003.png": {"include": [[[1, 1], [300, 1], [5, 9]]]}}}', encoding="utf-8")
    assert main(["mask", "label", str(fs)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "labels.json: face faces/000003.png: include polygon 1: point (300, 1) is outside" in err
    assert main(["mask", "train", str(fs), "-o", str(tmp_path / "m2"), "--steps", "1", "--no-progress", *TINY]) == 2
    assert "faces/000003.png" in capsys.readouterr().err
