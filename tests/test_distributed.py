"""Data-parallel training on CPU: gloo, 2 processes, the real train loop.

The claim: 2 ranks at per-rank batch B train the same model as 1 process at batch 2B.
- After N steps every rank holds bit-identical autoencoder and discriminator weights.
- The logged loss matches the single-process run at the same global batch.

Why augmentation is switched off for the comparison: each rank draws its own augmentation seed
(`rank_seed`), so with augmentation on the two runs see differently warped faces and the losses differ
by design. With every strength at zero, the augmentation code still runs but is the identity per face,
so a face's input depends only on the face, not on which rank drew it: the runs are batch-equivalent.
Sampling is shared (one global draw per step, sliced by rank), so both runs see the same faces.

Every loss term is a mean of per-face values (masked MSE/L1 normalise each face by its own mask area),
so the mean of the two ranks' half-batch losses is exactly the full-batch loss, MSE and L1 included.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from deepfake import distributed
from deepfake.errors import DeepfakeError
from deepfake.config import AugmentConfig, TrainConfig, save_json, load_json
from deepfake.models import build_autoencoder, preset_config
from test_data_cache import build_faceset

STEPS = 4
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


def train_and_dump(cfg: TrainConfig, a: Path, b: Path, model_dir: Path, dump: Path) -> None:
    """Run the real train loop; save this process's final weights and logged losses to `dump`*."""
    import deepfake.train as train_mod

    built = {}

    def grab(name, fn):
        def build(*args, **kwargs):
            built[name] = fn(*args, **kwargs)
            return built[name]
        return build

    # Capture the live modules: only rank 0 writes a checkpoint, but every rank's weights are checked.
    train_mod.build_autoencoder = grab("g", train_mod.build_autoencoder)
    train_mod.build_discriminator = grab("d", train_mod.build_discriminator)
    result = train_mod.train(cfg, a, b, model_dir, progress=False)
    weights = {f"g.{k}": v.detach().contiguous() for k, v in built["g"].state_dict().items()}
    weights.update({f"d.{k}": v.detach().contiguous() for k, v in built["d"].state_dict().items()})
    save_file(weights, str(dump.with_suffix(".safetensors")))
    dump.with_suffix(".json").write_text(json.dumps([[r["step"], r["loss"], r["loss_d"]] for r in result.metrics]))


