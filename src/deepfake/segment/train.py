"""The segmenter's training loop: pretraining on hull targets, then the user's labels.

    from deepfake.segment.train import train_segmenter
    result = train_segmenter(MaskTrainConfig(), ["facesets/a"], "masks/a", minutes=10)

Each step draws faces, augments them on the device (occluders cut out of the target), and takes one
Adam step on sigmoid cross-entropy plus DSSIM. Resumes exactly from the folder's newest snapshot
(segment/checkpoint.py); Ctrl-C and SIGTERM save first.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from deepfake.config_io import to_dict
from deepfake.devices import resolve_device
from deepfake.errors import DeepfakeError
from deepfake.segment import checkpoint as ckpt
from deepfake.segment.augment import augment
from deepfake.config import MaskTrainConfig
from deepfake.segment.checks import validate
from deepfake.segment.data import MaskData, load_mask_data
from deepfake.segment.preview import write_preview
from deepfake.models.segmenter import Segmenter, build_segmenter
from deepfake.train.losses import dssim
from deepfake.run_folder import RunBar, read_metrics, stop_signals, write_metrics

log = logging.getLogger(__name__)

METRIC_FIELDS = ("step", "phase", "loss", "bce", "dssim", "val_loss", "val_iou", "lr", "faces_per_s", "wall_s")
VAL_SEED = 12345  # the validation faces' augmentation: the same every time, so the scores compare
STOP_REASONS = ("steps", "minutes", "SIGINT", "SIGTERM")


@dataclass
class MaskTrainResult:
    folder: Path
    step: int
    stopped_by: str  # one of STOP_REASONS
    rows: list[dict[str, Any]]  # metrics.csv
    faces: int
    labelled: int  # faces with labels (0: the run never left pretraining)
    phase: str  # the last step's phase: pretrain | labels


# ----------------------------------------------------------------------------------------------------
# The loss: pure functions of tensors.


def segmenter_loss(logits: torch.Tensor, target: torch.Tensor, bce_weight: float,
                   dssim_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, bce, dssim) for logits and target (B, 1, R, R). DSSIM compares the probabilities: it
    rewards the mask's shape and edges, which per-pixel cross-entropy weighs only by area."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
    ds = dssim(torch.sigmoid(logits.float()), target.float())
    return bce_weight * bce + dssim_weight * ds, bce, ds


def iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-face IoU of two masks thresholded at 0.5, (B,); 1 where both are empty."""
    p, t = pred.flatten(1) > 0.5, target.flatten(1) > 0.5
    inter, union = (p & t).sum(1).float(), (p | t).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


# ----------------------------------------------------------------------------------------------------
# The loop.


