"""The training recipe DeepFaceLab's users credit with quality, each a config switch, on real faces: eye
and mouth priority, hard-sample mining, learning-rate dropout, uniform yaw, the warp/GAN schedule, and
the best and timeline checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from deepfake.faceset.cache import EpochSampler, FaceCache
from deepfake.model_dir import kept_steps, load_model_dir
from deepfake.models import preset_config
from deepfake.train import train
from deepfake.train.augment import no_augment
from deepfake.train.batches import hardest, yaw_weights
from deepfake.train.build import build
from deepfake.train.losses import eye_mouth_l1, eye_mouth_weights, per_face_loss
from deepfake.train.metrics import read_metrics

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    yield


def tiny(**kw):
    return dataclasses.replace(preset_config("tiny"), device="cpu", amp="off", **kw)


@pytest.fixture(scope="module")
def faces_a(faceset_a):
    c = FaceCache.from_faceset(faceset_a, 64, progress=False)
    return no_augment(c.images[:8], c.masks[:8], c.landmarks[:8])


def test_eye_mouth_priority_only_weighs_the_eyes_and_mouth(faces_a):
    """The term's gradient is zero outside the eye and mouth regions and non-zero inside them."""
    pred = faces_a.target.roll(3, dims=-1).clone().requires_grad_(True)  # a shifted face: errors everywhere
    eye_mouth_l1(pred, faces_a.target, faces_a.landmarks).backward()
    region = eye_mouth_weights(faces_a.landmarks, 64, 2.0) > 1.5  # (B, 1, R, R)
    grad = pred.grad.abs().sum(1, keepdim=True)
    assert float(grad[~region].abs().max()) == 0
    assert float((grad[region] > 0).float().mean()) > 0.5


def test_mining_picks_the_highest_loss_faces(faces_a):
    """Faces made hard on purpose (their target replaced by noise) are the ones the mining pass keeps."""
    target = faces_a.target.clone()
    planted = [1, 4, 6]
    target[planted] = torch.rand_like(target[planted])
    batch = dataclasses.replace(faces_a, target=target)
    losses = per_face_loss(faces_a.target, batch.target, batch.target_mask)  # the true faces as the "prediction"
    assert sorted(int(i) for i in losses.topk(3).indices) == planted
    mined = hardest(batch, losses, 3)
    assert mined.inputs.shape[0] == 3 and torch.equal(mined.target, target[losses.topk(3).indices])


def test_a_run_with_mining_makes_extra_updates(faceset_a, faceset_b, tmp_path):
    cfg = tiny(steps=6, batch=2, log_every=3, val_every=0, save_every=100, preview_every=0)
    plain = train(cfg, faceset_a, faceset_b, tmp_path / "plain", progress=False)
    mined = train(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, mining_every=2)), faceset_a, faceset_b,
                  tmp_path / "mined", progress=False)
    assert plain.step == mined.step == 6 and [r["step"] for r in mined.metrics] == [3, 6]
    a, b = load_model_dir(tmp_path / "plain"), load_model_dir(tmp_path / "mined")
    assert not all(torch.equal(p, q) for p, q in zip(a.autoencoder.parameters(), b.autoencoder.parameters()))


@pytest.mark.parametrize("fraction", [0.0, 0.3])
def test_lr_dropout_leaves_that_fraction_of_weights_unchanged(faces_a, fraction):
    torch.manual_seed(0)
    built = build(tiny(lr_dropout=fraction))
    before = [p.detach().clone() for p in built.autoencoder.parameters()]
    built.step.generator_phase([faces_a], [faces_a], step=0)
    unchanged = sum(int((p == q).sum()) for p, q in zip(built.autoencoder.parameters(), before))
    share = unchanged / sum(p.numel() for p in before)
    assert share == pytest.approx(fraction, abs=0.01), share


