"""How well the invisible mark (provenance/watermark.py) survives, on the shared clips and stills.

    python benchmarks/watermark_robustness.py [--frames 150] [--media ../shared/media] [--out benchmarks/watermark.json]
    python benchmarks/watermark_robustness.py --table benchmarks/watermark.json   # the RESULTS.md tables

For each clip (its first --frames frames) and each still: find the faces, mark them with a payload, and
measure
- invisibility: PSNR of the marked frame against the unmarked one (whole frame, and the face's box);
- survival: re-read the mark (faces found again, from scratch) after each attack, and report the bit
  accuracy against the payload (per face, and for video after averaging over the frames) and whether
  the file is found with the right payload;
- false positives: on every frame of every clip and on every still, unmarked, how many frames and
  files the reader calls marked.
The cost inside `deepfake swap` is measured by benchmarks/watermark_cost.py.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

from deepfake.faces.analyzer import FaceAnalyzer
from deepfake.provenance import watermark as wm
from deepfake.provenance.reading import mark_analyzer, read_still

PAYLOAD = wm.payload_for("3c7a")  # stands for a model hash
CLIPS = ["d6.mp4", "d14.mp4", "d3.mp4", "d18.mp4", "s18.mp4"]
STILLS = ["d30.jpg", "d8.jpg", "d9.jpg", "s0.jpg", "s33.jpg"]


def read_frames(path: Path, limit: int | None) -> tuple[list[np.ndarray], float]:
    frames = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        fps = float(s.average_rate or 30)
        for f in c.decode(s):
            frames.append(f.to_ndarray(format="rgb24"))
            if limit and len(frames) >= limit:
                break
    return frames, fps


def x264(frames: list[np.ndarray], crf: int, fps: float = 30.0) -> list[np.ndarray]:
    """Encode with libx264 at `crf` (yuv420p, preset medium) and decode again."""
    h, w = frames[0].shape[:2]
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=round(fps))
        s.width, s.height, s.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        s.options = {"crf": str(crf), "preset": "medium"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f[: h - h % 2, : w - w % 2]), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    buf.seek(0)
    with av.open(buf) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def scale(frames, factor=0.5):
    return [cv2.resize(f, (round(f.shape[1] * factor), round(f.shape[0] * factor)), interpolation=cv2.INTER_AREA)
            for f in frames]


def jpeg(frames, quality=70):
    out = []
    for f in frames:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        out.append(cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return out


def crop(frames, border=0.10):
    out = []
    for f in frames:
        h, w = f.shape[:2]
        dy, dx = round(h * border), round(w * border)
        out.append(np.ascontiguousarray(f[dy : h - dy, dx : w - dx]))
    return out


def png(frames):
    out = []
    for f in frames:
        b = io.BytesIO()
        Image.fromarray(f).save(b, format="PNG")
        out.append(np.asarray(Image.open(io.BytesIO(b.getvalue())).convert("RGB")))
    return out


def blur(frames, sigma=4.0):
    return [cv2.GaussianBlur(f, (0, 0), sigma) for f in frames]


def reshoot(frames, video: bool):
    """A camera filming the screen, simulated (no camera was available): the picture seen at an angle (a
    perspective of up to 2 % of its size at each corner), the screen's gamma and contrast, a slightly
    defocused lens (Gaussian sigma 1.2 px), the screen's pixel grid as a faint moire, sensor noise
    (sigma 3), the camera's resolution (80 %), then the phone's encoder (x264 CRF 23; stills JPEG q85)."""
    rng = np.random.default_rng(0)
    h, w = frames[0].shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = (src + rng.uniform(-0.02, 0.02, (4, 2)) * [w, h]).astype(np.float32)
    warp = cv2.getPerspectiveTransform(src, dst)
    yy, xx = np.mgrid[0:h, 0:w]
    moire = 3.0 * np.sin(2 * np.pi * (xx * np.cos(0.3) + yy * np.sin(0.3)) / 3.1)[..., None]
    out = []
    for f in frames:
        g = cv2.warpPerspective(f, warp, (w, h), borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        g = 255 * (g / 255) ** 1.1 * 0.92 + 10
        g = cv2.GaussianBlur(g, (0, 0), 1.2) + moire + rng.normal(0, 3, g.shape)
        out.append(np.clip(g, 0, 255).astype(np.uint8))
    out = scale(out, 0.8)
    return x264(out, 23) if video else jpeg(out, 85)


ATTACKS = {
    "none": lambda fr, v: fr,
    "x264 CRF 23": lambda fr, v: x264(fr, 23) if v else None,
    "x264 CRF 30": lambda fr, v: x264(fr, 30) if v else None,
    "50 % downscale": lambda fr, v: scale(fr),
    "JPEG q70": lambda fr, v: jpeg(fr),
    "10 % border crop": lambda fr, v: crop(fr),
    "PNG screenshot": lambda fr, v: png(fr),
    "50 % + CRF 30": lambda fr, v: x264(scale(fr), 30) if v else jpeg(scale(fr)),
    "Gaussian blur sigma 4 (not a goal)": lambda fr, v: blur(fr),
    "screen re-shoot, simulated (not a goal)": reshoot,
}


def landmarks_of(analyzer: FaceAnalyzer, frames: list[np.ndarray], video: bool) -> list[list[np.ndarray]]:
    """Each frame's faces as the reader finds them: tracked and smoothed on video, box variants on stills
    (with the CNN detector when HOG finds none, as `deepfake detect` does)."""
    if video:
        smoother = analyzer.new_smoother()
        return [wm.locate(analyzer, f, smoother, k / 30.0) for k, f in enumerate(frames)]
    return [wm.locate(analyzer, f, variants=True) or wm.locate(cnn_analyzer(), f, variants=True) for f in frames]


_CNN: list = []


def cnn_analyzer() -> FaceAnalyzer:
    if not _CNN:
        _CNN.append(mark_analyzer("cnn"))
    return _CNN[0]


def read_mark(analyzer, frames, video, payload: int = PAYLOAD) -> tuple[wm.Reading, list[float]]:
    """The file's reading, and the bit accuracy of each face on its own."""
    truth = np.array([(payload >> (31 - i)) & 1 for i in range(32)])
    if not video:  # as `deepfake detect` reads a still
        reading = read_still(frames[0], analyzer)
        acc = [float(np.mean(np.array(reading.bits) == truth))] if reading.bits else []
        return reading, acc
    reader = wm.MarkReader()
    per_face = []
    for f, lms in zip(frames, landmarks_of(analyzer, frames, video)):
        reader.add_frame(f, lms)
        for lm in lms:
            if not wm.face_too_small(wm.mark_matrix(lm.reshape(-1, 68, 2)[0])):
                per_face.append(float(np.mean((wm.soft_bits(f, lm) < 0) == truth)))
    return reader.result(), per_face


