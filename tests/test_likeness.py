"""Likeness in training (train/likeness.py): the identity loss's gradient path, the true-face phase's
separation from G, and the identity loss's effect on swaps of real faces."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from deepfake.errors import DeepfakeError
from deepfake.faceset.cache import FaceCache
from deepfake.models import preset_config
from deepfake.train.augment import no_augment
from deepfake.train.build import build
from deepfake.train.likeness import identity_loss, training_chips
from deepfake.train.step import G_TERMS


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    yield


def likeness_cfg(identity: float = 0.0, true_face: float = 0.0, **kw):
    cfg = preset_config("tiny")
    return dataclasses.replace(cfg, device="cpu", amp="off", **kw,
                               loss=dataclasses.replace(cfg.loss, identity_weight=identity, true_face_weight=true_face))


@pytest.fixture(scope="module")
def real_batches(faceset_a, faceset_b):
    a = FaceCache.from_faceset(faceset_a, 64, progress=False)
    b = FaceCache.from_faceset(faceset_b, 64, progress=False)
    return ([no_augment(a.images[:4], a.masks[:4], a.landmarks[:4])], [no_augment(b.images[:4], b.masks[:4], b.landmarks[:4])])


def weights(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_identity_gradient_reaches_the_decoder_and_not_the_identity_net(real_batches):
    torch.manual_seed(0)
    built = build(likeness_cfg(identity=1.0))
    net = built.likeness.identity_net
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    (a,), (b,) = real_batches
    swap_ba, _ = built.autoencoder.swap(b.inputs, "a")  # B's faces rendered by A's decoder
    loss = identity_loss(built.likeness.embed(swap_ba, b.landmarks), built.likeness.targets[0])
    loss.backward()
    decoder_grads = [p.grad for n, p in built.autoencoder.decoder_a.named_parameters() if not n.startswith("to_mask")]
    assert all(g is not None and float(g.abs().sum()) > 0 for g in decoder_grads)  # the mask is not embedded
    assert all(p.grad is None for p in built.autoencoder.decoder_b.parameters())  # not on this swap's path
    assert all(p.grad is None for p in net.parameters())
    # The step's identity term is logged and moves G.
    before = weights(built.autoencoder)
    logs, skipped, _ = built.step.generator_phase([a], [b], step=0)
    identity = logs[G_TERMS.index("identity")]
    assert float(identity) > 0 and float(skipped) == 0 and not same(before, weights(built.autoencoder))


def test_training_chips_match_the_reference_chip_geometry(real_batches):
    """Training's one-grid_sample chips of aligned faces equal faces.chip's dlib-geometry chips (which
    test_identity_net checks against dlib), black border included."""
    from deepfake.faces.chip import face_chips

    (a,), _ = real_batches
    ours = training_chips(a.target, a.landmarks)
    ref = face_chips(a.target, a.landmarks)
    assert ours.shape == ref.shape == (4, 3, 150, 150)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    assert float((ours == 0).all(1).float().mean()) > 0.01  # the check covers the black border too


def test_true_face_phase_touches_only_its_own_network(real_batches):
    torch.manual_seed(0)
    built = build(likeness_cfg(true_face=0.1))
    step, code_d = built.step, built.likeness.code_d
    ba, bb = real_batches
    g0, c0 = weights(built.autoencoder), weights(code_d)
    logs, _, fakes = step.generator_phase(ba, bb, step=0)
    assert not same(g0, weights(built.autoencoder)), "G phase did not update G"
    assert same(c0, weights(code_d)), "G phase changed the code discriminator"
    assert all(p.grad is None for p in code_d.parameters())
    g1 = weights(built.autoencoder)
    loss, skipped = step.true_face_phase(fakes)
    assert float(loss) > 0 and float(skipped) == 0
    assert not same(c0, weights(code_d)), "true-face phase did not update its discriminator"
    assert same(g1, weights(built.autoencoder)), "true-face phase changed G"
    assert all(p.grad is None for p in built.autoencoder.parameters())


def test_true_face_is_for_the_df_architecture():
    cfg = likeness_cfg(true_face=0.1)
    with pytest.raises(DeepfakeError, match="df architecture"):
        build(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, arch="liae")))


def test_identity_loss_brings_swaps_closer_to_their_source(faceset_a, faceset_b, tmp_path):
    """The same tiny model, seed and steps with and without the identity loss, on real faces: the swaps
    of the one trained with it lie closer to their source identity (by dlib's ResNet, the distance its
    0.6 verifier thresholds). Measured at 100 steps: 0.57 without, 0.16 with; asserted: a margin of 0.08."""
    from deepfake.faces.identity_net import IdentityNet
    from deepfake.faceset import read_faceset
    from deepfake.model_dir import load_model_dir
    from deepfake.train import train

    cfg = dataclasses.replace(likeness_cfg(), steps=100, batch=4, log_every=50, val_every=0, save_every=1000, preview_every=0)
    net = IdentityNet.from_dlib()
    source = torch.as_tensor(read_faceset(faceset_a).mean_embedding())  # B's faces rendered as A

    def distance(identity: float) -> float:
        out = tmp_path / f"id{identity}"
        train(dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, identity_weight=identity)),
              faceset_a, faceset_b, out, progress=False)
        model = load_model_dir(out)
        faces = FaceCache.from_faceset(faceset_b, 64, progress=False)
        with torch.no_grad():
            swaps, _ = model.autoencoder.swap(faces.images.float() / 255, "a")
            return float((net(training_chips(swaps, faces.landmarks)) - source).norm(dim=1).mean())

    without, with_identity = distance(0.0), distance(2.0)
    print(f"distance of B->A swaps to A: {without:.3f} without the identity loss, {with_identity:.3f} with it")
    assert with_identity < without - 0.08
