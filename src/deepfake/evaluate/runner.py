"""Run a trained model over held-out faces (and optionally a video) and measure it.

The held-out faces are the model's own validation split (`faceset.side_split` with the model's
seed and fraction that training used), so nothing measured here was trained on; facesets that are not
the ones the model trained on, or given the wrong way round, are refused (trained_on.py).

    metrics = evaluate_model("model", "faceset_a", "faceset_b", "report", EvaluateConfig())
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from deepfake.config import EvaluateConfig

from deepfake.config_io import save_json
from deepfake.devices import resolve_device
from deepfake.errors import BadInputError, DeepfakeError
from deepfake.evaluate import metrics as M
from deepfake.evaluate.measure import FaceMeasurer, measure_swaps
from deepfake.evaluate.trained_on import check_trained_on
from deepfake.evaluate.training_log import read_training_log
from deepfake.faceset import Faceset, read_faceset, side_split
from deepfake.io.atomic import atomic_write_json

log = logging.getLogger(__name__)

SIDES = ("a", "b")
# Direction names follow SwapConfig: "a2b" puts A's face onto B (the input shows B).
DIRECTIONS = {"a2b": ("a", "b"), "b2a": ("b", "a")}  # name -> (source identity, target face)


# ----------------------------------------------------------------------------------------------------
# Held-out faces.


@dataclass
class HeldOut:
    images: np.ndarray  # (N, R, R, 3) uint8 RGB, at the model's resolution
    masks: np.ndarray  # (N, R, R) uint8 face-hull masks
    landmarks: np.ndarray  # (N, 68, 2) aligned landmarks in R-pixel units
    indices: np.ndarray  # rows of the faceset's records
    train_mean_embedding: np.ndarray  # (128,) mean identity of the faces the model trained on


def as_faceset(faceset: str | Path | Faceset) -> Faceset:
    return faceset if isinstance(faceset, Faceset) else read_faceset(faceset)


def held_out_faces(faceset: Faceset, resolution: int, val_fraction: float, seed: int, side: str, limit: int = 0,
                   how: str = "random") -> HeldOut:
    """The validation split of a faceset (the same faces `deepfake train` held out), at the model's resolution."""
    train_idx, val_idx = side_split(len(faceset), val_fraction, seed, side, how)
    if len(val_idx) == 0:
        raise DeepfakeError(f"{faceset.root}: no held-out faces (only {len(faceset)} faces, val_fraction {val_fraction})")
    if limit:
        val_idx = val_idx[:limit]
    images, masks, lms = [], [], []
    for i in val_idx:
        rec = faceset.records[int(i)]
        img = cv2.imread(str(faceset.root / rec.file), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(faceset.root / rec.mask), cv2.IMREAD_GRAYSCALE)
        if img is None or mask is None:
            raise BadInputError(faceset.root / rec.file, "unreadable face or mask image in the faceset")
        scale = resolution / img.shape[0]
        images.append(cv2.resize(img[..., ::-1], (resolution, resolution), interpolation=cv2.INTER_AREA))
        masks.append(cv2.resize(mask, (resolution, resolution), interpolation=cv2.INTER_AREA))
        lms.append(np.asarray(rec.aligned_landmarks, dtype=np.float32) * scale)
    train_emb = faceset.embeddings()[train_idx] if len(train_idx) else faceset.embeddings()
    return HeldOut(
        images=np.stack(images),
        masks=np.stack(masks),
        landmarks=np.stack(lms),
        indices=np.asarray(val_idx),
        train_mean_embedding=train_emb.mean(axis=0),
    )


def read_distractors(paths: list[str], sides: list) -> dict[str, Faceset]:
    """The distractor facesets by name (their folder's, made unique): other identities for retrieval.
    DeepfakeError naming the folder when one is not a usable faceset."""
    side_roots = {(f.root if isinstance(f, Faceset) else Path(f)).resolve() for f in sides}
    out: dict[str, Faceset] = {}
    for path in paths:
        try:
            fs = read_faceset(path)
        except DeepfakeError as e:
            raise DeepfakeError(f"--distractors: {e}") from None
        if not len(fs):
            raise DeepfakeError(f"--distractors: {path}: the faceset has no faces")
        if fs.root.resolve() in side_roots:
            raise DeepfakeError(f"--distractors: {path} is one of the evaluated facesets (--a/--b)")
        name, k = fs.root.name, 2
        while name in out or name in SIDES:
            name, k = f"{fs.root.name}#{k}", k + 1
        out[name] = fs
    return out


