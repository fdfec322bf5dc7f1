"""Checkpoint speed: how long a save stops the training loop, written in the loop against on a thread.

    python benchmarks/checkpoint_speed.py                      # original64 and df256 (+ their discriminators)
    python benchmarks/checkpoint_speed.py --presets df256 --device cuda --repeat 3
    python benchmarks/checkpoint_speed.py --quick              # CPU smoke test (CI): the tiny preset, no claims

For each preset it builds the autoencoder and the patch discriminator on the device, with fused Adam
states filled by one step (what a checkpoint holds after training has started), then times, in the same
process, against the same disk:

- `in_loop_s`: `save_snapshot` called directly, as `deepfake train` did up to the eighth session: the
  device-to-host copies, serialisation, fsyncs and renames, all while the loop waits;
- `submit_s`: `SnapshotWriter.submit`, what the loop waits for now: the copies to host memory;
- `behind_s`: the rest of that write, on the writer's thread while the loop trains on
  (`SnapshotWriter.close` after `submit`);
- `loop_wait_ratio`: submit_s / in_loop_s, the share of the old pause the loop still pays.

Each repetition writes a new step into two temporary model folders on the disk of `--dir` (default:
the system's temporary folder), removed afterwards; one writer serves all repetitions, as one training
run keeps one, so repetition 1's submit_s includes allocating its host buffers and the later ones show
what every later save costs the loop. One JSON line per preset and repetition.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import dataclasses
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared harness beside this file
from harness import sync  # noqa: E402

from deepfake.train.checkpoint import Snapshot, save_snapshot  # noqa: E402
from deepfake.train.checkpoint_writer import SnapshotWriter  # noqa: E402
from deepfake.devices import resolve_device  # noqa: E402
from deepfake.models import preset_config  # noqa: E402
from deepfake.train.build import build  # noqa: E402


def trained_state(preset: str, device: torch.device) -> tuple[dict, int]:
    """A Snapshot's worth of state for `preset` on `device` (weights and Adam moments), and its parameter count."""
    cfg = preset_config(preset)
    cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, gan_weight=cfg.loss.gan_weight or 0.1))  # with its D
    torch.manual_seed(0)
    built = build(cfg, device)
    g, d = built.autoencoder, built.discriminator
    for module, opt in ((g, built.opt_g), (d, built.opt_d)):
        for p in module.parameters():
            p.grad = torch.full_like(p, 1e-3)
        opt.step()  # fills exp_avg and exp_avg_sq
        opt.zero_grad(set_to_none=True)
    state = dict(autoencoder=g.state_dict(), discriminator=d.state_dict(), optimizer_g=built.opt_g.state_dict(),
                 optimizer_d=built.opt_d.state_dict(), rng={"sample_gen": torch.Generator().manual_seed(0).get_state()},
                 state={"wall_s": 0.0})
    return state, sum(p.numel() for m in (g, d) for p in m.parameters())


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure(preset: str, device: torch.device, repeat: int, root: Path) -> list[dict]:
    """`repeat` saves each way, into two model folders; one SnapshotWriter for all of them, as one run
    keeps one (its host buffers are allocated at the first save: repetition 1's submit_s includes that)."""
    state, params = trained_state(preset, device)
    rows = []
    model_dir = Path(tempfile.mkdtemp(prefix=f"ckpt_{preset}_", dir=root))
    try:
        saver = SnapshotWriter(model_dir / "threaded", keep=1)
        for rep in range(repeat):
            sync(device)
            t0 = time.perf_counter()
            final = save_snapshot(model_dir / "in_loop", Snapshot(step=rep + 1, **state), keep=1)
            in_loop = time.perf_counter() - t0
            written = folder_bytes(final)
            sync(device)
            t0 = time.perf_counter()
            saver.submit(Snapshot(step=rep + 1, **state))
            submit = time.perf_counter() - t0
            saver.wait()
            behind = time.perf_counter() - t0 - submit
            rows.append(dict(preset=preset, repetition=rep + 1, device=str(device), params_M=round(params / 1e6, 2),
                             written_MiB=round(written / 2**20, 1), in_loop_s=round(in_loop, 3),
                             submit_s=round(submit, 3), behind_s=round(behind, 3),
                             loop_wait_ratio=round(submit / in_loop, 3)))
        saver.close()
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", default="original64,df256")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dir", type=Path, default=None, help="where the temporary model folders go (its disk is timed)")
    p.add_argument("--quick", action="store_true", help="CPU smoke test: the tiny preset, one repetition")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = p.parse_args(argv)
    device = torch.device("cpu") if args.quick else resolve_device(args.device)
    presets = ["tiny"] if args.quick else [s for s in args.presets.split(",") if s]
    repeat = 1 if args.quick else args.repeat
    root = args.dir or Path(tempfile.gettempdir())
    print(json.dumps({"device": str(device), "torch": torch.__version__, "dir": str(root),
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "quick": args.quick}), flush=True)
    rows = []
    for preset in presets:
        for row in measure(preset, device, repeat, root):
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
