"""`deepfake discriminator`: D trained alone on real faces vs a model's output, scored on held-out faces."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from deepfake.model_dir import load_model_dir
from deepfake.cli import main as cli_main
from deepfake.train.discriminator import REPORT, roc_auc, train_discriminator
from deepfake.models import preset_config
from deepfake.train import train


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    yield


def test_roc_auc():
    assert roc_auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert roc_auc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 0.0
    assert roc_auc(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.5
    assert roc_auc(np.array([1.0, 3.0]), np.array([2.0, 0.0])) == 0.75


@pytest.fixture(scope="module")
def plain_model(faceset_a, faceset_b, tmp_path_factory):
    """A briefly trained tiny autoencoder with no discriminator of its own."""
    out = tmp_path_factory.mktemp("disc") / "model"
    cfg = dataclasses.replace(preset_config("tiny"), steps=30, batch=4, save_every=30, preview_every=0, val_every=0)
    train(cfg, faceset_a, faceset_b, out, progress=False)
    return out


def test_discriminator_learns_to_tell_real_from_reconstructed(plain_model, faceset_a, faceset_b):
    assert load_model_dir(plain_model).discriminator is None
    report = train_discriminator(plain_model, faceset_a, faceset_b, steps=60, batch=8, progress=False)
    print(report)
    assert report.n_val_real == report.n_val_fake == 24  # 20 % of the 60 faces of each identity
    assert 0 <= report.accuracy <= 1 and 0 <= report.roc_auc <= 1
    # A 30-step autoencoder's output is blurry: a detector that learned anything separates it.
    assert report.roc_auc > 0.9 and report.accuracy > 0.75
    loaded = load_model_dir(plain_model)
    assert loaded.discriminator is not None  # now available to `deepfake detect`
    saved = json.loads((plain_model / REPORT).read_text())
    assert saved["roc_auc"] == report.roc_auc


def test_cli_reports_held_out_scores(plain_model, faceset_a, faceset_b, capsys):
    rc = cli_main(["discriminator", "-m", str(plain_model), "--a", str(faceset_a), "--b", str(faceset_b),
                   "--steps", "10", "--batch", "4", "--kind", "unet", "--no-save", "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "ROC-AUC" in out and "held-out" in out
    assert cli_main(["discriminator", "-m", str(plain_model.parent / "nope"), "--a", "x", "--b", "y"]) == 2
    assert "does not exist" in capsys.readouterr().err



def test_another_kind_leaves_the_model_folder_training_and_swapping_as_before(faceset_a, faceset_b, tmp_path, capsys):
    """A unet trained alone on a patch-GAN model: config.json stays byte for byte, so training resumes
    and the best checkpoint (which holds the model's own patch D) still loads; the unet is what the
    folder's latest weights score with, until training publishes its own D again."""
    from deepfake.config import SwapConfig
    from deepfake.model_dir import CONFIG
    from deepfake.models.discriminator import PatchDiscriminator, UNetDiscriminator
    from deepfake.swap.model import load_swap_model

    model = tmp_path / "gan"
    cfg = dataclasses.replace(preset_config("tiny"), steps=4, batch=4, save_every=2, val_every=2, preview_every=0)
    cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, gan_weight=0.1))
    train(cfg, faceset_a, faceset_b, model, progress=False)
    config_before = (model / CONFIG).read_bytes()
    rc = cli_main(["discriminator", "-m", str(model), "--a", str(faceset_a), "--b", str(faceset_b),
                   "--steps", "2", "--batch", "4", "--kind", "unet", "--device", "cpu", "--no-progress"])
    assert rc == 0
    assert (model / CONFIG).read_bytes() == config_before
    assert json.loads((model / REPORT).read_text())["discriminator"]["kind"] == "unet"
    assert isinstance(load_model_dir(model).discriminator, UNetDiscriminator)
    assert isinstance(load_model_dir(model, checkpoint="best").discriminator, PatchDiscriminator)
    assert load_swap_model(model, SwapConfig(checkpoint="best", device="cpu")).step > 0
    rc = cli_main(["evaluate", "-m", str(model), "--a", str(faceset_a), "--b", str(faceset_b), "-o",
                   str(tmp_path / "report"), "--checkpoint", "best", "--max-faces", "2", "--device", "cpu",
                   "--no-plots"])
    assert rc == 0, capsys.readouterr().err
    resumed = train(dataclasses.replace(cfg, steps=6), faceset_a, faceset_b, model, progress=False)
    assert resumed.step == 6
    assert isinstance(load_model_dir(model).discriminator, PatchDiscriminator)
