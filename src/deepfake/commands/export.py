"""`deepfake export -m MODEL_DIR -o FILE.dfm|FILE.onnx`: parse, then call the library."""

from __future__ import annotations

import argparse

from deepfake.config import ExportConfig
from deepfake.config.options import add_options, config_from_args

HELP = "export a model as one ONNX file: .dfm for DeepFaceLive/FaceFusion, .onnx for live"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", required=True, metavar="MODEL_DIR", help="model folder made by `deepfake train`")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="FILE.dfm: DeepFaceLab's contract (BGR, DFL whole-face crop) for DeepFaceLive and FaceFusion; "
                        "FILE.onnx: our crop and RGB, for `deepfake live`")
    add_options(p, ExportConfig)


def run(args: argparse.Namespace) -> int:
    from deepfake.export.write import export_model

    summary = export_model(args.model, args.output, config_from_args(ExportConfig, args))
    print(summary.line())
    return 0
