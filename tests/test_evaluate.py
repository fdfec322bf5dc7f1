"""evaluate end to end on a tiny model trained a few steps on real faces; the CLI for evaluate and detect."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from conftest import media_path
from deepfake.config import EvaluateConfig
from deepfake.evaluate.plots import overfit_step
from deepfake.train.metrics import OverfitWatch, overfit_start

STEPS = 10


@pytest.fixture(scope="module")
def model_dir(faceset_a, faceset_b, tmp_path_factory):
    """The tiny preset with a discriminator (gan_weight > 0), so the detector numbers can be measured."""
    from deepfake.models.presets import preset_config
    from deepfake.train import train

    cfg = preset_config("tiny")
    cfg = replace(cfg, steps=STEPS, val_every=5, save_every=1000, preview_every=1000, log_every=2, device="cpu",
                  loss=replace(cfg.loss, gan_weight=0.1))
    out = tmp_path_factory.mktemp("eval") / "model"
    train(cfg, faceset_a, faceset_b, out, progress=False)
    return out


@pytest.fixture(scope="module")
def distractors(tmp_path_factory):
    """Two more people for the retrieval gallery: woman C (d3.mp4) and man D (d18.mp4), 8 frames each."""
    from deepfake.config import ExtractConfig
    from deepfake.extract import extract

    out = []
    for clip, name in (("d3.mp4", "woman_c"), ("d18.mp4", "man_d")):
        folder = tmp_path_factory.mktemp("distractors") / name
        extract([media_path(clip)], folder, ExtractConfig(size=64, frames=8, workers=1), progress=False)
        out.append(str(folder))
    return out


def test_evaluate_writes_metrics_and_report(model_dir, faceset_a, faceset_b, distractors, tmp_path):
    from deepfake.evaluate.runner import evaluate_model

    cfg = EvaluateConfig(max_faces=3, max_frames=6, device="cpu", distractors=distractors)
    evaluate_model(model_dir, faceset_a, faceset_b, tmp_path, cfg, frames=media_path("d14.mp4"))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["summary"]["steps"] == STEPS and saved["step"] == STEPS

    for side in ("a", "b"):
        r = saved["reconstruction"][side]
        assert r["n"] == saved["held_out"][side] > 0
        assert 0 < r["ssim"] < 1 and 5 < r["psnr"] < 60
        assert 0 < r["sharpness_ratio"] < 10
    assert list(saved["identities"]) == ["a", "b", "woman_c", "man_d"]
    assert saved["identities"]["man_d"]["role"] == "distractor" and saved["identities"]["man_d"]["faces"] == 8
    for name in ("a2b", "b2a"):
        d = saved["swap"][name]
        assert 0 <= d["verification"] <= 1 and d["id_dist_source"] > 0 and d["id_dist_target"] > 0
        assert 0 <= d["retrieval"] <= 1 and 0 < d["sharpness_ratio"] < 10
        assert sum(d["retrieved_as"].values()) == d["n"]
        assert d["retrieval"] == d["retrieved_as"][d["source"]] / d["n"]
        # Real held-out faces are retrieved as themselves among all four people.
        assert d["reference"]["real_target_retrieved_as_target"] == 1.0
        assert 0 < d["landmark_error"] < 1  # a face-shaped output keeps the landmarks within an eye distance
        assert all(np.isfinite(d["pose_error"][k]) for k in ("yaw", "pitch", "roll", "mean"))
        # The pipeline itself identifies people: real held-out faces are verified as themselves.
        assert d["reference"]["real_target_to_target"] < 0.6 < d["reference"]["real_target_to_source"]
    summary = saved["summary"]
    n = [saved["swap"][k]["n"] for k in ("a2b", "b2a")]
    assert summary["retrieval"] == pytest.approx(
        sum(saved["swap"][k]["retrieval"] * m for k, m in zip(("a2b", "b2a"), n)) / sum(n))
    assert summary["sharpness_ratio"] > 0 and summary["recon_sharpness_ratio"] > 0
    print(f"\nretrieval over 4 identities ({STEPS} steps): {summary['retrieval']:.3f}; sharpness ratio: swaps "
          f"{summary['sharpness_ratio']:.3f}, reconstructions {summary['recon_sharpness_ratio']:.3f}")
    t = saved["temporal"]
    assert t["frames"] == 6 and t["original_change"] > 0 and t["flicker_ratio"] >= 0
    d = saved["discriminator"]
    assert d["n_real"] == d["n_fake"] > 0 and 0 <= d["auc"] <= 1 and 0 <= d["accuracy"] <= 1
    print(f"\nthe model's discriminator on held-out real faces vs its own swaps ({STEPS} steps): "
          f"accuracy {d['accuracy']:.3f}, ROC-AUC {d['auc']:.3f} ({d['n_real']} real, {d['n_fake']} swaps)")
    c = saved["cost"]
    assert c["params_autoencoder"] > 0 and c["params_discriminator"] > 0 and c["faces_per_s"] > 0
    assert 0 < c["gpu_busy"] <= 1 and c["peak_mem_gib"] is None  # CPU: no CUDA peak

    report = (tmp_path / "report.md").read_text()
    for needle in ("## Reconstruction", "| DeepFaceLab | 0.730 |", "**this model**", "generalises poorly",
                   "## Metric definitions", "inter-ocular", "flicker ratio", "**Retrieval**", "argmax",
                   "**Sharpness ratio**", "| sharpness ratio |", "`woman_c`"):
        assert needle in report, needle
    assert "![throughput](throughput.png)" in report and "| device busy |" in report
    for png in ("loss_curves.png", "metric_bars.png", "swap_grid.png", "throughput.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_overfitting_is_the_validation_minimum_with_training_still_falling():
    """One rule for training's warning and evaluate's plot: the validation minimum, once `patience`
    validations after it all lie above it while the training loss fell."""
    steps = [100, 200, 300, 400, 500, 600]
    falling = [9, 8, 7, 6, 5, 4]
    assert overfit_start(steps, falling, [5, 4, 3, 3.2, 3.5, 3.9], patience=3) == 2
    assert overfit_start(steps, falling, [5, 4, 3, 3.2, 3.5, 3.9], patience=4) is None  # not yet patient enough
    assert overfit_start(steps, falling, [5, 4, 3, 2.5, 2.4, 2.3], patience=2) is None  # still improving
    assert overfit_start(steps, falling, [5, 4, 3, 3.2, 2.9, 3.0], patience=2) is None  # a blip, then a new minimum
    assert overfit_start(steps, [9, 8, 7, 7.5, 8, 9], [5, 4, 3, 3.2, 3.5, 3.9], patience=3) is None  # both rise: not over-fitting
    assert overfit_start(steps[:2], falling[:2], [5, 4], patience=1) is None
    # evaluate reads the training loss at the validation steps from the (denser) training curve.
    curves = {"train": ([50 * i for i in range(1, 13)], [10 - 0.5 * i for i in range(12)]),
              "val": (steps, [5, 4, 3, 3.2, 3.5, 3.9])}
    assert overfit_step(curves, patience=3) == 300
    # Training's watch warns once per minimum, at the validation that completes the rule.
    watch = OverfitWatch(patience=3)
    fired = [watch.update(s, t, v) for s, t, v in zip(steps, falling, [5, 4, 3, 3.2, 3.5, 3.9])]
    assert fired == [None, None, None, None, None, 300]
    assert watch.update(700, 3.5, 4.0) is None  # the same episode: no second warning


def test_cli_distractors_must_be_facesets(model_dir, faceset_a, faceset_b, distractors, tmp_path, capsys):
    from deepfake.cli import main

    empty = tmp_path / "not_a_faceset"
    empty.mkdir()
    base = ["evaluate", "-m", str(model_dir), "--a", str(faceset_a), "--b", str(faceset_b), "-o", str(tmp_path / "r"),
            "--device", "cpu", "--no-plots", "--distractors"]
    for bad in (tmp_path / "missing", empty, faceset_b):
        assert main(base + [distractors[0], str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --distractors") and str(bad) in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()  # refused before any work


def test_cli_evaluate_and_detect(model_dir, faceset_a, faceset_b, tmp_path, capsys):
    import cv2

    from deepfake.cli import main

    out = tmp_path / "report"
    assert main(["evaluate", "-m", str(model_dir), "--a", str(faceset_a), "--b", str(faceset_b), "-o", str(out),
                 "--max-faces", "2", "--device", "cpu", "--no-plots"]) == 0
    assert (out / "metrics.json").is_file() and (out / "evaluate_config.json").is_file()
    capsys.readouterr()

    cap = cv2.VideoCapture(str(media_path("d18.mp4")))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), bgr)
    video = media_path("d18.mp4")
    assert main(["detect", str(image), str(video), "-m", str(model_dir), "--json", "--device", "cpu",
                 "--every", "40", "--max-frames", "3"]) == 0
    data = json.loads(capsys.readouterr().out)
    still, clip = data["files"]
    assert still["kind"] == "image" and still["provenance_tag"] is False and len(still["faces"]) == 1
    assert 0 <= still["faces"][0]["p_real"] <= 1 and still["verdict"] in ("real", "synthetic")
    assert clip["kind"] == "video" and clip["frames_scored"] == 3 and len(clip["faces"]) == 3
    assert [f["frame"] for f in clip["faces"]] == [0, 40, 80]
    assert clip["mean_p_real"] == pytest.approx(np.mean([f["p_real"] for f in clip["faces"]]))

    assert main(["detect", str(image), "-m", str(tmp_path / "no_model")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no_model" in err and "Traceback" not in err


# ----------------------------------------------------------------------------------------------------
# What the model folder records, held against what evaluate is given.


def evaluate_cli(model, a, b, out, *more) -> list[str]:
    return ["evaluate", "-m", str(model), "--a", str(a), "--b", str(b), "-o", str(out), "--device", "cpu",
            "--no-plots", "--max-faces", "2", *more]


def faceset_copy(faceset, dest, drop: int = 0, nudge: bool = False):
    """A copy of a faceset with its last `drop` faces gone, or (`nudge`) one face's embedding re-extracted
    a little differently: the same number of faces, another faceset."""
    import shutil

    from deepfake.faceset import read_faceset, write_manifest

    shutil.copytree(faceset, dest, ignore=shutil.ignore_patterns(".cache"))
    fs = read_faceset(dest)
    records = fs.records[: len(fs.records) - drop]
    if nudge:
        records[0].embedding = [x + 1e-3 for x in records[0].embedding]
    write_manifest(dest, fs.header, records)
    return dest


def test_evaluate_refuses_a_faceset_changed_since_training(model_dir, faceset_a, faceset_b, tmp_path, capsys):
    """Its split recomputed on other faces would call training faces held out."""
    from deepfake.cli import main

    from deepfake.faceset import read_faceset

    fewer = faceset_copy(faceset_a, tmp_path / "fewer", drop=10)
    nudged = faceset_copy(faceset_b, tmp_path / "nudged", nudge=True)
    now = len(read_faceset(fewer))
    for a, b, bad, words in ((fewer, faceset_b, fewer, f"training faces of its {now} now, "),
                             (faceset_a, nudged, nudged, "mean identity differs")):
        assert main(evaluate_cli(model_dir, a, b, tmp_path / "r")) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {bad}: not the faceset side") and words in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


def test_evaluate_refuses_swapped_facesets(model_dir, faceset_a, faceset_b, tmp_path, capsys):
    from deepfake.cli import main

    assert main(evaluate_cli(model_dir, faceset_b, faceset_a, tmp_path / "r")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --a and --b look swapped: ") and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


def test_the_discriminator_is_labelled_by_the_weights_loaded(model_dir, faceset_a, faceset_b, tmp_path):
    """After `deepfake discriminator`, the latest weights are its; best/ still holds training's own."""
    import shutil

    from deepfake.evaluate.runner import evaluate_model
    from deepfake.train.discriminator import train_discriminator

    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    train_discriminator(model, faceset_a, faceset_b, steps=2, batch=4, device="cpu", progress=False)
    for checkpoint, trainer in (("best", "adversarial training"), ("last", "deepfake discriminator")):
        cfg = EvaluateConfig(max_faces=2, device="cpu", checkpoint=checkpoint)
        result = evaluate_model(model, faceset_a, faceset_b, tmp_path / checkpoint, cfg, plots=False)
        assert result["discriminator"]["trained_by"] == trainer, checkpoint


