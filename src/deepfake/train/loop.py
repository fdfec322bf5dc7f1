"""The training loop: the autoencoder (generator) and the discriminator, trained adversarially.

One function, `train`, in sections: device, resume, data, build, restore, then the loop (data, G and D
phases, stop checks, logging, previews and checkpoints). The step itself is train/step.py; what it
runs is built by train/build.py.

Losses are summed into a device tensor and read once per log window (metrics.py).

    from deepfake.models import preset_config
    result = train(preset_config("tiny"), "faceset_a", "faceset_b", "model_dir")
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from deepfake.config import TrainConfig

from deepfake.devices import resolve_device
from deepfake.errors import DeepfakeError
from deepfake.model_dir import BEST, TIMELINE, read_config, write_config
from deepfake.train import checks
from deepfake.train import distributed as dist
from deepfake.train.augment import augment_kernel
from deepfake.train.batches import Side, draw_step, load_side, mine_step, validate
from deepfake.train.build import Built, build
from deepfake.run_folder import RunBar, stop_signals
from deepfake.train.checkpoint import Snapshot
from deepfake.train.checkpoint_writer import SnapshotWriter
from deepfake.train.data_stream import DataStream
from deepfake.train import resume as resuming
from deepfake.train import reuse
from deepfake.train.pretrain import load_pool, pool_train_counts
from deepfake.train.metrics import TRAIN_KEYS, LogWindow, MetricsLog, OverfitWatch, read_metrics
from deepfake.train.previews import write_preview
from deepfake.train.step_timer import StepTimer

log = logging.getLogger(__name__)

# What a TrainResult's `stopped_by` can say.
STOP_REASONS = ("steps", "minutes", "stop_at", "SIGINT", "SIGTERM")


@dataclass
class TrainResult:
    model_dir: Path
    step: int  # the last step trained (and saved)
    stopped_by: str  # which limit ended the run: one of STOP_REASONS
    metrics: list[dict[str, Any]]  # the rows of metrics.csv
    skipped_steps: int  # steps dropped for a non-finite loss
    overfit_warnings: list[int] = field(default_factory=list)  # steps at which over-fitting was reported
    compile_s: float | None = None  # extra time the first step took with --compile
    gpu_busy: float | None = None  # mean share of wall time in the G and D phases, over the logged windows
    main: bool = True  # False on the DDP ranks other than 0 (they write nothing and report nothing)

    @property
    def interrupted(self) -> bool:
        """Stopped by a signal (after saving)."""
        return self.stopped_by in ("SIGINT", "SIGTERM")


@dataclass
class Generators:
    """The run's random streams, all saved in checkpoints so a resumed run draws what an uninterrupted
    one would."""

    sample: torch.Generator  # which faces each batch holds: the same on every rank (one global draw, sliced)
    aug: torch.Generator  # the augmentation's draws: distinct per rank


def lr_at(step: int, base: float, warmup: int) -> float:
    return base * min(1.0, (step + 1) / warmup) if warmup > 0 else base


def train(
    cfg: TrainConfig,  # the resolved config; checks.finish fills in what the facesets decide
    faceset_a,  # faceset folder of identity A (path or str)
    faceset_b,  # faceset folder of identity B
    out_dir,  # MODEL_DIR; an existing one is resumed exactly where it stopped
    *,
    resume: bool = True,  # False: refuse to train into a folder that already holds a model
    progress: bool = True,  # tqdm bar (rank 0 only)
    minutes: float | None = None,  # wall-clock budget: stop (and save) at the first log boundary past it
    step_limit: bool = True,  # False: only `minutes` limits the run, cfg.steps does not
    stop_at: int | None = None,  # stop (and save) after this step even if cfg.steps is larger
    pool: list[str] | None = None,  # pretraining: both sides draw from these facesets (faceset_a/_b unused; pretrain.py)
    start_from=None,  # a model folder whose weights a new run starts from (reuse.py); refused on a folder with a run
    reset: str = "inter",  # with start_from: what is re-initialised: inter | decoders | none
) -> TrainResult:
    """Train and return a summary. Saves every save_every steps, at the end, and on SIGINT or SIGTERM."""
    inputs = checks.finish(cfg, faceset_a, faceset_b, pool)  # the library's boundary: sweep and the demo enter here
    if not step_limit and not minutes:
        raise DeepfakeError("a run without a step limit needs a time budget (--minutes)")
    model_dir = Path(out_dir)
    ctx = dist.init_from_env(cfg.device) if dist.env_world_size() > 1 and not torch.distributed.is_initialized() else None
    try:
        device = ctx.device if ctx is not None and ctx.distributed else resolve_device(cfg.device)
        result = _train(inputs, model_dir, device, resume, progress, minutes, step_limit, stop_at, start_from, reset)
        # Rank 0 may still be writing the last checkpoint: every rank waits for it before the group
        # is torn down (DistContext.close).
        dist.barrier()
        return result
    finally:
        if ctx is not None:
            ctx.close()


def _train(inputs: checks.RunInputs, model_dir: Path, device: torch.device, resume: bool, progress: bool,
           minutes: float | None, step_limit: bool, stop_at: int | None, start_from, reset: str) -> TrainResult:
    cfg = inputs.cfg
    main = dist.is_main()
    per_rank_batch = dist.shard_batch(cfg.batch)

    # Section: resume. The folder's own snapshot wins over fresh initialisation; a folder with weights
    # but no readable snapshot is refused (resume.newest_snapshot), never trained over from scratch.
    snap: Snapshot | None = None
    changes: list[str] = []
    if resuming.holds_run(model_dir):
        if not resume:
            raise DeepfakeError(f"{model_dir}: already holds a model (resume it, or pick a new folder)")
        if start_from is not None:
            raise DeepfakeError(f"{model_dir}: already holds a run; resume it without --from, or start into a new folder")
        saved = read_config(model_dir)
        changes = resuming.check_resumable(saved, cfg, model_dir, inputs.pooled)
        cfg = replace(cfg, start=saved.start)  # where the weights began stays recorded, whatever the flags
        snap, snap_folder = resuming.newest_snapshot(model_dir)
        counts = (pool_train_counts if inputs.pooled else resuming.pair_train_counts)(cfg, inputs.facesets)
        resuming.check_faces(snap, counts, model_dir, inputs.pooled)
    start = reuse.read_start(start_from, cfg, reset) if start_from is not None else None

    # Section: data, decoded once, split per identity, on the device.
    gens = Generators(sample=torch.Generator().manual_seed(cfg.seed),
                      aug=torch.Generator().manual_seed(dist.rank_seed(cfg.seed + 1)))
    if inputs.pooled:
        side_a, side_b = load_pool(inputs, device, gens.sample, progress)
        identities = {}  # a pool is many people: no identity per side
    else:
        (fs_a, fs_b), (masks_a, masks_b) = inputs.facesets, inputs.masks
        _, side_a = load_side(fs_a, cfg, device, "a", gens.sample, progress, masks_a)
        _, side_b = load_side(fs_b, cfg, device, "b", gens.sample, progress, masks_b)
        identities = {k: fs.mean_embedding() for k, fs in (("a", fs_a), ("b", fs_b)) if len(fs) and fs.records[0].embedding}

    # Section: networks, optimizers and the step.
    torch.manual_seed(cfg.seed)  # model initialisation
    built = build(cfg, device, identities=identities if cfg.loss.identity_weight > 0 else None)
    if snap is None and start is None and cfg.start.source:
        # The run recorded its start but stopped before its first save: start from the same weights again.
        start = reuse.read_start(cfg.start.source, cfg, cfg.start.reset)
        reuse.check_source_unchanged(start, cfg.start)
    if snap is None and start is not None:
        reinit = reuse.apply_start(start, dist.unwrap(built.autoencoder), built.discriminator, built.opt_g,
                                   built.opt_d)
        cfg = built.cfg = replace(cfg, start=start.record)
        log.info("starting from %s (step %d); re-initialised: %s", start.record.source, start.record.source_step,
                 ", ".join(reinit) or "nothing")

    # Section: restore.
    start, rows, wall_before, sums, count, watch = 0, [], 0.0, None, 0, OverfitWatch(cfg.overfit_patience)
    best_val = float("inf")  # the lowest validation loss so far, whose weights are in MODEL_DIR/best
    if snap is not None:
        resuming.restore(snap, snap_folder, built, gens, side_a, side_b, model_dir)
        sums, count = snap.rng.get("sums"), int(snap.state.get("sums_count", 0))
        start, wall_before = snap.step, float(snap.state.get("wall_s", 0.0))
        watch = OverfitWatch(cfg.overfit_patience, snap.state.get("overfit_history"), snap.state.get("overfit_warned"))
        best_val = float(snap.state.get("best_val") or float("inf"))
        rows = [r for r in read_metrics(model_dir / "metrics.csv") if r["step"] <= start]
        log.info("resuming %s at step %d%s", model_dir, start, f"; changed: {', '.join(changes)}" if changes else "")
    if main:
        write_config(model_dir, cfg, identities or None)
    aug_kernel = augment_kernel(cfg.compile)
    sums = torch.zeros(len(TRAIN_KEYS), device=device) if sums is None else sums.to(device)
    end = cfg.steps if step_limit else None
    if stop_at is not None:
        end = stop_at if end is None else min(end, stop_at)

    # Section: the loop.
    faces_per_step = 2 * per_rank_batch * cfg.grad_accum * dist.world_size()
    bar = RunBar(start, end, minutes, progress and main)
    timer = StepTimer(device)
    metrics = MetricsLog(model_dir, rows, watch, timer, bar, main=main, gan=built.discriminator is not None,
                         cuda=device.type == "cuda", tensorboard=cfg.tensorboard)
    t_start = t_log = time.perf_counter()
    deadline = t_start + 60.0 * minutes if minutes else None
    step, steps_since_log, compile_s, stopped_by = start, 0, None, None
    data_stream = DataStream(device)  # after loading and resuming: the side stream waits for that once
    skipped_total = torch.zeros((), device=device)  # read once, at the end
    # Checkpoints are written on a thread of their own; leaving the block waits for the last one.
    saver = SnapshotWriter(model_dir, keep=cfg.keep_backups)
    with stop_signals() as signals, saver:
        while stopped_by is None and (end is None or step < end):
            t_step = time.perf_counter()
            lr = lr_at(step, cfg.lr, cfg.warmup_steps)
            for group in built.opt_g.param_groups:
                group["lr"] = lr

            # Section: data (augmented on the device), then the G phase and the D phase.
            timer.data_start()
            batches_a, batches_b = draw_step(side_a, side_b, per_rank_batch, cfg, gens.aug, step, aug_kernel, data_stream)
            timer.compute_start()
            g_logs, g_skip, d_logs, d_skip = built.step.step(batches_a, batches_b, step)
            timer.compute_end()
            skipped = (g_skip + d_skip).clamp(max=1)
            sums += torch.cat([g_logs, d_logs, skipped.view(1)])  # (len(TRAIN_KEYS),)
            skipped_total += skipped
            if cfg.data.mining_every > 0 and (step + 1) % cfg.data.mining_every == 0:
                # Hard-sample mining: one more update on the faces the model does worst on now. It is
                # not a step of its own, nor in the logged sums: the rows stay comparable with a run without.
                hard_a, hard_b = mine_step(side_a, side_b, per_rank_batch, cfg, built.autoencoder, gens.aug, step,
                                           built.step.autocast)
                _, g_skip, _, d_skip = built.step.step(hard_a, hard_b, step)
                skipped_total += (g_skip + d_skip).clamp(max=1)
            step, count, steps_since_log = step + 1, count + 1, steps_since_log + 1
            bar.advance(step)
            if cfg.compile and compile_s is None and step == start + 1:
                compile_s = time.perf_counter() - t_step  # the first step pays for compilation
                log.info("torch.compile (mode %s): first step took %.1f s", built.step.compile_mode, compile_s)

            # Section: signals and the time budget. The clock is read at log boundaries only. Under DDP
            # every rank must stop at the same step, so the ranks vote at log boundaries (one tiny
            # all-reduce) and all stop together.
            on_cycle = step % cfg.log_every == 0
            out_of_time = deadline is not None and on_cycle and time.perf_counter() >= deadline
            if dist.world_size() == 1:
                stopping = signals["stop"] is not None or out_of_time
            elif on_cycle:
                want = torch.tensor(float(signals["stop"] is not None or out_of_time), device=device)
                stopping = dist.all_reduce_mean(want).item() > 0
            else:
                stopping = False
            last = stopping or step == end

            # Section: logging.
            val_due = cfg.val_every > 0 and step % cfg.val_every == 0
            if on_cycle or val_due or last:
                now = time.perf_counter()
                window = LogWindow(
                    step=step, on_cycle=on_cycle, lr=lr, count=count,
                    sums=dist.all_reduce_mean(sums) / max(1, count),
                    faces_per_s=faces_per_step * steps_since_log / max(now - t_log, 1e-9),
                    wall_s=wall_before + now - t_start, window_s=now - t_log,
                    # Off-cycle rows (validation, the last step, a stop) only peek at the window, so a
                    # resumed run's rows come out identical to an uninterrupted one's.
                    marks=timer.take(reset=on_cycle),
                    peak_mem_gib=torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
                    val=torch.stack([
                        validate(built.autoencoder, side_a, "a", cfg.loss, per_rank_batch, built.step.autocast),
                        validate(built.autoencoder, side_b, "b", cfg.loss, per_rank_batch, built.step.autocast),
                    ]) if val_due else None,
                )
                row = metrics.write(window)
                if main and row["val_loss"] is not None and row["val_loss"] < best_val:
                    best_val = row["val_loss"]
                    saver.submit_weights(BEST, _weights(built), {"step": str(step), "val_loss": f"{best_val:.6g}"})
                if on_cycle:
                    sums.zero_()
                    count, steps_since_log, t_log = 0, 0, time.perf_counter()

            # Section: checkpoints, then previews (a preview that fails leaves the checkpoint queued).
            if main and cfg.keep_every > 0 and step % cfg.keep_every == 0:
                saver.submit_weights(f"{TIMELINE}/step_{step:06d}", _weights(built), {"step": str(step)})
            if step % cfg.save_every == 0 or last:
                metrics.save()
                state = {"wall_s": wall_before + time.perf_counter() - t_start, "sums_count": count,
                         "overfit_history": watch.history, "overfit_warned": watch.warned,
                         "best_val": best_val if math.isfinite(best_val) else None}
                _save(saver, step, built, gens, side_a, side_b, sums, state)
            if main and cfg.preview_every > 0 and (step % cfg.preview_every == 0 or last):
                write_preview(model_dir / "previews" / f"step_{step:06d}.png", built.autoencoder, side_a.preview, side_b.preview)
            if stopping:  # under DDP a rank may stop on another rank's signal: that reads as the budget
                stopped_by = signals["stop"] or "minutes"
        if stopped_by is None:  # the loop reached `end`
            by_steps = step_limit and cfg.steps <= (stop_at if stop_at is not None else cfg.steps)
            stopped_by = "steps" if by_steps else "stop_at"
        if step == start and snap is None:
            # Nothing to train (steps already reached): still leave a loadable folder (every rank: a collective).
            _save(saver, step, built, gens, side_a, side_b, sums, {"wall_s": 0.0, "sums_count": 0})
    bar.close()
    metrics.close()
    if stopped_by in ("SIGINT", "SIGTERM") and main:
        log.warning("%s: saved %s at step %d", stopped_by, model_dir, step)
    return TrainResult(model_dir, step, stopped_by, metrics.rows, int(skipped_total), metrics.warnings, compile_s,
                       metrics.steady_busy(), main)


# ----------------------------------------------------------------------------------------------------
# Saving and restoring.


def _save(saver: SnapshotWriter, step: int, built: Built, gens: Generators, side_a: Side, side_b: Side,
          sums: torch.Tensor, state: dict[str, Any]) -> None:
    """Queue a snapshot of the run as of `step` on the writer's thread (rank 0; every rank takes part in
    gathering the augmentation streams)."""
    aug_states = dist.all_gather_rows(gens.aug.get_state())
    if not dist.is_main():
        return
    code_d = built.likeness.code_d if built.likeness is not None else None
    # `sums` stays on the device: the saver stages it with the weights, without a host sync.
    rng = {"sample_gen": gens.sample.get_state(), "aug_gen": gens.aug.get_state(), "aug_gen_ranks": aug_states,
           "sampler_a": side_a.sampler.state(), "sampler_b": side_b.sampler.state(), "sums": sums.detach()}
    saver.submit(Snapshot(
        step=step,
        autoencoder=dist.unwrap(built.autoencoder).state_dict(),
        discriminator=built.discriminator.state_dict() if built.discriminator is not None else None,
        optimizer_g=built.opt_g.state_dict(),
        optimizer_d=built.opt_d.state_dict() if built.opt_d is not None else None,
        rng=rng, state={**state, "world_size": dist.world_size()},
        code_discriminator=code_d.state_dict() if code_d is not None else None,
        optimizer_code=built.likeness.opt_code.state_dict() if code_d is not None else None,
    ))  # copied to host memory now, written on the saver's thread while training goes on


def _weights(built: Built) -> dict[str, dict[str, torch.Tensor]]:
    """The weights swap, evaluate and detect load: the autoencoder's, and D's when there is one."""
    out = {"autoencoder": dist.unwrap(built.autoencoder).state_dict()}
    if built.discriminator is not None:
        out["discriminator"] = built.discriminator.state_dict()
    return out
