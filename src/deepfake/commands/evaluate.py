"""`deepfake evaluate -m MODEL_DIR --a FACESET_A --b FACESET_B -o REPORT_DIR`: parse, then call the library."""

from __future__ import annotations

import argparse
import json

from deepfake.config import EvaluateConfig

from deepfake.config_io import load_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = EvaluateConfig()
    p.add_argument("-m", "--model", required=True, metavar="MODEL_DIR", help="model folder from `deepfake train`")
    p.add_argument("--a", required=True, metavar="FACESET_A", help="faceset of identity A (the one the model trained on)")
    p.add_argument("--b", required=True, metavar="FACESET_B", help="faceset of identity B")
    p.add_argument("-o", "--output", required=True, metavar="REPORT_DIR", help="folder for metrics.json, report.md, plots")
    p.add_argument("--frames", metavar="VIDEO", help="also measure temporal flicker on this video")
    p.add_argument("--frames-direction", choices=["a2b", "b2a"], default="a2b",
                   help="a2b: the video shows B and gets A's face; b2a: the reverse")
    p.add_argument("--distractors", nargs="+", default=[], metavar="FACESET",
                   help="facesets of other people: more identities for the top-1 retrieval metric")
    p.add_argument("--config", metavar="JSON", help="an EvaluateConfig JSON file (flags below override it)")
    p.add_argument("--max-faces", type=int, default=d.max_faces, help="held-out faces per side (0 = all)")
    p.add_argument("--max-frames", type=int, default=d.max_frames, help="video frames for the flicker measure")
    p.add_argument("--threshold", type=float, default=d.detect_threshold, help="discriminator P(real) threshold")
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--checkpoint", default="last", metavar="best|last|STEP",
                   help="which weights: the last saved, the validation minimum (best), or a kept step")
    p.add_argument("--timeline", action="store_true",
                   help="instead: swap the same held-out faces at every kept step (train --keep-every N) and "
                        "mark the under-trained, best and over-trained ones (timeline.png, timeline.md with the rules)")


def run(args: argparse.Namespace) -> int:
    from deepfake.evaluate.runner import evaluate_model

    cfg = load_json(EvaluateConfig, args.config) if args.config else EvaluateConfig()
    cfg.max_faces, cfg.max_frames = args.max_faces, args.max_frames
    cfg.detect_threshold, cfg.device = args.threshold, args.device
    if args.distractors:
        cfg.distractors = list(args.distractors)
    cfg.checkpoint = args.checkpoint
    if args.timeline:
        from deepfake.evaluate.timeline import timeline

        result = timeline(args.model, args.a, args.b, args.output, cfg, direction=args.frames_direction)
        print(json.dumps({"steps": result["steps"], "marks": result["marks"]}, indent=2))
        print(f"timeline: {args.output}/timeline.png (the marks and their rules: {args.output}/timeline.md)")
        return 0
    result = evaluate_model(args.model, args.a, args.b, args.output, cfg, frames=args.frames,
                            frames_direction=args.frames_direction, plots=not args.no_plots)
    print(json.dumps(result["summary"], indent=2))
    print(f"report: {args.output}/report.md")
    return 0
