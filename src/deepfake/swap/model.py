"""The model adapter: a trained model folder as the FaceModel the pipeline calls, aligned faces in and
swapped faces (and the learned mask) out, with what swap needs to align and pick faces the way training
did (face size, coverage, identity, hull region) and the segmenter of the segmenter mask modes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from deepfake.config import SwapConfig
from deepfake.devices import resolve_device
from deepfake.errors import ModelDirError

DIRECTIONS = {"a2b": ("b", "a"), "b2a": ("a", "b")}  # direction -> (identity in the input, decoder used)


class FaceModel(Protocol):
    """What the pipeline needs from a model: aligned faces in, swapped faces (and maybe a mask) out."""

    def __call__(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """faces: uint8 (N, S, S, 3) -> rgb float32 (N, S, S, 3) in [0, 1], mask float32 (N, S, S) or None."""
        ...


class AutoencoderModel:
    """A trained autoencoder as a FaceModel: resize to the model's resolution, swap, resize back.

    amp: "auto" runs the model in bf16 on a CUDA device that supports it (fp32 elsewhere); "bf16" forces
    bf16 autocast (also on CPUs with bf16 instructions); "off" keeps fp32. Outputs are fp32 either way.
    """

    def __init__(self, autoencoder: Any, resolution: int, to_side: str, device: str = "cpu", amp: str = "auto"):
        import torch

        self.device = torch.device(device)
        self.autoencoder = autoencoder.to(self.device).eval()
        self.resolution = resolution
        self.to_side = to_side
        if amp not in ("auto", "bf16", "off"):
            raise ValueError(f"amp '{amp}': choose auto, bf16 or off")
        cuda = self.device.type == "cuda"
        self.bf16 = amp == "bf16" or (amp == "auto" and cuda and torch.cuda.is_bf16_supported())
        if cuda:
            self.autoencoder.to(memory_format=torch.channels_last)

    def __call__(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        import torch
        import torch.nn.functional as F

        n, s = faces.shape[0], faces.shape[1]
        if n == 0:
            return np.zeros((0, s, s, 3), np.float32), np.zeros((0, s, s), np.float32)
        r = self.resolution
        with torch.inference_mode():
            x = torch.from_numpy(faces).to(self.device).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, S, S)
            if s != r:
                x = F.interpolate(x, size=(r, r), mode="bilinear", antialias=s > r, align_corners=False)  # (N, 3, R, R)
            if self.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                rgb, mask = self.autoencoder.swap(x, self.to_side)  # (N, 3, R, R), (N, 1, R, R)
            rgb, mask = rgb.float(), mask.float()
            if s != r:
                rgb = F.interpolate(rgb, size=(s, s), mode="bicubic", align_corners=False)  # (N, 3, S, S)
                mask = F.interpolate(mask, size=(s, s), mode="bilinear", align_corners=False)  # (N, 1, S, S)
            rgb = rgb.clamp(0, 1).permute(0, 2, 3, 1).contiguous().cpu().numpy()  # (N, S, S, 3)
            mask = mask.clamp(0, 1)[:, 0].contiguous().cpu().numpy()  # (N, S, S)
        return rgb, mask


@dataclass
class SwapModel:
    """A loaded model with everything swap needs to align and pick faces the way training did."""

    model: FaceModel
    face_size: int
    coverage: float
    identity: np.ndarray | None  # mean embedding of the person the model replaces (None = unknown)
    name: str  # for the provenance label
    step: int = 0
    mask_region: str = "whole"  # the hull region the model was trained on: swap's default --mask-region
    segmenter: Any = None  # a mask.apply.MaskPredictor, for the segmenter mask modes
    fingerprint: dict[str, str] | None = None  # provenance.credentials.model_identity: hashes, never paths


def load_swap_model(model_dir: str | Path, cfg: SwapConfig) -> SwapModel:
    """Load a model folder for swapping; ModelDirError (one line) when it is missing or incompatible."""
    from deepfake.model_dir import load_model_dir, refuse_pretrained

    model_dir = Path(model_dir)
    device = str(resolve_device(cfg.device))
    loaded = load_model_dir(model_dir, device=device, checkpoint=cfg.checkpoint)
    tcfg = loaded.config
    refuse_pretrained(model_dir, tcfg, "swap")
    config_json = model_dir / "config.json"
    if tcfg.face_size <= 0 or not 0.0 < tcfg.coverage <= 1.5:
        raise ModelDirError(
            f"{config_json}: no face size/coverage recorded (face_size={tcfg.face_size}, coverage={tcfg.coverage}); "
            "swap must align faces as the training facesets were"
        )
    if tcfg.face_size < tcfg.model.resolution:
        raise ModelDirError(
            f"{config_json}: face size {tcfg.face_size} px is smaller than the model resolution "
            f"{tcfg.model.resolution} px (the facesets do not match this model)"
        )
    in_side, out_side = DIRECTIONS[cfg.direction]
    identity = None
    if loaded.identities and in_side in loaded.identities:
        identity = np.asarray(loaded.identities[in_side], np.float32)
    model = AutoencoderModel(loaded.autoencoder, tcfg.model.resolution, out_side, device, cfg.amp)
    # Models from before mask_region was recorded were trained on whole-face hulls.
    from deepfake.model_dir import checkpoint_weights
    from deepfake.provenance.credentials import model_identity

    fingerprint = model_identity(model_dir, checkpoint_weights(model_dir, cfg.checkpoint))
    return SwapModel(model, tcfg.face_size, tcfg.coverage, identity, model_dir.resolve().name, loaded.step,
                     tcfg.mask_region or "whole", fingerprint=fingerprint)


def load_segmenter(mask_model: str | Path, device: str = "auto"):
    """The segmenter of `mask_model` as a batched MaskPredictor; ModelDirError (one line) for a bad folder."""
    from deepfake.segment.apply import MaskPredictor
    from deepfake.segment.checkpoint import load_mask_model

    dev = resolve_device(device)
    return MaskPredictor(load_mask_model(mask_model, dev), dev)