def _rank_main(rank: int, world: int, port: int, cfg_path: str, a: str, b: str, model_dir: str, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # two ranks on a 2-core machine
    cfg = load_json(TrainConfig, cfg_path)
    train_and_dump(cfg, Path(a), Path(b), Path(model_dir), Path(out) / f"rank{rank}")


@pytest.fixture(scope="module")
def runs(facesets, tmp_path_factory):
    a, b = facesets
    root = tmp_path_factory.mktemp("runs")
    cfg = tiny_config()
    cfg_path = root / "cfg.json"
    save_json(cfg, cfg_path)
    # Two ranks, gloo, spawned processes (torchrun does the same through the environment).
    mp.spawn(_rank_main, args=(2, free_port(), str(cfg_path), str(a), str(b), str(root / "ddp"), str(root)),
             nprocs=2, join=True)
    # One process, the same global batch.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train_and_dump(cfg, a, b, root / "single", root / "single")
    finally:
        torch.set_num_threads(threads)
    return root


def test_every_rank_holds_identical_weights(runs):
    w0, w1 = load_file(str(runs / "rank0.safetensors")), load_file(str(runs / "rank1.safetensors"))
    assert w0.keys() == w1.keys() and any(k.startswith("d.") for k in w0)
    for k in w0:
        assert torch.equal(w0[k], w1[k]), f"{k} differs between ranks"
    # And training moved them: they are not just the shared initialisation.
    assert (runs / "ddp" / "config.json").is_file()


def test_loss_matches_a_single_process_run_at_the_same_global_batch(runs):
    ddp = json.loads((runs / "rank0.json").read_text())
    single = json.loads((runs / "single.json").read_text())
    assert [r[0] for r in ddp] == [r[0] for r in single] == list(range(1, STEPS + 1))
    for (step, loss, loss_d), (_, loss1, loss_d1) in zip(ddp, single):
        assert loss == pytest.approx(loss1, rel=1e-4), f"step {step}: G loss {loss} vs single-process {loss1}"
        assert loss_d == pytest.approx(loss_d1, rel=1e-4), f"step {step}: D loss {loss_d} vs {loss_d1}"
    assert ddp[-1][1] != ddp[0][1]  # the loss moved: the steps really trained
    # The two models compute the same function. (Weights are compared through their outputs: Adam divides
    # by sqrt(v), so on near-zero gradients float summation-order noise becomes lr-sized weight changes.)
    worst = (_outputs(runs / "rank0.safetensors") - _outputs(runs / "single.safetensors")).abs().max().item()
    assert worst < 2e-4, f"the DDP model's outputs differ from the single-process model's by up to {worst}"


@pytest.fixture(scope="module")
def runs_step(facesets, tmp_path_factory):
    """The DDP run again with compile_scope step (eager): G is not DDP-wrapped; the step averages both
    networks' gradients itself, with functional collectives."""
    a, b = facesets
    root = tmp_path_factory.mktemp("runs_step")
    cfg_path = root / "cfg.json"
    save_json(replace(tiny_config(), compile_scope="step"), cfg_path)
    mp.spawn(_rank_main, args=(2, free_port(), str(cfg_path), str(a), str(b), str(root / "ddp"), str(root)),
             nprocs=2, join=True)
    return root


def test_the_whole_step_under_ddp_matches_a_single_process_run(runs, runs_step):
    w0, w1 = load_file(str(runs_step / "rank0.safetensors")), load_file(str(runs_step / "rank1.safetensors"))
    for k in w0:
        assert torch.equal(w0[k], w1[k]), f"{k} differs between ranks"
    ddp = json.loads((runs_step / "rank0.json").read_text())
    single = json.loads((runs / "single.json").read_text())  # the phases, one process, the same global batch
    assert [r[0] for r in ddp] == [r[0] for r in single]
    for (step, loss, loss_d), (_, loss1, loss_d1) in zip(ddp, single):
        assert loss == pytest.approx(loss1, rel=1e-4), f"step {step}: G loss {loss} vs single-process {loss1}"
        assert loss_d == pytest.approx(loss_d1, rel=1e-4), f"step {step}: D loss {loss_d} vs {loss_d1}"
    worst = (_outputs(runs_step / "rank0.safetensors") - _outputs(runs / "single.safetensors")).abs().max().item()
    assert worst < 2e-4, f"the model's outputs differ from the single-process model's by up to {worst}"


def _outputs(weights_file: Path) -> torch.Tensor:
    """The dumped autoencoder's outputs on fixed inputs: (8, 4, 64, 64), both sides, colour and mask."""
    model = build_autoencoder(tiny_config().model)
    weights = load_file(str(weights_file))
    model.load_state_dict({k[2:]: v for k, v in weights.items() if k.startswith("g.")})
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # (4, 3, 64, 64)
    with torch.no_grad():
        return torch.cat([torch.cat(model(x, side), dim=1) for side in ("a", "b")])


def test_only_rank_zero_wrote_the_checkpoint(runs):
    files = sorted(p.name for p in (runs / "ddp").iterdir())
    assert "config.json" in files and any(f.endswith(".safetensors") for f in files), files


def test_helpers_are_single_process_no_ops_without_torchrun(monkeypatch):
    for var in distributed.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    ctx = distributed.init_from_env("cpu")
    assert (ctx.rank, ctx.world_size, ctx.distributed) == (0, 1, False)
    assert distributed.rank() == 0 and distributed.world_size() == 1 and distributed.is_main()
    distributed.barrier()
    t = torch.tensor([1.0, 3.0])
    assert distributed.all_reduce_mean(t) is t
    assert distributed.shard_batch(16) == 16
    module = torch.nn.Linear(2, 2)
    assert distributed.wrap_ddp(module, "cpu") is module and distributed.unwrap(module) is module
    assert distributed.rank_seed(5) == 5


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
    from deepfake.train import read_metrics

    steps = [r["step"] for r in read_metrics(out / "metrics.csv")]
    assert steps == [1, 2, 3], steps


def _helpers_main(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    with distributed.init_from_env("cpu") as ctx:
        param = torch.nn.Parameter(torch.zeros(3))
        param.grad = torch.full((3,), float(rank + 1))  # rank 0: 1s, rank 1: 2s
        distributed.all_reduce_gradients([param])
        found = {
            "rank": distributed.rank(), "world": distributed.world_size(), "main": distributed.is_main(),
            "ctx": [ctx.rank, ctx.world_size, ctx.backend],
            "mean": distributed.all_reduce_mean(torch.tensor([float(rank), 10.0 * rank])).tolist(),
            "nan_anywhere": distributed.all_reduce_max(torch.tensor(float(rank == 1))).item(),
            "grad": param.grad.tolist(),
            # The whole step's traceable collectives: two dtypes, one flat all-reduce each; the max either way.
            "means": [t.tolist() for t in distributed.mean_over_ranks(
                [torch.full((2,), float(rank)), torch.full((1,), 4.0 * rank, dtype=torch.float64), torch.full((3,), 2.0 + rank)])],
            "max": distributed.all_reduce_max(torch.tensor(float(rank == 0))).item(),
            "seed": distributed.rank_seed(7),
            "shard": distributed.shard_batch(8),
        }
        distributed.barrier()
    Path(out, f"helpers{rank}.json").write_text(json.dumps(found))


def test_helpers_under_gloo(tmp_path):
    mp.spawn(_helpers_main, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"helpers{r}.json").read_text()) for r in range(2))
    assert r0["ctx"] == [0, 2, "gloo"] and r1["ctx"] == [1, 2, "gloo"]
    assert (r0["main"], r1["main"]) == (True, False)
    assert r0["mean"] == r1["mean"] == [0.5, 5.0]
    assert r0["nan_anywhere"] == r1["nan_anywhere"] == 1.0  # rank 1's flag reaches rank 0
    assert r0["grad"] == r1["grad"] == [1.5, 1.5, 1.5]
    assert r0["means"] == r1["means"] == [[0.5, 0.5], [2.0], [2.5, 2.5, 2.5]]
    assert r0["max"] == r1["max"] == 1.0
    assert r0["seed"] == 7 and r1["seed"] != 7  # each rank its own augmentation stream
    assert r0["shard"] == r1["shard"] == 4