def psnr(a, b) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def marked_file(analyzer, path: Path, limit: int) -> tuple[list, list, bool]:
    """(unmarked, marked) frames of a shared clip or still, marked as `deepfake swap` marks its output."""
    video = path.suffix == ".mp4"
    frames = read_frames(path, limit)[0] if video else [np.asarray(Image.open(path).convert("RGB"))]
    marked = [f.copy() for f in frames]
    if video:  # from tracked, smoothed landmarks, as swap places the mark on its video frames
        for f, lms in zip(marked, landmarks_of(analyzer, frames, video)):
            wm.embed(f, lms, PAYLOAD)
    else:
        wm.embed_still(marked[0], analyzer if wm.locate(analyzer, frames[0]) else cnn_analyzer(), PAYLOAD)
    return frames, marked, video


def swapped_clip(clip: Path, limit: int, work: Path) -> tuple[list, list, int]:
    """(unmarked, marked) output frames of a real swap: a small model trained here (the tiny preset, 300
    steps on the first 60 faces of d6 and d14, seed 0) puts A's face onto the clip, with and without the
    mark; the frames before encoding."""
    import dataclasses

    import torch

    from deepfake.config import ExtractConfig, SwapConfig
    from deepfake.extract import extract
    from deepfake.models.presets import preset_config
    from deepfake.provenance.credentials import model_identity
    from deepfake.swap.model import load_swap_model
    from deepfake.swap.pipeline import Swapper, analyzer_config
    from deepfake.train import train

    media = clip.parent
    model = work / "model"
    if not (model / "autoencoder.safetensors").is_file():
        sets = []
        for name in ("d6.mp4", "d14.mp4"):
            out = work / name.split(".")[0]
            extract([media / name], out, ExtractConfig(size=128, frames=60), progress=False)
            sets.append(out)
        cfg = dataclasses.replace(preset_config("tiny"), steps=300, val_every=0, save_every=10**6,
                                  preview_every=10**6, log_every=50, device="cpu", seed=0)
        torch.set_num_threads(2)
        train(cfg, sets[0], sets[1], model, progress=False)
    scfg = SwapConfig(all_faces=True, device="cpu")
    loaded = load_swap_model(model, scfg)
    payload = wm.payload_for(model_identity(model)["sha256"])
    frames = read_frames(clip, limit)[0]
    out = []
    for mark in (None, payload):
        face_analyzer = FaceAnalyzer(analyzer_config(loaded.face_size, loaded.coverage, mask_region=loaded.mask_region),
                                     with_embedding=False)
        swapper = Swapper(loaded.model, face_analyzer, scfg, None, face_analyzer.new_smoother(), mark=mark)
        items = ((k, k / 30.0, f.copy()) for k, f in enumerate(frames))
        out.append([r.frame for r in swapper.swap_frames_serial(items)])
    return out[0], out[1], payload