def train_segmenter(
    cfg: MaskTrainConfig,  # the run; a resumed folder must hold the same network config
    facesets: list[str | Path],  # faceset folders: their faces, hulls and labels.json
    out_dir: str | Path,  # the mask model folder; an existing one is resumed
    minutes: float | None = None,  # wall-clock budget: stop (and save) after the step that spends it
    step_limit: bool = True,  # False: only `minutes` limits the run, cfg.steps does not
    progress: bool = True,  # tqdm bar
) -> MaskTrainResult:
    """Train (or resume) a segmenter and return a summary. Saves every save_every steps and at the end."""
    validate(cfg)
    if not step_limit and not minutes:
        raise DeepfakeError("a run without a step limit needs a time budget (--minutes)")
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise DeepfakeError(f"{folder}: mask model output exists and is not a folder")
    device = resolve_device(cfg.device)

    # Section: resume. The folder's network config must match; its snapshot wins over initialisation.
    snap = None
    if (folder / ckpt.CONFIG).is_file():
        saved = ckpt.read_config(folder)
        if to_dict(saved.model) != to_dict(cfg.model):
            raise DeepfakeError(f"{folder}: holds a segmenter with a different model config; resume with the same "
                                "settings or train into a new folder")
        snap = ckpt.latest_snapshot(folder)

    # Section: data, decoded once, on the device.
    data = load_mask_data(facesets, cfg.model.resolution, cfg.region, cfg.val_fraction, cfg.val_faces,
                          cfg.seed, progress).to(device)
    labelled = int(data.label_rows.numel())
    if labelled == 0 and cfg.steps > cfg.pretrain_steps and step_limit:
        log.info("no labels.json with polygons in %s: training on hull targets only", ", ".join(map(str, facesets)))
    sample_gen = torch.Generator().manual_seed(cfg.seed)
    aug_gen = torch.Generator().manual_seed(cfg.seed + 1)

    # Section: network and optimizer, then the snapshot.
    torch.manual_seed(cfg.seed)
    net = build_segmenter(cfg.model).to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    start, wall_before, rows = 0, 0.0, []
    if snap is not None:
        net.load_state_dict(snap.weights)
        opt.load_state_dict(snap.optimizer)
        sample_gen.set_state(snap.rng["sample_gen"])
        aug_gen.set_state(snap.rng["aug_gen"])
        start, wall_before = snap.step, float(snap.state.get("wall_s", 0.0))
        rows = [r for r in read_metrics(folder / "metrics.csv") if int(r["step"]) <= start]
        log.info("resuming %s at step %d", folder, start)
    ckpt.write_config(folder, cfg)
    val_batch = _fixed_batch(data, cfg)
    end = cfg.steps if step_limit else None

    # Section: the loop.
    bar = RunBar(start, end, minutes, progress)
    t_start = t_log = time.perf_counter()
    deadline = t_start + 60.0 * minutes if minutes else None
    sums, count, step, stopped_by, phase = torch.zeros(3, device=device), 0, start, None, "pretrain"
    with stop_signals() as signals:
        while stopped_by is None and (end is None or step < end):
            phase = "labels" if labelled and step >= cfg.pretrain_steps else "pretrain"
            idx = draw_rows(data, phase, cfg, sample_gen).to(device)  # (B,)
            targets = data.hulls[idx] if phase == "pretrain" else data.targets(idx)
            batch = augment(data.images[idx], targets, data.whole[idx], cfg.augment, aug_gen)
            loss, bce, ds = segmenter_loss(net(batch.images), batch.targets, cfg.bce_weight, cfg.dssim_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums += torch.stack([loss.detach(), bce.detach(), ds.detach()])
            step, count = step + 1, count + 1
            bar.advance(step)

            # Section: logging, the time budget and signals. The clock is read every step: CPU steps
            # can take seconds, and reading it syncs nothing.
            on_cycle = step % cfg.log_every == 0
            stopping = signals["stop"] is not None or (deadline is not None and time.perf_counter() >= deadline)
            last = stopping or step == end
            if on_cycle or last:
                now = time.perf_counter()
                val_loss, val_iou = _validate(net, val_batch, cfg)
                mean = (sums / max(1, count)).tolist()
                row = {"step": step, "phase": phase, "loss": mean[0], "bce": mean[1], "dssim": mean[2],
                       "val_loss": val_loss, "val_iou": val_iou, "lr": cfg.lr,
                       "faces_per_s": cfg.batch * count / max(now - t_log, 1e-9), "wall_s": wall_before + now - t_start}
                rows.append(row)
                bar.set_postfix(loss=f"{mean[0]:.4f}", val_iou=f"{val_iou:.3f}" if val_iou is not None else "-", phase=phase)
                sums.zero_()
                count, t_log = 0, time.perf_counter()

            # Section: previews and checkpoints.
            if cfg.preview_every > 0 and val_batch is not None and (step % cfg.preview_every == 0 or last):
                write_preview(folder / "previews" / f"step_{step:06d}.png", net, *val_batch[:3])
            if step % cfg.save_every == 0 or last:
                _save(folder, cfg, step, net, opt, sample_gen, aug_gen, rows, phase,
                      wall_before + time.perf_counter() - t_start)
            if stopping:
                stopped_by = signals["stop"] or "minutes"
        if step == start and snap is None:  # nothing to train: still leave a loadable folder
            _save(folder, cfg, step, net, opt, sample_gen, aug_gen, rows, phase, 0.0)
    bar.close()
    return MaskTrainResult(folder, step, stopped_by or "steps", rows, len(data), labelled, phase)


def draw_rows(data: MaskData, phase: str, cfg: MaskTrainConfig, generator: torch.Generator) -> torch.Tensor:
    """A batch of row indices on the host: all from the training rows while pretraining; in the label
    phase `label_share` of them from the labelled faces. Always two draws, so the stream is the same."""
    train = data.train_rows.cpu()
    labelled = data.label_rows.cpu()
    pick = torch.randint(0, len(train), (cfg.batch,), generator=generator)
    pick_lab = torch.randint(0, max(1, len(labelled)), (cfg.batch,), generator=generator)
    rows = train[pick]
    if phase == "labels" and len(labelled):
        n = max(1, round(cfg.batch * cfg.label_share))
        rows[:n] = labelled[pick_lab[:n]]
    return rows


def _fixed_batch(data: MaskData, cfg: MaskTrainConfig):
    """The validation faces, clean and with a fixed augmentation: (clean, occluded, targets, rows)."""
    rows = data.val_rows if data.val_rows.numel() else data.train_rows[: cfg.val_faces]
    if rows.numel() == 0:
        return None
    gen = torch.Generator().manual_seed(cfg.seed + VAL_SEED)
    hulls = data.hulls[rows]
    batch = augment(data.images[rows], hulls, data.whole[rows], cfg.augment, gen)
    return data.images[rows].float() / 255, batch.images, batch.targets, hulls.float() / 255


@torch.no_grad()
def _validate(net: Segmenter, val_batch, cfg: MaskTrainConfig) -> tuple[float | None, float | None]:
    """Loss and mean IoU on the validation faces' fixed augmentation."""
    if val_batch is None:
        return None, None
    was = net.training
    net.eval()
    logits = net(val_batch[1])
    net.train(was)
    loss, _, _ = segmenter_loss(logits, val_batch[2], cfg.bce_weight, cfg.dssim_weight)
    return float(loss), float(iou(torch.sigmoid(logits), val_batch[2]).mean())


# ----------------------------------------------------------------------------------------------------
# Saving and metrics.


def _save(folder: Path, cfg: MaskTrainConfig, step: int, net: Segmenter, opt: torch.optim.Optimizer,
          sample_gen: torch.Generator, aug_gen: torch.Generator, rows: list[dict], phase: str, wall_s: float) -> None:
    write_metrics(folder / "metrics.csv", rows, METRIC_FIELDS)
    ckpt.save_snapshot(folder, ckpt.MaskSnapshot(
        step=step, weights=net.state_dict(), optimizer=opt.state_dict(),
        rng={"sample_gen": sample_gen.get_state(), "aug_gen": aug_gen.get_state()},
        state={"wall_s": wall_s, "phase": phase}), keep=cfg.keep_backups)
