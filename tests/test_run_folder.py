"""The run folder every training loop shares: its metrics.csv has one writer and one reader (and evaluate
reads the columns training writes), a run limited by time alone shows its bar against the budget, and a
trained folder is resumed, or refused in one line, never trained over."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import time

import pytest

from deepfake.cli import main as cli_main
from deepfake.errors import DeepfakeError, ModelDirError
from deepfake.evaluate.training_log import read_training_log
from deepfake.faceset import read_faceset, side_split, write_manifest
from deepfake.model_dir import load_model_dir, read_config
from deepfake.run_folder import RunBar, read_metrics
from deepfake.train import train
from deepfake.train.metrics import METRIC_FIELDS, write_metrics
from deepfake.train.resume import check_resumable, holds_run


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


# ----------------------------------------------------------------------------------------------------
# Resuming a trained folder: what it refuses, what it says, and what it never does (train over it).


def tiny(**kw):
    from deepfake.models import preset_config

    return dataclasses.replace(preset_config("tiny"), device="cpu", **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, faceset_a, faceset_b, one_torch_thread):
    """A tiny model of 4 steps (batch 2) with snapshots at steps 2 and 4, trained under umask 022."""
    out = tmp_path_factory.mktemp("resume") / "model"
    old = os.umask(0o022)
    try:
        train(tiny(steps=4, batch=2, log_every=2, val_every=2, save_every=2, preview_every=2, keep_every=2),
              faceset_a, faceset_b, out, progress=False)
    finally:
        os.umask(old)
    return out


def copy_of(trained, tmp_path):
    return shutil.copytree(trained, tmp_path / "model")


def test_every_file_of_a_trained_folder_is_readable_by_others(trained):
    """What another user (a dashboard server, a container) needs to load a model: 0666 minus the umask,
    safetensors files included (their writer replaces the temp file with a 0600 one)."""
    modes = {str(p.relative_to(trained)): oct(p.stat().st_mode & 0o777) for p in trained.rglob("*") if p.is_file()}
    assert any(name.endswith(".safetensors") for name in modes)
    assert {name: mode for name, mode in modes.items() if mode != "0o644"} == {}


def test_a_folder_without_a_readable_checkpoint_is_refused_not_trained_over(trained, faceset_a, faceset_b, tmp_path):
    """Weights without checkpoints/ (a copy the README calls a valid --from source), or with every snapshot
    damaged: starting again from random weights would overwrite them. Refused in one line naming what is
    missing or unreadable, and saying how to go on from the weights."""
    model = copy_of(trained, tmp_path)
    shutil.rmtree(model / "checkpoints")
    kept = {name: (model / name).read_bytes() for name in ("autoencoder.safetensors", "metrics.csv", "config.json")}
    with pytest.raises(ModelDirError) as e:
        train(tiny(steps=6, batch=2), faceset_a, faceset_b, model, progress=False)
    assert str(model / "checkpoints") in str(e.value) and f"--from {model}" in str(e.value) and "\n" not in str(e.value)
    assert {name: (model / name).read_bytes() for name in kept} == kept
    damaged = shutil.copytree(trained, tmp_path / "damaged")
    for state in damaged.glob("checkpoints/step_*/state.json"):
        state.write_text("{not json")
    with pytest.raises(ModelDirError, match=re.escape(str(damaged / "checkpoints" / "step_000004" / "state.json"))):
        train(tiny(steps=6, batch=2), faceset_a, faceset_b, damaged, progress=False)


def test_a_damaged_newest_checkpoint_is_skipped_with_a_warning(trained, faceset_a, faceset_b, tmp_path, caplog):
    model = copy_of(trained, tmp_path)
    (model / "checkpoints" / "step_000004" / "state.json").write_text("{not json")
    with caplog.at_level(logging.INFO, logger="deepfake"):
        result = train(tiny(steps=4, batch=2, log_every=2, val_every=2, save_every=2, preview_every=2, keep_every=2),
                       faceset_a, faceset_b, model, progress=False)
    assert result.step == 4
    warned = [r.message for r in caplog.records if r.levelno == logging.WARNING and "step_000004" in r.message]
    assert len(warned) == 1 and "state.json" in warned[0] and "older step 2" in warned[0]


def test_a_resume_refuses_what_moves_its_held_out_faces_and_says_what_it_changes(trained, faceset_a, faceset_b,
                                                                                tmp_path, capsys, caplog):
    """The seed and the split decide which faces are held out: changed mid-run, faces trained on would be
    scored as unseen. The network cannot change either; a different preset would replace the folder's own
    settings. Each is refused in one line naming the field; other options given are applied and listed."""
    model = copy_of(trained, tmp_path)
    saved = (model / "config.json").read_bytes()
    base = ["train", "--a", str(faceset_a), "--b", str(faceset_b), "-o", str(model), "--no-progress"]
    for extra, named in [(["--seed", "5"], "seed is 0 there, 5 here"), (["--val-split", "tail"], "val_split"),
                         (["--val-fraction", "0.2"], "val_fraction is 0.05 there, 0.2 here"),
                         (["--set", "model.activation=gelu"], "model.activation is leaky_relu there, gelu here"),
                         (["--preset", "quick"], "(preset tiny), not --preset quick's")]:
        assert cli_main(base + extra) == 2, extra
        err = capsys.readouterr().err
        assert named in err and err.count("\n") == 1, err
        assert (model / "config.json").read_bytes() == saved
    with caplog.at_level(logging.INFO, logger="deepfake"):
        assert cli_main(base + ["--preset", "tiny", "--batch", "4", "--steps", "6"]) == 0  # the first run's preset again
    resumed = [r.message for r in caplog.records if "resuming" in r.message]
    assert len(resumed) == 1 and "at step 4" in resumed[0] and "batch 2 -> 4" in resumed[0] and "steps 4 -> 6" in resumed[0]
    assert (read_config(model).batch, load_model_dir(model).step) == (4, 6)


def test_a_dry_run_on_a_run_checks_the_resume_and_writes_nothing(trained, tmp_path, capsys):
    model = copy_of(trained, tmp_path)
    saved = (model / "config.json").read_bytes()
    base = ["train", "--a", "A", "--b", "B", "-o", str(model), "--dry-run"]
    assert cli_main(base + ["--preset", "df128"]) == 2  # would not fit the weights
    assert "not --preset df128's" in capsys.readouterr().err
    assert cli_main(base + ["--steps", "8"]) == 0
    assert f"would resume {model} at step 4, changing steps 4 -> 8; nothing written" in capsys.readouterr().out
    assert (model / "config.json").read_bytes() == saved
    # A folder holding a dry run's config.json alone holds no run: --from may start one there.
    fresh = tmp_path / "fresh"
    assert cli_main(["train", "--a", "A", "--b", "B", "-o", str(fresh), "--preset", "tiny", "--dry-run"]) == 0
    assert (fresh / "config.json").is_file() and not holds_run(fresh) and holds_run(model)


def test_weights_that_do_not_match_config_json_are_a_one_line_error(trained, faceset_a, faceset_b, tmp_path):
    model = copy_of(trained, tmp_path)
    data = json.loads((model / "config.json").read_text())
    data["model"]["latent_dims"] //= 2  # a hand edit
    (model / "config.json").write_text(json.dumps(data))
    with pytest.raises(ModelDirError) as e:
        train(read_config(model), faceset_a, faceset_b, model, progress=False)
    message = str(e.value)
    assert message.startswith(str(model / "checkpoints" / "step_000004" / "autoencoder.safetensors"))
    assert str(model / "config.json") in message and "size mismatch" in message and "\n" not in message


def test_a_changed_faceset_names_itself_its_counts_and_what_to_do(trained, faceset_a, faceset_b, tmp_path):
    """Faces appended or removed since the save: the saved data order is over the old faces. The error
    names the side's faceset and both counts, and says how to go on from the weights."""
    fewer = shutil.copytree(faceset_b, tmp_path / "fewer", ignore=shutil.ignore_patterns(".cache"))
    fs = read_faceset(fewer)
    write_manifest(fewer, fs.header, fs.records[:-5])
    before = len(side_split(len(fs), 0.05, 0, "b")[0])
    now = len(side_split(len(fs) - 5, 0.05, 0, "b")[0])
    model = copy_of(trained, tmp_path)
    with pytest.raises(DeepfakeError) as e:
        train(tiny(steps=6, batch=2), faceset_a, fewer, model, progress=False)
    message = str(e.value)
    assert str(fewer) in message and f"{now} training faces now, {before} when" in message
    assert f"--from {model} --reset none" in message


def test_resume_may_switch_decoder_checkpointing_but_not_the_network(tmp_path):
    """Decoder checkpointing changes memory and speed, not the weights: a resume may switch it. Any other
    network field is refused in one line naming it."""
    saved = tiny()
    switched = dataclasses.replace(saved, model=dataclasses.replace(saved.model, checkpoint_decoder=True))
    assert check_resumable(saved, switched, tmp_path, pooled=False) == []
    other = dataclasses.replace(saved, model=dataclasses.replace(saved.model, latent_dims=128))
    with pytest.raises(DeepfakeError, match="model.latent_dims is 64 there, 128 here") as e:
        check_resumable(saved, other, tmp_path, pooled=False)
    assert "\n" not in str(e.value)
