"""Train the discriminator alone: a real/fake classifier for one model's output.

Real samples are faces from the two facesets; fake samples are what the model makes of them (its
reconstructions A->A, B->B and its swaps A->B, B->A). Faces are split per identity before anything is
trained, so the reported accuracy and ROC-AUC are measured on faces (real and fake) the detector never
saw. The trained weights go to MODEL_DIR/discriminator.safetensors (where `deepfake detect` and
`load_model_dir` find them), with this discriminator's own settings in the file's metadata, and the scores
to MODEL_DIR/discriminator_report.json. config.json is never changed: it describes what `train` trains and
resumes (its checkpoints and best/ hold the model's own discriminator), whatever kind is trained here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from deepfake.config import AugmentConfig, DiscriminatorConfig

from deepfake.config_io import to_dict
from deepfake.devices import resolve_device
from deepfake.errors import DeepfakeError
from deepfake.faceset import read_faceset, side_split
from deepfake.faceset.cache import FaceCache
from deepfake.io.atomic import atomic_write_json
from deepfake.model_dir import D_SETTINGS, DISCRIMINATOR, load_model_dir, save_tensors
from deepfake.run_folder import RunBar
from deepfake.train.augment import augment
from deepfake.train.build import build_discriminator_alone
from deepfake.train.losses import gan_d_loss

log = logging.getLogger(__name__)

REPORT = "discriminator_report.json"


@dataclass
class DiscriminatorReport:
    accuracy: float  # held-out, real and fake faces together, threshold P(real) = 0.5
    roc_auc: float  # held-out, image-level score = mean patch logit
    accuracy_real: float
    accuracy_fake: float
    n_val_real: int
    n_val_fake: int
    steps: int


def roc_auc(scores_real: np.ndarray, scores_fake: np.ndarray) -> float:
    """Probability that a random real face scores above a random fake one (ties count half)."""
    scores = np.concatenate([scores_real, scores_fake])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.arange(1, len(scores) + 1)
    # Average ranks over ties.
    sorted_scores = scores[order]
    start = 0
    for i in range(1, len(scores) + 1):
        if i == len(scores) or sorted_scores[i] != sorted_scores[start]:
            ranks[order[start:i]] = (start + 1 + i) / 2
            start = i
    n_r, n_f = len(scores_real), len(scores_fake)
    return float((ranks[:n_r].sum() - n_r * (n_r + 1) / 2) / (n_r * n_f))


@torch.no_grad()
def _fakes(autoencoder: torch.nn.Module, x: torch.Tensor, side: str, batch: int) -> torch.Tensor:
    """Half reconstructions, half swaps of faces `x` (N, 3, R, R) from identity `side`."""
    other = "b" if side == "a" else "a"
    out = []
    for i in range(0, x.shape[0], batch):
        chunk = x[i : i + batch]
        target = side if (i // batch) % 2 == 0 else other
        out.append(autoencoder.decode(autoencoder.encode(chunk), target)[0].float())
    return torch.cat(out)  # (N, 3, R, R)


@torch.no_grad()
def _scores(discriminator: torch.nn.Module, x: torch.Tensor, batch: int) -> np.ndarray:
    discriminator.eval()
    out = [discriminator(x[i : i + batch]).float().flatten(1).mean(1) for i in range(0, x.shape[0], batch)]
    discriminator.train()
    return torch.cat(out).cpu().numpy()  # (N,) mean patch logits


def train_discriminator(
    model_dir,  # a trained model folder (config.json + autoencoder.safetensors)
    faceset_a,  # the faces of identity A (real samples)
    faceset_b,  # the faces of identity B
    *,
    cfg: DiscriminatorConfig | None = None,  # None: the model's own discriminator settings
    steps: int = 500,
    batch: int = 16,  # real faces per step (plus as many fakes)
    lr: float = 2e-4,
    val_fraction: float = 0.2,  # per identity, held out (never less than the model's own held-out faces)
    device: str = "auto",
    seed: int = 0,  # batch order and initialisation; the split follows the model's own seed
    save: bool = True,  # write discriminator.safetensors and the report into model_dir
    progress: bool = True,
) -> DiscriminatorReport:
    dev = resolve_device(device)
    loaded = load_model_dir(model_dir, device=str(dev))
    tcfg = loaded.config
    dcfg = cfg or tcfg.discriminator
    res = tcfg.model.resolution
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    # Data: real faces per identity, split, and the model's fakes of each.
    train_real, train_fake, val_real, val_fake = [], [], [], []
    for k, path in (("a", faceset_a), ("b", faceset_b)):
        cache = FaceCache.from_faceset(read_faceset(path), res, progress=progress).to(dev)
        # The model's split (its permutation, or its tail) with at least its fraction: the held-out faces here
        # include every face the autoencoder never saw, so D is never trained on evaluate's held-out set.
        tr, va = side_split(len(cache), max(val_fraction, tcfg.val_fraction), tcfg.seed, k, tcfg.val_split)
        if len(va) == 0:
            raise DeepfakeError(f"{path}: too few faces to hold any out for validation ({len(cache)})")
        x = cache.images.float() / 255  # (N, 3, R, R)
        fakes = _fakes(loaded.autoencoder, x, k, batch)
        rows_tr, rows_va = torch.as_tensor(tr, device=dev), torch.as_tensor(va, device=dev)
        train_real.append(cache.subset(tr))
        train_fake.append(fakes.index_select(0, rows_tr))
        val_real.append(x.index_select(0, rows_va))
        val_fake.append(fakes.index_select(0, rows_va))
    real_images = torch.cat([c.images for c in train_real])  # (N, 3, R, R) uint8
    real_masks = torch.cat([c.masks for c in train_real])
    real_landmarks = torch.cat([c.landmarks for c in train_real])
    fake_images = (torch.cat(train_fake) * 255).round().to(torch.uint8)  # same pipeline as the reals
    n_real, n_fake = real_images.shape[0], fake_images.shape[0]

    # Train: the same light augmentation for both classes (flip, small affine, no warp, no colour),
    # so the detector cannot key on augmentation artefacts that only one class has.
    aug_cfg = replace(AugmentConfig(), warp=False, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    disc, opt = build_discriminator_alone(tcfg, dcfg, dev, lr)
    bar = RunBar(0, steps, None, progress)
    for step in range(steps):
        ri = torch.randint(n_real, (batch,), generator=gen).to(dev)
        fi = torch.randint(n_fake, (batch,), generator=gen).to(dev)
        real = augment(real_images[ri], real_masks[ri], real_landmarks[ri], aug_cfg, gen).target
        fake = augment(fake_images[fi], real_masks[ri], real_landmarks[ri], aug_cfg, gen).target
        loss = gan_d_loss(disc(real), disc(fake), "nonsaturating")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", refresh=False)
        bar.advance(step + 1)
    bar.close()

    # Held-out scores.
    s_real = _scores(disc, torch.cat(val_real), batch)
    s_fake = _scores(disc, torch.cat(val_fake), batch)
    acc_r, acc_f = float((s_real > 0).mean()), float((s_fake < 0).mean())
    report = DiscriminatorReport(
        accuracy=float(((s_real > 0).sum() + (s_fake < 0).sum()) / (len(s_real) + len(s_fake))),
        roc_auc=roc_auc(s_real, s_fake),
        accuracy_real=acc_r,
        accuracy_fake=acc_f,
        n_val_real=len(s_real),
        n_val_fake=len(s_fake),
        steps=steps,
    )
    if save:
        model_dir = Path(model_dir)
        meta = {"step": str(loaded.step), "standalone_steps": str(steps), D_SETTINGS: json.dumps(to_dict(dcfg))}
        save_tensors(model_dir / DISCRIMINATOR, disc.state_dict(), meta)
        atomic_write_json(model_dir / REPORT, {**report.__dict__, "discriminator": to_dict(dcfg)})
    return report