def test_uneven_global_batch_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    with pytest.raises(DeepfakeError, match="batch 5 does not split evenly over 2"):
        distributed.shard_batch(5)


def _resume_main(rank: int, world: int, port: int, cfg_path: str, a: str, b: str, model_dir: str, out: str,
                 stop_at: int | None) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import deepfake.train as train_mod

    cfg = load_json(TrainConfig, cfg_path)
    built = {}
    real_build = train_mod.build_autoencoder

    def grab(*args, **kwargs):
        built["g"] = real_build(*args, **kwargs)
        return built["g"]

    train_mod.build_autoencoder = grab
    train_mod.train(cfg, Path(a), Path(b), Path(model_dir), progress=False, stop_at=stop_at)
    save_file({k: v.detach().contiguous() for k, v in built["g"].state_dict().items()},
              str(Path(out) / f"resume_rank{rank}_{stop_at}.safetensors"))


def test_a_resumed_ddp_run_is_bitwise_the_uninterrupted_one(facesets, tmp_path):
    """Augmentation on: each rank's own stream must continue where it stopped, or the warps differ."""
    a, b = facesets
    cfg = replace(tiny_config(), augment=AugmentConfig(), steps=4, save_every=2)
    cfg_path = tmp_path / "cfg.json"
    save_json(cfg, cfg_path)

    def launch(model_dir: Path, stop_at: int | None) -> None:
        mp.spawn(_resume_main, args=(2, free_port(), str(cfg_path), str(a), str(b), str(model_dir), str(tmp_path), stop_at),
                 nprocs=2, join=True)

    launch(tmp_path / "straight", None)
    straight = [load_file(str(tmp_path / f"resume_rank{r}_None.safetensors")) for r in range(2)]
    launch(tmp_path / "resumed", 2)  # stops and saves after step 2
    launch(tmp_path / "resumed", None)  # resumes at step 2, runs to 4
    resumed = [load_file(str(tmp_path / f"resume_rank{r}_None.safetensors")) for r in range(2)]
    for rank in range(2):
        for name, w in straight[rank].items():
            assert torch.equal(w, resumed[rank][name]), f"rank {rank}: {name} differs after resume"
    from deepfake.train.checkpoint import latest_snapshot

    saved = latest_snapshot(tmp_path / "resumed").rng["aug_gen_ranks"]
    assert saved.shape[0] == 2 and not torch.equal(saved[0], saved[1])  # two ranks, two streams


