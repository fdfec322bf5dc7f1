"""`deepfake discriminator -m MODEL_DIR --a A --b B`: train D alone on real faces vs the model's output."""

from __future__ import annotations

import argparse

from deepfake.config import DiscriminatorRun
from deepfake.config.options import add_options, config_from_args

HELP = "train the discriminator alone as a real/fake classifier"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", required=True, metavar="MODEL_DIR", help="a trained model folder")
    p.add_argument("--a", required=True, metavar="FACESET_A", help="real faces of identity A")
    p.add_argument("--b", required=True, metavar="FACESET_B", help="real faces of identity B")
    add_options(p, DiscriminatorRun)
    p.add_argument("--no-save", action="store_true", help="report only; leave the model folder untouched")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from deepfake.model_dir import read_config
    from deepfake.train.discriminator import train_discriminator

    run_cfg = config_from_args(DiscriminatorRun, args)
    cfg = None
    if run_cfg.kind:
        cfg = replace(read_config(args.model).discriminator, kind=run_cfg.kind)
    r = train_discriminator(
        args.model, args.a, args.b, cfg=cfg, steps=run_cfg.steps, batch=run_cfg.batch, lr=run_cfg.lr,
        val_fraction=run_cfg.val_fraction, device=run_cfg.device, seed=run_cfg.seed, save=not args.no_save,
        progress=not args.no_progress,
    )
    print(
        f"held-out: accuracy {r.accuracy:.3f} (real {r.accuracy_real:.3f}, fake {r.accuracy_fake:.3f}), "
        f"ROC-AUC {r.roc_auc:.3f} on {r.n_val_real} real + {r.n_val_fake} fake faces"
    )
    return 0
