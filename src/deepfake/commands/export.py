"""`deepfake export -m MODEL_DIR -o FILE.dfm|FILE.onnx`: parse, then call the library."""

from __future__ import annotations

import argparse

from deepfake.commands import config_from_args
from deepfake.export.config import ExportConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = ExportConfig()
    p.add_argument("-m", "--model", required=True, metavar="MODEL_DIR", help="model folder made by `deepfake train`")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="FILE.dfm: DeepFaceLab's contract (BGR, DFL whole-face crop) for DeepFaceLive and FaceFusion; "
                        "FILE.onnx: our crop and RGB, for `deepfake live`")
    p.add_argument("--checkpoint", default=d.checkpoint, metavar="best|last|STEP",
                   help="which weights: the last saved, the validation minimum (best), or a kept step")
    p.add_argument("--direction", choices=["a2b", "b2a"], default=d.direction,
                   help="a2b: the file puts A's face onto B (its input shows B); b2a the reverse")
    p.add_argument("--fp16", action="store_true", help="float16 weights and arithmetic (half the size; for GPUs)")
    p.add_argument("--dfm-size", type=int, default=d.dfm_size, metavar="D",
                   help=".dfm input side, a multiple of the model's resolution (0 = the smallest >= 224, the size of "
                        "DeepFaceLive's public models)")
    p.add_argument("--opset", type=int, default=d.opset, help="ONNX opset (16 or later)")


def run(args: argparse.Namespace) -> int:
    from deepfake.export.write import export_model

    summary = export_model(args.model, args.output, config_from_args(ExportConfig, args))
    print(summary.line())
    return 0
