"""Data-parallel training on CPU: gloo, 2 processes, the real train loop.

The claim: 2 ranks at per-rank batch B train the same model as 1 process at batch 2B.
- After N steps every rank holds the same autoencoder, and the model rank 0 saved moved away from its
  initialisation to what the single process trains.
- The logged losses match the single-process run at the same global batch.
- Only rank 0 writes anything; a resumed run continues every rank exactly; the ranks stop together.

Why augmentation is switched off for the comparison: each rank draws its own augmentation seed
(`rank_seed`), so with augmentation on the two runs see differently warped faces and the losses differ
by design. With every strength at zero, the augmentation code still runs but is the identity per face,
so a face's input depends only on the face, not on which rank drew it: the runs are batch-equivalent.
Sampling is shared (one global draw per step, sliced by rank), so both runs see the same faces.

Every loss term is a mean of per-face values (masked MSE/L1 normalise each face by its own mask area),
so the mean of the two ranks' half-batch losses is exactly the full-batch loss, MSE and L1 included.

Everything is observed from outside the loop: the model folder (load_model_dir, latest_snapshot,
read_metrics) and each rank's TrainResult.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from deepfake.config import AugmentConfig, TrainConfig
from deepfake.errors import DeepfakeError
from deepfake.model_dir import load_model_dir
from deepfake.models import preset_config
from deepfake.train import train
from deepfake.train import distributed as dist
from deepfake.train.checkpoint import latest_snapshot
from deepfake.train.metrics import TRAIN_KEYS, read_metrics
from deepfake.train.step import G_TERMS
from test_data_cache import build_faceset

STEPS = 4
WORLD = 2
NO_AUGMENT = AugmentConfig(warp=False, rotation=0.0, scale=0.0, shift=0.0, flip=False,
                           brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)


def tiny_config() -> TrainConfig:
    cfg = preset_config("tiny")
    return replace(
        cfg, batch=4, steps=STEPS, device="cpu", amp="off", augment=NO_AUGMENT,
        # D phase too (its gradients are averaged by hand), and every reconstruction term on.
        loss=replace(cfg.loss, gan_weight=0.1, mse_weight=10.0, l1_weight=1.0),
        val_fraction=0.1, val_every=0, log_every=1, save_every=1000, preview_every=0, tensorboard=False,
    )


@pytest.fixture(scope="module")
def facesets(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    build_faceset(root / "a", clip="d6.mp4", count=10, size=64, every=6)
    build_faceset(root / "b", clip="d14.mp4", count=10, size=64, every=6)
    return root / "a", root / "b"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join_group(rank: int, world: int, port: int) -> None:
    """What torchrun sets for each process; torch on one thread (two ranks on a 2-core machine)."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)


def _train_main(rank: int, world: int, port: int, cfg: TrainConfig, a: str, b: str, model_dirs: list[str],
                out: str, options: list[dict[str, Any]]) -> None:
    """One rank: the real train loop into model_dirs[rank] with options[rank]; its TrainResult to out."""
    _join_group(rank, world, port)
    result = train(cfg, Path(a), Path(b), Path(model_dirs[rank]), progress=False, **options[rank])
    Path(out, f"rank{rank}.json").write_text(json.dumps(
        {"step": result.step, "stopped_by": result.stopped_by, "main": result.main, "rows": result.metrics}))


def launch(cfg: TrainConfig, a: Path, b: Path, model_dirs: list[Path], out: Path,
           options: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Train on 2 gloo ranks (spawned processes; torchrun does the same through the environment).
    Returns each rank's TrainResult as {step, stopped_by, main, rows}."""
    out.mkdir(parents=True)
    mp.spawn(_train_main, args=(WORLD, free_port(), cfg, str(a), str(b), [str(d) for d in model_dirs], str(out),
                                options or [{}] * WORLD), nprocs=WORLD, join=True)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]


@pytest.fixture(scope="module")
def runs(facesets, tmp_path_factory):
    """The same config trained three ways: 2 ranks, 1 process at the same global batch, and 0 steps
    (a fresh folder is saved with its initial weights: what every run starts from).

    Rank 1 is given a folder of its own, which must stay empty: under torchrun every rank gets the same
    folder, where a stray write by rank 1 could not be told from rank 0's. Validation every step is what
    shows rank 1's weights (test_every_rank_holds_the_same_autoencoder); previews every 2 steps give
    rank 0 previews to write, so the empty folder covers them too."""
    a, b = facesets
    root = tmp_path_factory.mktemp("runs")
    cfg = replace(tiny_config(), val_every=1, preview_every=2)
    (root / "rank1").mkdir()
    ranks = launch(cfg, a, b, [root / "ddp", root / "rank1"], root / "results")
    single = train(cfg, a, b, root / "single", progress=False)
    init = train(replace(cfg, steps=0), a, b, root / "init", progress=False)
    assert (single.step, init.step) == (STEPS, 0)
    return root, ranks, single


