"""`deepfake evaluate -m MODEL_DIR --a FACESET_A --b FACESET_B -o REPORT_DIR`: parse, then call the library."""

from __future__ import annotations

import argparse
import json

from deepfake.config import EvaluateConfig, EvaluateRun
from deepfake.config.options import add_options, config_from_args

from deepfake.config_io import load_json
from deepfake.errors import DeepfakeError

HELP = "measure a model's quality: SSIM, identity, expression, pose, flicker"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", required=True, metavar="MODEL_DIR", help="model folder from `deepfake train`")
    p.add_argument("--a", required=True, metavar="FACESET_A", help="faceset of identity A (the one the model trained on)")
    p.add_argument("--b", required=True, metavar="FACESET_B", help="faceset of identity B")
    p.add_argument("-o", "--output", required=True, metavar="REPORT_DIR", help="folder for metrics.json, report.md, plots")
    p.add_argument("--frames", metavar="VIDEO", help="also measure temporal flicker on this video")
    p.add_argument("--config", metavar="JSON", help="an EvaluateConfig JSON file (the options below override it)")
    add_options(p, EvaluateRun)
    add_options(p, EvaluateConfig)
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.epilog = ("--a and --b must be the facesets the model trained on, unchanged and each on its side: the held-out "
                "faces are its validation split, recomputed from them (swapped or changed facesets are refused). "
                "With --timeline, --max-faces sets the picture's rows (default 4); --checkpoint, --distractors and "
                "--frames do not apply.")


def run(args: argparse.Namespace) -> int:
    from deepfake.evaluate.runner import _json_safe, evaluate_model

    base = load_json(EvaluateConfig, args.config) if args.config else None
    cfg = config_from_args(EvaluateConfig, args, base)
    if args.timeline:
        from deepfake.evaluate.timeline import FACES, timeline

        if args.frames:
            raise DeepfakeError("--timeline measures no flicker: run evaluate with --frames without --timeline")
        # The picture's rows: a few faces unless --max-faces asks otherwise (0: every held-out face).
        faces = cfg.max_faces if cfg.max_faces != EvaluateConfig.max_faces else FACES
        result = timeline(args.model, args.a, args.b, args.output, cfg, direction=args.frames_direction, faces=faces)
        print(json.dumps({"steps": result["steps"], "marks": result["marks"]}, indent=2))
        print(f"timeline: {args.output}/timeline.png (the marks and their rules: {args.output}/timeline.md)")
        return 0
    result = evaluate_model(args.model, args.a, args.b, args.output, cfg, frames=args.frames,
                            frames_direction=args.frames_direction, plots=not args.no_plots)
    print(json.dumps(_json_safe(result["summary"]), indent=2))  # NaN is not JSON: null, as in metrics.json
    print(f"report: {args.output}/report.md")
    return 0