def test_uniform_yaw_balances_a_skewed_set():
    """90 % frontal faces, 10 % profiles in two directions: weighted epochs draw every yaw bin about as
    often as any other."""
    rng = np.random.default_rng(0)
    yaws = np.concatenate([rng.normal(0, 4, 900), rng.normal(-50, 3, 50), rng.normal(50, 3, 50)])
    records = [dataclasses.make_dataclass("R", [("pose", dict)])({"yaw": float(y)}) for y in yaws]
    weights = yaw_weights(records, bins=3)
    sampler = EpochSampler(len(records), torch.Generator().manual_seed(1), weights=weights)
    drawn = yaws[sampler.next(30000).numpy()]
    share = [float(np.mean(drawn < -25)), float(np.mean(np.abs(drawn) <= 25)), float(np.mean(drawn > 25))]
    assert all(abs(s - 1 / 3) < 0.03 for s in share), share
    plain = EpochSampler(len(records), torch.Generator().manual_seed(1))
    assert float(np.mean(np.abs(yaws[plain.next(30000).numpy()]) <= 25)) > 0.85


def test_resume_across_the_warp_and_gan_switches_equals_an_uninterrupted_run(faceset_a, faceset_b, tmp_path):
    """Warp until step 3, GAN from step 5: stopped at 4 (between the switches) and resumed, the run ends
    where the uninterrupted one does, bit for bit."""
    cfg = tiny(steps=7, batch=2, log_every=1, val_every=0, save_every=100, preview_every=0)
    cfg = dataclasses.replace(cfg, augment=dataclasses.replace(cfg.augment, warp_until_step=3),
                              loss=dataclasses.replace(cfg.loss, gan_weight=0.1, gan_start_step=5))
    train(cfg, faceset_a, faceset_b, tmp_path / "straight", progress=False)
    assert train(cfg, faceset_a, faceset_b, tmp_path / "resumed", progress=False, stop_at=4).step == 4
    train(cfg, faceset_a, faceset_b, tmp_path / "resumed", progress=False)
    a, b = load_model_dir(tmp_path / "straight"), load_model_dir(tmp_path / "resumed")
    for net_a, net_b in ((a.autoencoder, b.autoencoder), (a.discriminator, b.discriminator)):
        for p, q in zip(net_a.state_dict().values(), net_b.state_dict().values()):
            assert torch.equal(p, q)
    rows = read_metrics(tmp_path / "straight" / "metrics.csv")
    assert all(r["gan_g"] == 0 for r in rows if r["step"] <= 5) and rows[-1]["gan_g"] > 0


def test_best_checkpoint_is_the_validation_minimum_and_the_timeline_keeps_its_steps(faceset_a, faceset_b, tmp_path,
                                                                                   media, capsys):
    out = tmp_path / "m"
    cfg = tiny(steps=12, batch=2, log_every=2, val_every=2, save_every=100, preview_every=0, keep_every=4)
    train(cfg, faceset_a, faceset_b, out, progress=False)
    rows = [r for r in read_metrics(out / "metrics.csv") if r["val_loss"] is not None]
    best = min(rows, key=lambda r: r["val_loss"])
    loaded = load_model_dir(out, checkpoint="best")
    assert loaded.step == best["step"]
    assert sorted(kept_steps(out)) == [4, 8, 12]
    assert load_model_dir(out, checkpoint=8).step == 8 and load_model_dir(out).step == 12
    with pytest.raises(Exception, match="kept steps: 4, 8, 12"):
        load_model_dir(out, checkpoint=5)
    # swap, evaluate and detect take --checkpoint best|last|STEP.
    from deepfake.cli import main as cli_main

    still = str(media("d9.jpg"))
    assert cli_main(["swap", still, "-m", str(out), "-o", str(tmp_path / "best.png"), "--checkpoint", "best",
                     "--all-faces", "-q", "--device", "cpu"]) == 0
    assert (tmp_path / "best.png").is_file()
    assert cli_main(["swap", still, "-m", str(out), "-o", str(tmp_path / "x.png"), "--checkpoint", "5", "-q"]) == 2
    assert "no checkpoint at step 5" in capsys.readouterr().err