def test_every_rank_holds_the_same_autoencoder(runs):
    """Validation runs each rank's own autoencoder on the same fixed faces (held out, unsharded) and
    is not averaged over ranks, unlike the training losses: equal validation losses at every step mean
    equal models at every step. (Rank 1's discriminator is seen only through the losses averaged over
    ranks, its D loss and GAN term: test_loss_matches_a_single_process_run_at_the_same_global_batch.)"""
    _, (r0, r1), *_ = runs
    assert (r0["main"], r1["main"]) == (True, False)
    assert [r["step"] for r in r0["rows"]] == [r["step"] for r in r1["rows"]] == list(range(1, STEPS + 1))
    for row0, row1 in zip(r0["rows"], r1["rows"]):
        for key in ("val_a", "val_b"):
            assert row0[key] is not None and math.isfinite(row0[key]), row0
            assert row0[key] == row1[key], f"step {row0['step']}: {key} {row0[key]} on rank 0, {row1[key]} on rank 1"
    # The probe watches a changing model, not one fixed function.
    assert r0["rows"][0]["val_a"] != r0["rows"][-1]["val_a"]


def test_training_moved_every_weight_from_its_initialisation(runs):
    root, *_ = runs
    trained, init = load_model_dir(root / "ddp"), load_model_dir(root / "init")
    assert (trained.step, init.step) == (STEPS, 0)
    assert trained.discriminator is not None and init.discriminator is not None
    for net in ("autoencoder", "discriminator"):
        start = dict(getattr(init, net).named_parameters())
        for name, w in getattr(trained, net).named_parameters():
            assert not torch.equal(w, start[name]), f"{net}.{name} still holds its initial value"


def test_loss_matches_a_single_process_run_at_the_same_global_batch(runs):
    """The logged losses are the global batch's: the mean over ranks, at full precision (the rows of
    TrainResult; metrics.csv holds them to 6 digits)."""
    _, (r0, _), single = runs
    ddp, single = r0["rows"], single.metrics
    assert [r["step"] for r in ddp] == [r["step"] for r in single] == list(range(1, STEPS + 1))
    # Every G term and D's loss; D's accuracies are left out: a logit within rounding of the threshold
    # would flip one face's verdict.
    for r, r1 in zip(ddp, single):
        for key in G_TERMS + ("loss_d",):
            assert r[key] == pytest.approx(r1[key], rel=1e-5, abs=1e-7), \
                f"step {r['step']}: {key} {r[key]} vs single-process {r1[key]}"
    assert ddp[-1]["loss"] != ddp[0]["loss"]  # the loss moved: the steps really trained


def test_the_saved_model_computes_what_a_single_process_trains(runs):
    """Both networks, compared through their outputs on fixed inputs, against how far 4 steps moved
    those outputs from the initialisation. Not weight by weight: Adam divides by sqrt(v), so on
    near-zero gradients float summation-order noise becomes lr-sized weight changes. Early Adam steps
    are close to lr * sign(gradient), so even a half-batch gradient (say, one left un-averaged) moves
    the weights nearly as far as the right one: the bar is a small share of the movement."""
    root, *_ = runs
    ddp, single, init = (load_model_dir(root / name) for name in ("ddp", "single", "init"))
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # (4, 3, 64, 64)

    def outputs(m) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return {"autoencoder": torch.cat([torch.cat(m.autoencoder(x, side), dim=1) for side in ("a", "b")]),  # (8, 4, 64, 64)
                    "discriminator": m.discriminator(x)}

    out, out1, out0 = outputs(ddp), outputs(single), outputs(init)
    for net in out:
        moved = (out1[net] - out0[net]).abs().max().item()
        worst = (out[net] - out1[net]).abs().max().item()
        assert moved > 0 and worst < 1e-3 * moved, \
            f"{net}: the DDP model's outputs differ from the single process's by up to {worst}; training moved them {moved}"


