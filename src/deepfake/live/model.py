"""The model `deepfake live` runs: a model folder (exported to ONNX on the fly, or PyTorch), or a .onnx
or .dfm file (ours or DeepFaceLab's), as swap's SwapModel."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from deepfake.errors import BadInputError, DeepfakeError
from deepfake.config import LiveConfig
from deepfake.config.choices import LIVE_RUNTIMES as RUNTIMES
from deepfake.swap.model import SwapModel

# Our crop's coverage for a DFL-contract file from elsewhere: wide enough that our aligned face holds the
# whole DFL whole-face crop it is resampled into (at 0.59 both crops have the same eye distance).
FOREIGN_COVERAGE = 0.55


def load_live_model(path: str | Path, cfg: LiveConfig) -> SwapModel:
    """One-line errors: a missing path, a folder that is not a model, a file that is not the DFM contract,
    a --direction or --checkpoint the file was not exported with."""
    return open_live_model(path, cfg)[0]


def open_live_model(path: str | Path, cfg: LiveConfig) -> tuple[SwapModel, LiveConfig]:
    """The model and `cfg` as it runs: with the direction and checkpoint it swaps with, which for an
    exported file are the ones it was exported with ("unknown" for a file made elsewhere)."""
    from deepfake.export.runtime import GraphFaceModel, load_face_graph

    path = Path(path)
    if cfg.runtime not in RUNTIMES:
        raise DeepfakeError(f"--runtime {cfg.runtime}: choose from {', '.join(RUNTIMES)}")
    if not path.exists():
        raise BadInputError(path, "not found (a model folder, .onnx or .dfm)")
    if path.is_dir():
        cfg = dataclasses.replace(cfg, direction=cfg.direction or "a2b")
        return _from_folder(path, cfg), cfg
    if path.suffix.lower() not in (".onnx", ".dfm"):
        raise BadInputError(path, "not a model: give a model folder, a .onnx or a .dfm file")
    graph = load_face_graph(path, threads=cfg.threads)
    meta = graph.meta
    fingerprint = {"sha256": meta.get("model_sha256") or _file_sha256(path)}
    if graph.ours:
        coverage = float(meta.get("coverage", FOREIGN_COVERAGE))
        face_size = int(meta.get("face_size", graph.resolution))
        identity = np.asarray(json.loads(meta["identity"]), np.float32) if "identity" in meta else None
        step = int(meta.get("step", 0))
        region = meta.get("mask_region", "whole")
    else:
        coverage, face_size, identity, step, region = FOREIGN_COVERAGE, graph.resolution, None, 0, "whole"
    model = SwapModel(GraphFaceModel(graph, coverage), face_size, coverage, identity, path.stem, step, region,
                      fingerprint=fingerprint)
    return model, _as_exported(path, meta if graph.ours else None, step, cfg)


def _as_exported(path: Path, meta: dict[str, str] | None, step: int, cfg: LiveConfig) -> LiveConfig:
    """`cfg` with the file's direction and checkpoint (`meta`: our export's metadata; None: a file made
    elsewhere). The file holds one decoder of one checkpoint, so an option asking for another is refused."""
    hint = "leave the option out"
    if meta is None:
        direction = checkpoint = "unknown"
        why = "a file made elsewhere swaps its own way"
    else:
        try:
            exported = json.loads(meta.get("export_config", "{}"))
        except ValueError:
            exported = {}
        direction = meta.get("direction", "unknown")
        checkpoint = str(exported.get("checkpoint", "unknown")) if isinstance(exported, dict) else "unknown"
        why = f"exported with --direction {direction} --checkpoint {checkpoint} (step {step})"
        hint += ", or export the model folder again"
    if cfg.direction and cfg.direction != direction:
        raise BadInputError(path, f"{why}, not --direction {cfg.direction} ({hint})")
    # "last", the default, cannot be told from not given; any other value must be what the file holds.
    if cfg.checkpoint != "last" and cfg.checkpoint not in (checkpoint, str(step) if meta else None):
        raise BadInputError(path, f"{why}, not --checkpoint {cfg.checkpoint} ({hint})")
    return dataclasses.replace(cfg, direction=direction, checkpoint=checkpoint)


def _file_sha256(path: Path) -> str:
    from deepfake.provenance.credentials import file_sha256

    return file_sha256(path)


def _from_folder(path: Path, cfg: LiveConfig) -> SwapModel:
    from deepfake.swap.model import load_swap_model

    torch_model = load_swap_model(path, cfg.swap_config())  # checks the folder, builds the PyTorch model
    if cfg.runtime == "torch":
        import torch

        torch.set_num_threads(max(1, cfg.threads))
        return torch_model
    from deepfake.config import ExportConfig
    from deepfake.export.runtime import GraphFaceModel, open_face_graph
    from deepfake.export.write import export_bytes

    data, _, _ = export_bytes(path, "ours", ExportConfig(checkpoint=cfg.checkpoint, direction=cfg.direction))
    graph = open_face_graph(data, path, threads=cfg.threads)
    return SwapModel(GraphFaceModel(graph, torch_model.coverage), torch_model.face_size, torch_model.coverage,
                     torch_model.identity, torch_model.name, torch_model.step, torch_model.mask_region,
                     fingerprint=torch_model.fingerprint)