def test_report_follows_the_models_patience_and_the_verify_threshold(model_dir, faceset_a, faceset_b, tmp_path):
    """Three validations rising past the minimum over-fit a run with patience 3, not this one's 6."""
    import shutil

    from deepfake.evaluate.runner import evaluate_model
    from deepfake.run_folder import write_metrics

    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "overfit_patience": 6}))
    val, train_loss = [5, 4, 3, 3.2, 3.5, 3.9], [9, 8, 7, 6, 5, 4]
    rows = [{"step": 100 * (i + 1), "loss": float(t), "val_loss": float(v)} for i, (v, t) in enumerate(zip(val, train_loss))]
    write_metrics(model / "metrics.csv", rows, ("step", "loss", "val_loss"))
    cfg = EvaluateConfig(max_faces=2, device="cpu", verify_threshold=0.45)
    evaluate_model(model, faceset_a, faceset_b, tmp_path / "r", cfg, plots=False)
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["overfit_step"] is None
    report = (tmp_path / "r" / "report.md").read_text()
    assert "mean embedding is < 0.45;" in report and "< 0.6" not in report


def test_max_frames_0_measures_every_frame(model_dir, faceset_a, faceset_b, tmp_path):
    from conftest import cut_clip
    from deepfake.evaluate.runner import evaluate_model

    clip = cut_clip("d14.mp4", tmp_path / "clip.mp4", 0, 4)
    cfg = EvaluateConfig(max_faces=1, max_frames=0, device="cpu")
    result = evaluate_model(model_dir, faceset_a, faceset_b, tmp_path / "r", cfg, frames=clip, plots=False)
    assert result["temporal"]["frames"] + result["temporal"]["frames_without_face"] == 4


def test_cli_prints_json_without_nan(model_dir, faceset_a, faceset_b, tmp_path, capsys):
    """A model without a discriminator has no AUC: null, as in metrics.json, not NaN (not JSON)."""
    import shutil

    from deepfake.cli import main

    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    (model / "discriminator.safetensors").unlink()
    assert main(evaluate_cli(model, faceset_a, faceset_b, tmp_path / "r")) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[: out.rindex("}") + 1], parse_constant=lambda c: pytest.fail(f"{c} in stdout"))
    assert summary["disc_auc"] is None