def test_only_rank_zero_writes(runs):
    root, *_ = runs
    assert sorted(str(p.relative_to(root / "rank1")) for p in (root / "rank1").rglob("*")) == []
    # What rank 0 wrote, so the empty folder is not empty for want of anything to write.
    written = {str(p.relative_to(root / "ddp")) for p in (root / "ddp").rglob("*") if p.is_file()}
    expected = {"config.json", "metrics.csv", "autoencoder.safetensors", "discriminator.safetensors",
                "checkpoints/step_000004/autoencoder.safetensors", "previews/step_000002.png", "previews/step_000004.png"}
    assert expected <= written, sorted(written)


def test_helpers_are_single_process_no_ops_without_torchrun(monkeypatch):
    for var in dist.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    ctx = dist.init_from_env("cpu")
    assert (ctx.rank, ctx.world_size, ctx.distributed) == (0, 1, False)
    assert dist.rank() == 0 and dist.world_size() == 1 and dist.is_main()
    dist.barrier()
    t = torch.tensor([1.0, 3.0])
    assert dist.all_reduce_mean(t) is t
    assert dist.shard_batch(16) == 16
    module = torch.nn.Linear(2, 2)
    assert dist.wrap_ddp(module, "cpu") is module and dist.unwrap(module) is module
    assert dist.rank_seed(5) == 5