# ----------------------------------------------------------------------------------------------------
# Running the networks.


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)  # (N, R, R, 3) uint8
    return x.permute(0, 3, 1, 2).float() / 255.0  # (N, 3, R, R) in [0, 1]


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()  # (N, R, R, 3)


@torch.no_grad()
def run_autoencoder(autoencoder: torch.nn.Module, images: np.ndarray, side: str, swap: bool, batch: int,
                    device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Reconstruct (`swap=False`) with decoder `side`, or swap to `side`. Returns uint8 RGB and float masks."""
    rgbs, masks = [], []
    for s in range(0, len(images), batch):
        x = to_tensor(images[s : s + batch], device)  # (B, 3, R, R)
        rgb, mask = autoencoder.swap(x, side) if swap else autoencoder(x, side)  # (B, 3, R, R), (B, 1, R, R)
        rgbs.append(to_uint8(rgb.float()))
        masks.append(mask.float()[:, 0].cpu().numpy())
    return np.concatenate(rgbs), np.concatenate(masks)


@torch.no_grad()
def discriminator_scores(discriminator: torch.nn.Module, images: np.ndarray, batch: int,
                         device: torch.device) -> np.ndarray:
    """P(real) per face: the sigmoid of the mean patch logit."""
    out = []
    for s in range(0, len(images), batch):
        logits = discriminator(to_tensor(images[s : s + batch], device))  # (B, 1, h, w) patch logits
        out.append(torch.sigmoid(logits.float().flatten(1).mean(dim=1)).cpu().numpy())  # (B,)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def count_parameters(module: torch.nn.Module | None) -> int | None:
    return None if module is None else int(sum(p.numel() for p in module.parameters()))


# ----------------------------------------------------------------------------------------------------
# The whole evaluation.


def evaluate_model(
    model_dir: str | Path,  # MODEL_DIR from `deepfake train`
    faceset_a: str | Path | Faceset,
    faceset_b: str | Path | Faceset,
    out_dir: str | Path,  # REPORT_DIR: metrics.json, report.md, plots
    cfg: EvaluateConfig | None = None,
    frames: str | Path | None = None,  # a video for the temporal flicker check
    frames_direction: str = "a2b",  # the video shows the target of this direction
    plots: bool = True,
) -> dict[str, Any]:
    """Measure a model on held-out faces and write metrics.json and report.md. Returns the metrics."""
    from deepfake.model_dir import DISCRIMINATOR, checkpoint_weights, load_model_dir

    cfg = cfg or EvaluateConfig()
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DeepfakeError(f"{out_dir}: report output exists and is not a folder")
    distractors = read_distractors(cfg.distractors, [faceset_a, faceset_b])
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    loaded = load_model_dir(model_dir, device=str(device), checkpoint=cfg.checkpoint)
    tcfg = loaded.config
    ae = loaded.autoencoder.eval()
    disc = loaded.discriminator.eval() if loaded.discriminator is not None else None
    res = tcfg.model.resolution
    sets = {"a": as_faceset(faceset_a), "b": as_faceset(faceset_b)}
    for side, fs in sets.items():
        if tcfg.face_size and fs.size and fs.size < res:
            log.warning("faceset %s: faces are %d px, smaller than the model's %d px", fs.root, fs.size, res)
        if tcfg.coverage and fs.coverage and abs(fs.coverage - tcfg.coverage) > 1e-6:
            raise DeepfakeError(f"{fs.root}: faceset coverage {fs.coverage} differs from the model's {tcfg.coverage}")
    check_trained_on(model_dir, tcfg, loaded.identities, sets)
    held = {s: held_out_faces(sets[s], res, tcfg.val_fraction, tcfg.seed, s, cfg.max_faces, tcfg.val_split)
            for s in SIDES}
    identities = {s: held[s].train_mean_embedding for s in SIDES} | {
        name: fs.mean_embedding() for name, fs in distractors.items()}
    for name in distractors:
        for side in SIDES:
            d = float(np.linalg.norm(identities[name] - identities[side]))
            if d < cfg.verify_threshold:
                log.warning("distractor %s looks like side %s (identity distance %.2f < %.2f): a swap retrieved "
                            "as it counts as a miss", name, side.upper(), d, cfg.verify_threshold)

    # Reconstruction quality on held-out faces.
    recon, recon_images = {}, {}
    for s in SIDES:
        rgb, _ = run_autoencoder(ae, held[s].images, s, swap=False, batch=cfg.batch, device=device)
        recon_images[s] = rgb
        recon[s] = {
            "n": len(rgb),
            "ssim": float(np.mean([M.masked_ssim(r, x, m) for r, x, m in zip(rgb, held[s].images, held[s].masks)])),
            "psnr": float(np.mean([M.masked_psnr(r, x, m) for r, x, m in zip(rgb, held[s].images, held[s].masks)])),
            "sharpness_ratio": M.mean_sharpness_ratio(rgb, held[s].images, held[s].masks),
        }

    # Swaps: identity transfer, expression and pose preservation.
    measurer = FaceMeasurer(device)
    swaps, swap_images = {}, {}
    for name, (src, tgt) in DIRECTIONS.items():
        rgb, _ = run_autoencoder(ae, held[tgt].images, src, swap=True, batch=cfg.batch, device=device)
        swap_images[name] = rgb
        swaps[name] = {"source": src, "target": tgt, **measure_swaps(
            measurer, rgb, held[tgt].images, held[tgt].landmarks, held[tgt].masks, src, tgt, identities,
            cfg.verify_threshold)}

    # The model's own discriminator as a detector: held-out real faces against swaps.
    disc_metrics = None
    if disc is not None:
        real = np.concatenate([held[s].images for s in SIDES])
        fake = np.concatenate(list(swap_images.values()))
        p_real = discriminator_scores(disc, real, cfg.batch, device)
        p_fake = discriminator_scores(disc, fake, cfg.batch, device)
        scores = np.concatenate([p_real, p_fake])
        labels = np.r_[np.ones(len(p_real)), np.zeros(len(p_fake))]
        d_weights = checkpoint_weights(model_dir, cfg.checkpoint).with_name(DISCRIMINATOR)  # the file loaded
        disc_metrics = {
            "trained_by": discriminator_trainer(d_weights),
            "n_real": len(p_real), "n_fake": len(p_fake), "threshold": cfg.detect_threshold,
            "accuracy": M.accuracy(scores, labels, cfg.detect_threshold),
            "auc": M.roc_auc(scores, labels),
            "mean_p_real_on_real": float(p_real.mean()), "mean_p_real_on_swaps": float(p_fake.mean()),
        }

    temporal = None
    if frames is not None:
        temporal = measure_flicker(ae, Path(frames), frames_direction, tcfg, cfg, device)

    training = read_training_log(model_dir)
    cost = {
        "steps": training["steps"] if training["steps"] is not None else loaded.step,
        "wall_seconds": training["wall_seconds"],
        "faces_per_s": training["faces_per_s"],
        "gpu_busy": training["gpu_busy"],  # median share of wall time in the G and D phases
        "peak_mem_gib": training["peak_mem_gib"],  # CUDA's peak while training (None on CPU)
        "params_autoencoder": count_parameters(ae),
        "params_discriminator": count_parameters(disc),
    }
    val_curve = training["val"][1]
    result = {
        "model_dir": str(model_dir),
        "step": loaded.step,
        "preset": tcfg.preset,
        "resolution": res,
        "verify_threshold": cfg.verify_threshold,
        "held_out": {s: int(len(held[s].indices)) for s in SIDES},
        "identities": {s: {"faceset": str(sets[s].root), "role": f"side {s.upper()}"} for s in SIDES} | {
            n: {"faceset": str(fs.root), "role": "distractor", "faces": len(fs)} for n, fs in distractors.items()},
        "reconstruction": recon,
        "swap": swaps,
        "temporal": temporal,
        "discriminator": disc_metrics,
        "cost": cost,
        "evaluate_seconds": time.perf_counter() - t0,
    }
    result["summary"] = {
        "ssim": float(np.mean([recon[s]["ssim"] for s in SIDES])),
        "psnr": float(np.mean([recon[s]["psnr"] for s in SIDES])),
        "verification": float(np.mean([swaps[d]["verification"] for d in DIRECTIONS])),
        # Pooled over the swaps of both directions: the share of all swaps retrieved as their source.
        "retrieval": float(sum(swaps[d]["retrieval"] * swaps[d]["n"] for d in DIRECTIONS)
                           / sum(swaps[d]["n"] for d in DIRECTIONS)),
        "sharpness_ratio": float(np.mean([swaps[d]["sharpness_ratio"] for d in DIRECTIONS])),
        "recon_sharpness_ratio": float(np.mean([recon[s]["sharpness_ratio"] for s in SIDES])),
        "id_dist_source": float(np.mean([swaps[d]["id_dist_source"] for d in DIRECTIONS])),
        "landmark_error": float(np.mean([swaps[d]["landmark_error"] for d in DIRECTIONS])),
        "pose_error": float(np.mean([swaps[d]["pose_error"]["mean"] for d in DIRECTIONS])),
        "disc_auc": disc_metrics["auc"] if disc_metrics else float("nan"),
        "val_loss": float(val_curve[-1]) if val_curve else float("nan"),
        "params": cost["params_autoencoder"],
        "faces_per_s": cost["faces_per_s"] if cost["faces_per_s"] is not None else float("nan"),
        "steps": cost["steps"],
    }

    from deepfake.evaluate.report import write_report

    out_dir.mkdir(parents=True, exist_ok=True)
    save_json(cfg, out_dir / "evaluate_config.json")
    grid_rows = []
    if plots:
        n = cfg.grid_faces
        for s in SIDES:
            grid_rows += [(f"{s.upper()} held-out", held[s].images[:n]), (f"{s.upper()} -> {s.upper()}", recon_images[s][:n])]
        for name, (src, tgt) in DIRECTIONS.items():
            grid_rows.append((f"{tgt.upper()} as {src.upper()} ({name})", swap_images[name][:n]))
    # adds result["overfit_step"], by the model's own over-fitting rule
    write_report(out_dir, result, training, grid_rows, tcfg.overfit_patience, plots=plots)
    atomic_write_json(out_dir / "metrics.json", _json_safe(result))
    return result


def discriminator_trainer(weights: Path) -> str:
    """Who trained the discriminator weights in `weights`: `deepfake discriminator` marks its own in the
    file's metadata; a checkpoint's (best/, a step) are always the adversarial run's."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError):
        meta = {}
    return "deepfake discriminator" if "standalone_steps" in meta else "adversarial training"


def _json_safe(obj: Any) -> Any:
    """NaN and infinity are not JSON: they become null."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


# ----------------------------------------------------------------------------------------------------
# Temporal flicker.


@torch.no_grad()
def measure_flicker(autoencoder: torch.nn.Module, video: Path, direction: str, tcfg: Any, cfg: EvaluateConfig,
                    device: torch.device) -> dict[str, Any]:
    """Swap the face in consecutive frames; compare the frame-to-frame change of the swapped aligned face
    with that of the original aligned face (same crops, same masks), so alignment jitter cancels out."""
    from deepfake.config import ExtractConfig
    from deepfake.faces.analyzer import FaceAnalyzer
    from deepfake.io.video import VideoReader

    if direction not in DIRECTIONS:
        raise DeepfakeError(f"--frames-direction {direction!r}: choose a2b or b2a")
    src, _ = DIRECTIONS[direction]
    res = tcfg.model.resolution
    size = tcfg.face_size or res
    ecfg = ExtractConfig(size=size, coverage=tcfg.coverage or ExtractConfig().coverage, max_faces=1, workers=1)
    analyzer = FaceAnalyzer(ecfg, with_embedding=False)
    smoother = analyzer.new_smoother()  # the same temporal smoothing swap uses, so flicker is the model's
    originals, masks, missing = [], [], 0
    with VideoReader(video) as reader:
        for _index, t, rgb in reader:
            if cfg.max_frames and len(originals) >= cfg.max_frames:
                break
            faces = analyzer.analyze(rgb, smoother=smoother, time=t)
            if not faces:
                missing += 1
                continue
            originals.append(cv2.resize(faces[0].aligned, (res, res), interpolation=cv2.INTER_AREA))
            masks.append(cv2.resize(faces[0].mask, (res, res), interpolation=cv2.INTER_AREA))
    if len(originals) < 2:
        raise BadInputError(video, f"a face was found in only {len(originals)} frame(s); flicker needs at least 2")
    swapped, _ = run_autoencoder(autoencoder, np.stack(originals), src, swap=True, batch=cfg.batch, device=device)
    orig_change = M.mean_frame_change(originals, masks)
    swap_change = M.mean_frame_change(list(swapped), masks)
    return {
        "video": str(video),
        "direction": direction,
        "frames": len(originals),
        "frames_without_face": missing,
        "original_change": orig_change,
        "swapped_change": swap_change,
        "flicker_ratio": swap_change / orig_change if orig_change > 0 else float("nan"),
    }
