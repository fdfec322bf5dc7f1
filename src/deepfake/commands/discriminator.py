"""`deepfake discriminator -m MODEL_DIR --a A --b B`: train D alone on real faces vs the model's output."""

from __future__ import annotations

import argparse

HELP = "train the discriminator alone as a real/fake classifier"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", required=True, metavar="MODEL_DIR", help="a trained model folder")
    p.add_argument("--a", required=True, metavar="FACESET_A", help="real faces of identity A")
    p.add_argument("--b", required=True, metavar="FACESET_B", help="real faces of identity B")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch", type=int, default=16, help="real faces per step (plus as many fakes)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--kind", choices=["patch", "unet"], default=None, help="default: the model's own setting")
    p.add_argument("--val-fraction", type=float, default=0.2, help="faces held out per identity for the scores")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-save", action="store_true", help="report only; leave the model folder untouched")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from deepfake.model_dir import read_config
    from deepfake.train.discriminator import train_discriminator

    cfg = None
    if args.kind:
        cfg = replace(read_config(args.model).discriminator, kind=args.kind)
    r = train_discriminator(
        args.model, args.a, args.b, cfg=cfg, steps=args.steps, batch=args.batch, lr=args.lr,
        val_fraction=args.val_fraction, device=args.device, seed=args.seed, save=not args.no_save,
        progress=not args.no_progress,
    )
    print(
        f"held-out: accuracy {r.accuracy:.3f} (real {r.accuracy_real:.3f}, fake {r.accuracy_fake:.3f}), "
        f"ROC-AUC {r.roc_auc:.3f} on {r.n_val_real} real + {r.n_val_fake} fake faces"
    )
    return 0