def test_torchrun_launches_the_cli_and_resumes(facesets, tmp_path):
    """`torchrun --nproc_per_node 2 -m deepfake train ...` trains, rank 0 saves, a second launch resumes."""
    a, b = facesets
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this python")
    out = tmp_path / "model"
    base = [str(torchrun), "--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "deepfake", "train",
            "--a", str(a), "--b", str(b), "-o", str(out), "--preset", "tiny", "--batch", "4", "--device", "cpu",
            "--save-every", "2", "--preview-every", "0", "--val-every", "0", "--no-progress",
            "--set", "tensorboard=false", "--set", "log_every=1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.run(base + ["--steps", "2"], capture_output=True, text=True, timeout=240, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    second = subprocess.run(base + ["--steps", "3"], capture_output=True, text=True, timeout=240, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming" in second.stderr
    steps = [r["step"] for r in read_metrics(out / "metrics.csv")]
    assert steps == [1, 2, 3], steps
    assert latest_snapshot(out).step == 3


def _helpers_main(rank: int, world: int, port: int, out: str) -> None:
    _join_group(rank, world, port)
    with dist.init_from_env("cpu") as ctx:
        param = torch.nn.Parameter(torch.zeros(3))
        param.grad = torch.full((3,), float(rank + 1))  # rank 0: 1s, rank 1: 2s
        dist.all_reduce_gradients([param])
        try:
            dist.shard_batch(5)
            uneven = None
        except DeepfakeError as e:
            uneven = str(e)
        found = {
            "rank": dist.rank(), "world": dist.world_size(), "main": dist.is_main(),
            "ctx": [ctx.rank, ctx.world_size, ctx.backend],
            "mean": dist.all_reduce_mean(torch.tensor([float(rank), 10.0 * rank])).tolist(),
            "nan_anywhere": dist.all_reduce_max(torch.tensor(float(rank == 1))).item(),
            "grad": param.grad.tolist(),
            # Two dtypes (one flat all-reduce each), each tensor back in its own shape.
            "means": [t.tolist() for t in dist.mean_over_ranks(
                [torch.full((2,), float(rank)), torch.full((1,), 4.0 * rank, dtype=torch.float64), torch.full((3,), 2.0 + rank)])],
            "max": dist.all_reduce_max(torch.tensor(float(rank == 0))).item(),
            "gathered": dist.all_gather_rows(torch.tensor([rank, 10 * rank], dtype=torch.uint8)).tolist(),
            "seed": dist.rank_seed(7),
            "shard": dist.shard_batch(8),
            "uneven": uneven,
        }
        dist.barrier()
    Path(out, f"helpers{rank}.json").write_text(json.dumps(found))


def test_helpers_under_gloo(tmp_path):
    mp.spawn(_helpers_main, args=(WORLD, free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    r0, r1 = (json.loads((tmp_path / f"helpers{r}.json").read_text()) for r in range(WORLD))
    assert r0["ctx"] == [0, 2, "gloo"] and r1["ctx"] == [1, 2, "gloo"]
    assert (r0["main"], r1["main"]) == (True, False)
    assert r0["mean"] == r1["mean"] == [0.5, 5.0]
    assert r0["nan_anywhere"] == r1["nan_anywhere"] == 1.0  # rank 1's flag reaches rank 0
    assert r0["grad"] == r1["grad"] == [1.5, 1.5, 1.5]
    assert r0["means"] == r1["means"] == [[0.5, 0.5], [2.0], [2.5, 2.5, 2.5]]
    assert r0["max"] == r1["max"] == 1.0
    assert r0["gathered"] == r1["gathered"] == [[0, 0], [1, 10]]  # rank order
    assert r0["seed"] == 7 and r1["seed"] != 7  # each rank its own augmentation stream
    assert r0["shard"] == r1["shard"] == 4
    for r in (r0, r1):
        assert r["uneven"] is not None and "batch 5 does not split evenly over 2" in r["uneven"], r["uneven"]


def _assert_same(x: Any, y: Any, where: str) -> None:
    """Nested dicts/lists of tensors and plain values, equal bit for bit."""
    if torch.is_tensor(x):
        assert torch.is_tensor(y) and x.dtype == y.dtype and torch.equal(x, y), f"{where} differs"
    elif isinstance(x, dict):
        assert isinstance(y, dict) and x.keys() == y.keys(), f"{where}: keys {sorted(x)} vs {sorted(y)}"
        for k in x:
            _assert_same(x[k], y[k], f"{where}.{k}")
    elif isinstance(x, (list, tuple)):
        assert len(x) == len(y), f"{where}: length {len(x)} vs {len(y)}"
        for i, (a, b) in enumerate(zip(x, y)):
            _assert_same(a, b, f"{where}[{i}]")
    else:
        assert x == y, f"{where}: {x!r} vs {y!r}"


def test_a_resumed_ddp_run_is_bitwise_the_uninterrupted_one(facesets, tmp_path):
    """Augmentation on: each rank's own stream must continue where it stopped, or the warps differ.
    Rank 1's stream reaches rank 0's snapshot twice: through the averaged gradients, and as its own
    generator state (aug_gen_ranks)."""
    a, b = facesets
    cfg = replace(tiny_config(), augment=AugmentConfig(), steps=4, save_every=2)
    straight = launch(cfg, a, b, [tmp_path / "straight"] * WORLD, tmp_path / "straight_results")
    first = launch(cfg, a, b, [tmp_path / "resumed"] * WORLD, tmp_path / "first_results", [{"stop_at": 2}] * WORLD)
    second = launch(cfg, a, b, [tmp_path / "resumed"] * WORLD, tmp_path / "second_results")  # steps 3 and 4
    assert [(r["step"], r["stopped_by"]) for r in first] == [(2, "stop_at")] * WORLD
    assert [(r["step"], r["stopped_by"]) for r in straight + second] == [(4, "steps")] * 2 * WORLD

    s, r = latest_snapshot(tmp_path / "straight"), latest_snapshot(tmp_path / "resumed")
    assert s.step == r.step == 4
    for part in ("autoencoder", "discriminator", "optimizer_g", "optimizer_d", "rng"):
        _assert_same(getattr(s, part), getattr(r, part), part)
    wall = {"wall_s"}  # the one thing a resume changes
    _assert_same({k: v for k, v in s.state.items() if k not in wall}, {k: v for k, v in r.state.items() if k not in wall}, "state")
    saved = r.rng["aug_gen_ranks"]
    assert saved.shape[0] == 2 and not torch.equal(saved[0], saved[1])  # two ranks, two streams

    rows = [[[row["step"]] + [row[k] for k in TRAIN_KEYS] for row in read_metrics(d / "metrics.csv")]
            for d in (tmp_path / "straight", tmp_path / "resumed")]
    assert [row[0] for row in rows[0]] == [1, 2, 3, 4]
    assert rows[0] == rows[1]


def test_ranks_agree_to_stop_when_one_runs_out_of_time(facesets, tmp_path):
    """The time budget (and Ctrl-C) is one rank's clock: every rank must stop at the same step and the
    checkpoint be written there, or the collectives of the next step would hang. Only rank 0 has a
    budget: rank 1 would train on for 10**6 steps unless the ranks agree to stop."""
    a, b = facesets
    cfg = replace(tiny_config(), steps=10**6, log_every=2, save_every=10**6, val_every=0)
    ends = launch(cfg, a, b, [tmp_path / "m"] * WORLD, tmp_path / "results", [{"minutes": 1 / 60}, {}])
    (end0, end1) = ({k: e[k] for k in ("step", "stopped_by")} for e in ends)
    assert end0 == end1 == {"step": end0["step"], "stopped_by": "minutes"}, ends
    assert 0 < end0["step"] < 10**6 and end0["step"] % 2 == 0  # at a log boundary, where the ranks vote
    assert latest_snapshot(tmp_path / "m").step == end0["step"]
    assert read_metrics(tmp_path / "m" / "metrics.csv")[-1]["step"] == end0["step"]