def robustness(analyzer, name: str, frames: list, marked: list, video: bool, payload: int = PAYLOAD) -> dict:
    faces = sum(1 for a, b in zip(frames, marked) if np.any(a != b))
    row = {"file": name, "frames": len(frames), "faces_marked": faces,
           "psnr_db": float(np.mean([psnr(a, b) for a, b in zip(frames, marked)])),
           "psnr_face_db": float(np.mean([psnr(a[m], b[m]) for a, b in zip(frames, marked)
                                          for m in [np.any(a != b, axis=-1)] if m.any()] or [99.0])),
           "attacks": {}}
    truth = np.array([(payload >> (31 - i)) & 1 for i in range(32)])
    for attack_name, attack in ATTACKS.items():
        attacked = attack(marked, video)
        if attacked is None:
            continue
        reading, per_face = read_mark(analyzer, attacked, video, payload)
        acc = float(np.mean(np.array(reading.bits) == truth)) if reading.bits else 0.0
        row["attacks"][attack_name] = {
            "found": reading.found, "right_payload": reading.payload == wm.payload_hex(payload), "bit_accuracy": acc,
            "face_bit_accuracy": float(np.mean(per_face)) if per_face else 0.0, "frames_marked": reading.frames_marked,
            "faces": reading.faces_checked, "confidence": reading.confidence, "note": reading.note}
        print(f"  {name:8s} {attack_name:36s} found={reading.found} acc={acc:.3f} "
              f"face_acc={row['attacks'][attack_name]['face_bit_accuracy']:.3f} "
              f"frames_marked={reading.frames_marked}/{len(attacked)}", file=sys.stderr)
    return row


def false_positives(analyzer, path: Path) -> dict:
    video = path.suffix == ".mp4"
    frames = read_frames(path, None)[0] if video else [np.asarray(Image.open(path).convert("RGB"))]
    reading, _ = read_mark(analyzer, frames, video)
    return {"file": path.name, "frames": len(frames), "faces": reading.faces_checked,
            "frames_marked": reading.frames_marked, "file_found": reading.found}


def table(result: dict) -> str:
    """The markdown tables of RESULTS.md from a result JSON."""
    rows = result["robustness"]
    attacks = [a for a in ATTACKS if any(a in r["attacks"] for r in rows)]
    cell = lambda v: "-" if v is None else (f"{v['bit_accuracy']:.3f}" + ("" if v["right_payload"] else " ✗"))  # noqa: E731
    out = ["| file | frames | PSNR dB (frame / face box) | " + " | ".join(attacks) + " |",
           "|---|---|---|" + "---|" * len(attacks)]
    for r in rows:
        if not r["faces_marked"]:
            out.append(f"| {r['file']} | {r['frames']} | no face found: nothing to mark | " + " | ".join("-" for _ in attacks) + " |")
            continue
        out.append(f"| {r['file']} | {r['frames']} | {r['psnr_db']:.1f} / {r['psnr_face_db']:.1f} | "
                   + " | ".join(cell(r["attacks"].get(a)) for a in attacks) + " |")
    fp = result["false_positives"]
    if fp:
        out += ["", "| file (unmarked) | frames | faces read | frames called marked | file called marked |", "|---|---|---|---|---|"]
        for f in fp:
            out.append(f"| {f['file']} | {f['frames']} | {f['faces']} | {f['frames_marked']} | {'yes' if f['file_found'] else 'no'} |")
        frames = sum(f["frames"] for f in fp)
        marked = sum(f["frames_marked"] for f in fp)
        out.append(f"| **all** | {frames} | {sum(f['faces'] for f in fp)} | {marked} ({marked / frames:.3%}) | "
                   f"{sum(f['file_found'] for f in fp)} of {len(fp)} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--media", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "media"))
    ap.add_argument("--frames", type=int, default=150, help="frames of each clip to mark and attack (detect reads up to 200)")
    ap.add_argument("--files", nargs="*", default=CLIPS + STILLS)
    ap.add_argument("--skip-false-positives", action="store_true")
    ap.add_argument("--swap", default="d14.mp4", help="also a real swap of this clip ('' = none), marked by swap itself")
    ap.add_argument("--swap-work", default="/tmp/watermark_bench", help="where the swap's facesets and model go")
    ap.add_argument("--out", default=str(Path(__file__).with_name("watermark.json")))
    ap.add_argument("--table", metavar="JSON", help="only print the markdown tables of an earlier result")
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return 0
    media = Path(args.media)
    analyzer = mark_analyzer("hog")
    t0 = time.perf_counter()
    rows = [robustness(analyzer, f, *marked_file(analyzer, media / f, args.frames)) for f in args.files]
    if args.swap:
        work = Path(args.swap_work)
        work.mkdir(parents=True, exist_ok=True)
        clean, marked, payload = swapped_clip(media / args.swap, args.frames, work)
        rows.append(robustness(analyzer, f"{args.swap} swapped", clean, marked, True, payload))
    fp = [] if args.skip_false_positives else [false_positives(analyzer, media / f) for f in args.files]
    result = {"payload": wm.payload_hex(PAYLOAD), "frames_per_clip": args.frames, "robustness": rows,
              "false_positives": fp, "seconds": time.perf_counter() - t0}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
