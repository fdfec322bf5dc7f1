"""`deepfake export` as a library call: a model folder in, one ONNX file out (.dfm or .onnx).

The suffix picks the flavour: .dfm is DeepFaceLab's contract (BGR, DFL whole-face crop) for DeepFaceLive
and FaceFusion; .onnx keeps our crop and RGB for our own runtime (`deepfake live`). Both carry the
contract's names, so either loads in any DFM runtime, and both record in their metadata who made them,
from which model, and that what they output is synthetic. The file is written to a temp file and renamed.
"""

from __future__ import annotations

import io
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from deepfake import __version__
from deepfake.config_io import to_dict
from deepfake.errors import DeepfakeError, ModelDirError, OutputError
from deepfake.config import ExportConfig
from deepfake.export.graph import FLAVOURS, INPUT, OUTPUTS, ContractGraph
from deepfake.io.atomic import atomic_write_bytes
from deepfake.provenance.label import label_text, make_record

DIRECTIONS = {"a2b": ("b", "a"), "b2a": ("a", "b")}  # direction -> (identity in the input, decoder used)
CROP_NAMES = {"dfl": "dfl_whole_face", "ours": "deepfake"}  # the metadata's names for the two crops
COLOR_ORDERS = {"dfl": "BGR", "ours": "RGB"}
PROVENANCE_NOTE = ("Every face this model outputs is synthetic (a face swap made with deepfake). Label what you "
                   "publish as synthetic, and only swap faces of people who consented.")


@dataclass
class ExportSummary:
    output: Path
    crop: str  # dfl | ours
    size: int  # the input's side
    step: int
    megabytes: float
    seconds: float

    def line(self) -> str:
        return (f"{self.output}: {CROP_NAMES[self.crop]} crop, {COLOR_ORDERS[self.crop]}, {self.size} px, "
                f"step {self.step}, {self.megabytes:.1f} MB in {self.seconds:.1f} s")


def check_export(output: Path, cfg: ExportConfig) -> str:
    """The crop the suffix asks for; one-line errors for a bad suffix, a folder as the output, an option
    the format has no use for, a bad direction or opset."""
    crop = FLAVOURS.get(output.suffix.lower())
    if crop is None:
        raise OutputError(f"{output}: unknown export format '{output.suffix or '(none)'}' (use .dfm or .onnx)")
    if output.is_dir():
        raise OutputError(f"{output}: is a folder (give the file to write, FILE.dfm or FILE.onnx)")
    if crop == "ours" and cfg.dfm_size:
        raise DeepfakeError(f"{output}: --dfm-size {cfg.dfm_size} is for a .dfm; a .onnx takes our crop at the "
                            "model's resolution")
    if cfg.direction not in DIRECTIONS:
        raise DeepfakeError(f"--direction {cfg.direction}: choose from {', '.join(DIRECTIONS)}")
    if cfg.opset < 16:
        raise DeepfakeError(f"--opset {cfg.opset}: grid_sample needs opset 16 or later")
    return crop


def export_bytes(model_dir: str | Path, crop: str, cfg: ExportConfig) -> tuple[bytes, dict[str, str], int]:
    """The ONNX file's bytes for `model_dir`, its metadata and its input's side."""
    import onnx
    import torch

    from deepfake.model_dir import checkpoint_weights, load_model_dir, refuse_pretrained
    from deepfake.provenance.credentials import model_identity

    model_dir = Path(model_dir)
    loaded = load_model_dir(model_dir, device="cpu", checkpoint=cfg.checkpoint)
    tcfg = loaded.config
    refuse_pretrained(model_dir, tcfg, "be exported for a swap")
    if tcfg.face_size <= 0 or not 0.0 < tcfg.coverage <= 1.5:
        raise ModelDirError(f"{model_dir / 'config.json'}: no face size/coverage recorded; the export cannot know its crop")
    in_side, out_side = DIRECTIONS[cfg.direction]
    r = tcfg.model.resolution
    if cfg.dfm_size and crop == "dfl" and (cfg.dfm_size < 0 or cfg.dfm_size % r):
        raise DeepfakeError(f"--dfm-size {cfg.dfm_size}: must be a multiple of the model's resolution {r}")
    graph = ContractGraph(loaded.autoencoder.eval(), in_side, out_side, r, crop, tcfg.coverage, cfg.fp16,
                          cfg.dfm_size).eval()
    size = graph.size
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice and tracer warnings
        torch.onnx.export(graph, (torch.rand(1, size, size, 3),), buf, dynamo=False, opset_version=cfg.opset,
                          input_names=[INPUT], output_names=list(OUTPUTS),
                          dynamic_axes={name: {0: "N"} for name in (INPUT, *OUTPUTS)}, do_constant_folding=True)
    proto = onnx.load_from_string(buf.getvalue())
    identities = loaded.identities or {}
    meta = {
        "tool": "deepfake",
        "version": __version__,
        "provenance": PROVENANCE_NOTE,
        "label": label_text(make_record(model_dir.resolve().name, model_step=loaded.step, direction=cfg.direction,
                                        export=CROP_NAMES[crop])),
        "crop": CROP_NAMES[crop],
        "color_order": COLOR_ORDERS[crop],
        "resolution": str(r),
        "input_size": str(size),
        "face_size": str(tcfg.face_size),
        "coverage": repr(float(tcfg.coverage)),
        "mask_region": tcfg.mask_region or "whole",
        "direction": cfg.direction,
        "step": str(loaded.step),
        # The hash swap's invisible mark and credentials name the model by, so live output from this file
        # carries the same mark as `deepfake swap` with the folder.
        "model_sha256": model_identity(model_dir, checkpoint_weights(model_dir, cfg.checkpoint))["sha256"],
        "precision": "fp16" if cfg.fp16 else "fp32",
        "model_config": json.dumps(to_dict(tcfg), sort_keys=True),
        "export_config": json.dumps(to_dict(cfg), sort_keys=True),
    }
    if in_side in identities:  # lets a runtime pick the faces this model replaces, as swap does
        meta["identity"] = json.dumps([round(float(v), 6) for v in identities[in_side]])
    onnx.helper.set_model_props(proto, meta)
    proto.producer_name, proto.producer_version = "deepfake", __version__
    onnx.checker.check_model(proto)
    return proto.SerializeToString(), meta, size


def export_model(model_dir: str | Path, output: str | Path, cfg: ExportConfig) -> ExportSummary:
    """Write `output` (.dfm or .onnx) from `model_dir`; see the module docstring."""
    from deepfake.swap.checks import check_writable, new_folders_removed_on_failure

    start = time.perf_counter()
    output = Path(output)
    crop = check_export(output, cfg)
    with new_folders_removed_on_failure(output.parent):
        check_writable(output.parent)
        data, meta, size = export_bytes(model_dir, crop, cfg)
        atomic_write_bytes(output, data)
    return ExportSummary(output, crop, size, int(meta["step"]), len(data) / 2**20, time.perf_counter() - start)