def _budget_main(rank: int, world: int, port: int, cfg_path: str, a: str, b: str, model_dir: str, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import deepfake.train as train_mod

    cfg = load_json(TrainConfig, cfg_path)
    # Only rank 0 has a time budget: rank 1 would train on for 10**6 steps unless the ranks agree to stop.
    result = train_mod.train(cfg, Path(a), Path(b), Path(model_dir), progress=False,
                             minutes=1 / 60 if rank == 0 else None)
    (Path(out) / f"budget_rank{rank}.json").write_text(json.dumps({"step": result.step, "interrupted": result.interrupted}))


def test_ranks_agree_to_stop_when_one_runs_out_of_time(facesets, tmp_path):
    """The time budget (and Ctrl-C) is one rank's clock: every rank must stop at the same step and the
    checkpoint be written there, or the collectives of the next step would hang."""
    a, b = facesets
    cfg = replace(tiny_config(), steps=10**6, log_every=2, save_every=10**6, val_every=0)
    cfg_path = tmp_path / "cfg.json"
    save_json(cfg, cfg_path)
    mp.spawn(_budget_main, args=(2, free_port(), str(cfg_path), str(a), str(b), str(tmp_path / "m"), str(tmp_path)),
             nprocs=2, join=True)
    ends = [json.loads((tmp_path / f"budget_rank{r}.json").read_text()) for r in range(2)]
    assert ends[0] == ends[1], ends
    assert 0 < ends[0]["step"] < 10**6 and ends[0]["step"] % 2 == 0 and not ends[0]["interrupted"]
    from deepfake.train.checkpoint import latest_snapshot

    assert latest_snapshot(tmp_path / "m").step == ends[0]["step"]


def _compiled_whole_step_main(rank: int, world: int, port: int, out: str) -> None:
    """Each rank: the whole step eager and compiled (aot_eager: Dynamo's and AOTAutograd's tracing, the
    collectives inside the graph, without inductor's minutes of CPU kernel generation), from the same
    weights, on this rank's own faces."""
    from torch._dynamo.utils import counters

    from deepfake.train.augment import no_augment
    from deepfake.models import build_discriminator
    from deepfake.train import AdversarialStep, make_optimizer
    from deepfake.whole_step import WholeStep

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    with distributed.init_from_env("cpu"):
        cfg = replace(tiny_config(), compile_scope="step", grad_clip=1.0)
        gen = torch.Generator().manual_seed(100 + rank)  # each rank its own faces: averaging matters
        images = (torch.rand(4, 3, 64, 64, generator=gen) * 255).to(torch.uint8)
        masks = torch.full((4, 1, 64, 64), 255, dtype=torch.uint8)
        landmarks = torch.rand(4, 68, 2, generator=gen) * 40 + 12
        a, b = [no_augment(images[:2], masks[:2], landmarks[:2])], [no_augment(images[2:], masks[2:], landmarks[2:])]

        def build(backend):
            torch.manual_seed(rank)  # different on purpose: the step broadcasts rank 0's weights, as DDP does
            g, d = build_autoencoder(cfg.model), build_discriminator(cfg.discriminator, 64)
            opt_g, opt_d = make_optimizer(cfg, g.parameters(), cfg.lr, cpu), make_optimizer(cfg, d.parameters(), cfg.d_lr, cpu)
            phases = AdversarialStep(cfg, g, d, opt_g, opt_d, cpu, None, ddp=False)
            return WholeStep(phases, None if backend is None else "default", **({} if backend is None else {"backend": backend}))

        eager, compiled = build(None), build("aot_eager")
        torch._dynamo.reset()
        counters.clear()
        logs = []
        for step in range(2):
            e = torch.cat([t.view(-1) for t in eager.step(a, b, step)])
            c = torch.cat([t.view(-1) for t in compiled.step(a, b, step)])
            logs.append([e.tolist(), c.tolist()])
        weights = {f"{i}": p.detach().clone() for i, p in enumerate(compiled.phases.autoencoder.parameters())}
        save_file(weights, str(Path(out) / f"compiled{rank}.safetensors"))
        Path(out, f"compiled{rank}.json").write_text(json.dumps({
            "logs": logs, "graphs": counters["stats"]["unique_graphs"], "breaks": dict(counters["graph_break"])}))
        distributed.barrier()


def test_the_compiled_whole_step_under_ddp_is_one_graph_with_the_collectives_inside(tmp_path):
    mp.spawn(_compiled_whole_step_main, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"compiled{r}.json").read_text()) for r in range(2))
    for r in (r0, r1):
        assert r["graphs"] == 1 and r["breaks"] == {}, r
        # Step 1's losses come from the weights step 0 updated: the compiled update is the eager one.
        for step, (e, c) in enumerate(r["logs"]):
            assert c == pytest.approx(e, rel=1e-4, abs=1e-5), f"step {step}"
    assert r0["logs"][0][0] != r1["logs"][0][0]  # the ranks saw different faces...
    w0, w1 = load_file(str(tmp_path / "compiled0.safetensors")), load_file(str(tmp_path / "compiled1.safetensors"))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)  # ...and hold the same weights: gradients were averaged
