"""Mask quality under occlusion: the hull, the autoencoder's learned mask (optional) and the segmenter,
side by side on held-out faces with occluders pasted over them, so the true visible face is known.

    python benchmarks/mask_quality.py                   # extract d6, `mask train` 10 CPU minutes, measure
    python benchmarks/mask_quality.py --minutes 2       # a shorter training run (preliminary numbers)
    python benchmarks/mask_quality.py --model MASK_MODEL [--autoencoder MODEL_DIR]   # measure only
    python benchmarks/mask_quality.py --quick           # CPU smoke test (CI): tiny net, seconds, no claims

Faces: d6.mp4 every 4th frame at 128 px (extract's own pipeline). Frames < 720 are the training
faceset; frames >= 720 are held out, with d18.mp4 (another person) as a second held-out set. The
segmenter is trained as `deepfake mask train` trains it, pretraining only (there are no labels), on
`--threads` CPU threads.

Occluders come from a family the segmenter never saw: training draws ellipses, bars and star blobs
textured with faces of its batch, noise or flat colour (segment/augment.py); this benchmark draws with
OpenCV, from a seed of its own, hands (a palm and four fingers), random non-convex polygons and thick
curved strokes, textured with crops of the shared stills d30, d8, d9, s0 and s33 (skin, hair, paint, fur),
which no training face comes from. True visible face = the face's whole hull minus the occluder.

Per method, over every held-out face and occluder (pixels at 0.5):
    IoU         against the true visible face
    excluded    share of occluder pixels inside the hull the mask leaves out (goal >= 80 %; hull ~0)
    kept        share of the true visible face the mask keeps (goal >= 95 %)
    clean IoU   against the hull on the same faces without occluders (does it hurt unoccluded faces?)
Speed: segmenter masks/s at 128 px, batch 32, on `--threads` threads (goal >= 50 on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared harness beside this file
from harness import MEDIA  # noqa: E402

from deepfake.config import ExtractConfig  # noqa: E402
from deepfake.config_io import parse_override, replace_path  # noqa: E402
from deepfake.faces.hull import hull_mask  # noqa: E402
from deepfake.faceset import read_faceset, write_manifest  # noqa: E402
from deepfake.segment.apply import MaskPredictor  # noqa: E402
from deepfake.segment.checkpoint import load_mask_model  # noqa: E402
from deepfake.config import MaskTrainConfig, SegmenterConfig  # noqa: E402
from deepfake.segment.preview import overlay  # noqa: E402
from deepfake.segment.train import train_segmenter  # noqa: E402

STILLS = ("d30.jpg", "d8.jpg", "d9.jpg", "s0.jpg", "s33.jpg")
HELD_OUT_FRAME = 720
SEED = 2024  # the benchmark's own stream: nothing in training draws from it


# ----------------------------------------------------------------------------------------------------
# Faces.


def extract_faces(clip: str, out: Path, frames: int, every: int, size: int) -> Path:
    """A faceset of `clip`, extracted once and reused (the folder is the cache)."""
    from deepfake.extract import extract

    if not (out / "faces.jsonl").is_file():
        extract([MEDIA / clip], out, ExtractConfig(size=size, every=every, frames=frames, workers=1), progress=False)
    return out


def subset(src: Path, dst: Path, keep) -> Path:
    """A faceset of the records of `src` that `keep(record)` accepts (faces and masks copied)."""
    fs = read_faceset(src)
    if (dst / "faces.jsonl").is_file():
        return dst
    shutil.rmtree(dst, ignore_errors=True)
    (dst / "faces").mkdir(parents=True)
    (dst / "masks").mkdir()
    records = [r for r in fs.records if keep(r)]
    for r in records:
        shutil.copyfile(fs.root / r.file, dst / r.file)
        shutil.copyfile(fs.root / r.mask, dst / r.mask)
    write_manifest(dst, fs.header, records)
    return dst


def held_out(src: Path, keep, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Faces (N, S, S, 3) uint8 RGB and their whole hulls (N, S, S) bool."""
    fs = read_faceset(src)
    recs = [r for r in fs.records if keep(r)][:limit]
    faces = np.stack([cv2.cvtColor(cv2.imread(str(fs.root / r.file)), cv2.COLOR_BGR2RGB) for r in recs])
    hulls = np.stack([hull_mask(np.asarray(r.aligned_landmarks), r.size) > 127 for r in recs])
    return faces, hulls


# ----------------------------------------------------------------------------------------------------
# Occluders of the benchmark's own family.


def load_textures(size: int) -> list[np.ndarray]:
    out = []
    for name in STILLS:
        img = cv2.imread(str(MEDIA / name))
        if img is None:
            raise SystemExit(f"missing shared still: {MEDIA / name}")
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return out


def texture_crop(textures: list[np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """A rotated, rescaled crop of a random still, size x size RGB."""
    img = textures[rng.integers(len(textures))]
    h, w = img.shape[:2]
    side = int(rng.uniform(0.15, 0.6) * min(h, w))
    x0, y0 = rng.integers(0, w - side), rng.integers(0, h - side)
    crop = cv2.resize(img[y0 : y0 + side, x0 : x0 + side], (size, size), interpolation=cv2.INTER_AREA)
    rot = cv2.getRotationMatrix2D((size / 2, size / 2), float(rng.uniform(0, 360)), 1.0)
    return cv2.warpAffine(crop, rot, (size, size), borderMode=cv2.BORDER_REFLECT)


def occluder_shape(size: int, centre: np.ndarray, extent: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 (size, size) anti-aliased coverage 0..255 of a hand, a polygon or a stroke."""
    m = np.zeros((size, size), np.uint8)
    kind = rng.integers(3)
    angle = rng.uniform(0, 2 * np.pi)
    along, across = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
    pt = lambda p: tuple(int(v) for v in np.round(p * 16))  # noqa: E731 - 4 fractional bits
    if kind == 0:  # a hand: palm and four fingers pointing `along`
        palm = centre - along * extent * 0.25
        axes = (int(extent * 0.3 * 16), int(extent * 0.35 * 16))
        cv2.ellipse(m, pt(palm), axes, float(np.degrees(angle)), 0, 360, 255, -1, cv2.LINE_AA, 4)
        for f in range(4):
            base = palm + across * extent * (f - 1.5) * 0.17
            tip = base + along * extent * rng.uniform(0.45, 0.7)
            cv2.line(m, pt(base), pt(tip), 255, max(2, int(extent * 0.13)), cv2.LINE_AA, 4)
    elif kind == 1:  # a non-convex polygon: 5..9 vertices at random radii
        n = int(rng.integers(5, 10))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = extent * 0.5 * rng.uniform(0.35, 1.0, n)
        poly = centre + np.stack([np.cos(ang) * rad, np.sin(ang) * rad], 1)
        cv2.fillPoly(m, [np.round(poly * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    else:  # a thick curved stroke (a strand, a cable, a microphone arm)
        t = np.linspace(0, 1, 24)[:, None]
        p0, p2 = centre - along * extent * 0.6, centre + along * extent * 0.6
        p1 = centre + across * extent * rng.uniform(-0.5, 0.5)
        curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
        cv2.polylines(m, [np.round(curve * 16).astype(np.int32)], False, 255, max(3, int(extent * rng.uniform(0.08, 0.2))),
                      cv2.LINE_AA, 4)
    return m


def occlude(face: np.ndarray, hull: np.ndarray, textures, rng) -> tuple[np.ndarray, np.ndarray]:
    """The face with 1..3 occluders, and their union (bool) at 0.5 coverage."""
    size = face.shape[0]
    out, union = face.astype(np.float32), np.zeros((size, size), np.float32)
    ys, xs = np.nonzero(hull)
    for _ in range(int(rng.integers(1, 4))):
        k = rng.integers(len(xs))
        alpha = occluder_shape(size, np.array([xs[k], ys[k]], float), rng.uniform(0.2, 0.5) * size, rng) / 255.0
        tex = texture_crop(textures, size, rng).astype(np.float32)
        out = out * (1 - alpha[..., None]) + tex * alpha[..., None]
        union = 1 - (1 - union) * (1 - alpha)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), union >= 0.5


# ----------------------------------------------------------------------------------------------------
# Methods and scores.


def learned_masks(model_dir: str, faces: np.ndarray) -> np.ndarray:
    """The autoencoder's mask channel (decoder A, the face's own identity) at the faces' size."""
    from deepfake.model_dir import load_model_dir

    loaded = load_model_dir(model_dir)
    r = loaded.config.model.resolution
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        x = torch.nn.functional.interpolate(x, size=(r, r), mode="bilinear", antialias=True, align_corners=False)
        _, mask = loaded.autoencoder.decode(loaded.autoencoder.encode(x), "a")
        mask = torch.nn.functional.interpolate(mask, size=faces.shape[1:3], mode="bilinear", align_corners=False)
    return mask[:, 0].numpy()


def scores(pred: np.ndarray, visible: np.ndarray, occluder: np.ndarray, hull: np.ndarray) -> dict[str, float]:
    p = pred >= 0.5
    occ = occluder & hull
    inter, union = (p & visible).sum(), (p | visible).sum()
    return {"iou": float(inter / max(union, 1)), "excluded": float((~p & occ).sum() / max(occ.sum(), 1)),
            "kept": float((p & visible).sum() / max(visible.sum(), 1))}


def measure(name: str, faces, hulls, predictor, ae_dir, rng, textures, variants: int) -> dict[str, dict]:
    occluded, occluders = [], []
    for i in range(len(faces)):
        for _ in range(variants):
            img, occ = occlude(faces[i], hulls[i], textures, rng)
            occluded.append(img)
            occluders.append(occ)
    idx = np.repeat(np.arange(len(faces)), variants)
    occluded, occluders, hull_rep = np.stack(occluded), np.stack(occluders), hulls[idx]
    visible = hull_rep & ~occluders
    methods = {"hull": (hull_rep.astype(np.float32), hulls.astype(np.float32))}
    if ae_dir:
        methods["learned"] = (learned_masks(ae_dir, occluded), learned_masks(ae_dir, faces))
    seg = lambda imgs: predictor(torch.from_numpy(imgs).permute(0, 3, 1, 2))[:, 0].numpy()  # noqa: E731
    methods["segmenter"] = (seg(occluded), seg(faces))
    out = {}
    for m, (pred, clean) in methods.items():
        s = scores(pred, visible, occluders, hull_rep)
        s["clean_iou"] = scores(clean, hulls, np.zeros_like(hulls), hulls)["iou"]
        out[m] = s
    write_sheet(name, occluded[:8], {m: p[:8] for m, (p, _) in methods.items()})
    return out


SHEETS: dict[str, Path] = {}


def write_sheet(name: str, faces: np.ndarray, preds: dict[str, np.ndarray]) -> None:
    """Rows: the occluded faces, then each method's mask over them."""
    if name not in SHEETS:
        return
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255
    rows = [x] + [overlay(x, torch.from_numpy(p[:, None]).float()) for p in preds.values()]
    img = np.concatenate([np.concatenate(list((r.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)), 1) for r in rows], 0)
    cv2.imwrite(str(SHEETS[name]), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def masks_per_second(predictor: MaskPredictor, seconds: float) -> float:
    x = torch.randint(0, 256, (32, 3, 128, 128), dtype=torch.uint8)
    predictor(x)  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        predictor(x)
        n += len(x)
    return n / (time.perf_counter() - t0)


# ----------------------------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="segmenter training budget (pretraining only)")
    p.add_argument("--model", default=None, help="measure this mask model instead of training one")
    p.add_argument("--autoencoder", default=None, help="a `deepfake train` model dir with A = d6: its learned mask too")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for training and the speed test")
    p.add_argument("--work", default=None, help="folder for the facesets and the mask model (default: a temp folder)")
    p.add_argument("--faces", type=int, default=64, help="held-out faces per set")
    p.add_argument("--variants", type=int, default=3, help="occluded copies of each held-out face")
    p.add_argument("--quick", action="store_true", help="CPU smoke test: few faces, a tiny net, a few steps")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a MaskTrainConfig field of the trained segmenter, as `mask train --set`")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work) if args.work else Path(os.environ.get("TMPDIR", "/tmp")) / "deepfake_mask_quality"
    work.mkdir(parents=True, exist_ok=True)
    frames, split = (160, 120) if args.quick else (0, HELD_OUT_FRAME)
    d6 = extract_faces("d6.mp4", work / ("d6_quick" if args.quick else "d6"), frames, 4, 128)
    train_set = subset(d6, work / ("d6_quick_train" if args.quick else "d6_train"), lambda r: r.frame < split)
    sets = {"d6 held out": (d6, lambda r: r.frame >= split)}
    if not args.quick:
        sets["d18 (other person)"] = (extract_faces("d18.mp4", work / "d18", 0, 6, 128), lambda r: True)

    if args.model:
        model_dir, trained = Path(args.model), None
    else:
        model_dir = work / ("mask_quick" if args.quick else "mask_model")
        shutil.rmtree(model_dir, ignore_errors=True)
        cfg = replace(MaskTrainConfig(), pretrain_steps=10**9, save_every=10**9, preview_every=0, log_every=25)
        if args.quick:
            cfg = replace(cfg, model=SegmenterConfig(resolution=64, base_channels=4, max_channels=16, depth=3),
                          batch=8, log_every=5, steps=20)
        for item in args.set:
            key, _, value = item.partition("=")
            cfg = replace_path(cfg, key.strip(), parse_override(cfg, key.strip(), value))
        trained = train_segmenter(cfg, [train_set], model_dir, minutes=None if args.quick else args.minutes,
                                  step_limit=args.quick, progress=False)
    loaded = load_mask_model(model_dir)
    predictor = MaskPredictor(loaded, "cpu")
    textures = load_textures(128)
    rng = np.random.default_rng(SEED)
    limit, variants = (8, 1) if args.quick else (args.faces, args.variants)
    results = {"model": str(model_dir), "step": loaded.step, "train_faces": len(read_faceset(train_set)),
               "minutes": None if args.model or args.quick else args.minutes, "threads": args.threads,
               "learned": bool(args.autoencoder), "sets": {}}
    for name, (root, keep) in sets.items():
        SHEETS[name] = work / f"mask_quality_{name.split()[0]}.png"
        faces, hulls = held_out(root, keep, limit)
        results["sets"][name] = {"faces": len(faces), "occluded": len(faces) * variants,
                                 **measure(name, faces, hulls, predictor, args.autoencoder, rng, textures, variants)}
    results["masks_per_s"] = masks_per_second(predictor, 1.0 if args.quick else 5.0)
    results["resolution"] = predictor.resolution
    report(results, trained)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def report(results: dict, trained) -> None:
    if trained is not None:
        last = trained.rows[-1] if trained.rows else {}
        print(f"trained {results['model']}: {trained.step} steps on {results['train_faces']} faces, "
              f"{last.get('wall_s', 0):.0f} s, validation IoU {last.get('val_iou') or float('nan'):.3f}")
    if not results["learned"]:
        print("learned channel: not measured (pass --autoencoder MODEL_DIR trained with A = d6)")
    print(f"{'set':<20} {'method':<10} {'IoU':>6} {'excluded':>9} {'kept':>6} {'clean IoU':>10}")
    for name, s in results["sets"].items():
        for m in ("hull", "learned", "segmenter"):
            if m in s:
                r = s[m]
                print(f"{name:<20} {m:<10} {r['iou']:6.3f} {100 * r['excluded']:8.1f}% {100 * r['kept']:5.1f}% {r['clean_iou']:10.3f}")
    head = results["sets"]["d6 held out"]
    seg, hull = head["segmenter"], head["hull"]
    print(f"d6 held out ({head['occluded']} occluded faces): segmenter excludes {100 * seg['excluded']:.1f} % of "
          f"occluder pixels (goal >= 80 %), keeps {100 * seg['kept']:.1f} % of the visible face (goal >= 95 %); "
          f"the hull excludes {100 * hull['excluded']:.1f} %")
    print(f"segmenter speed: {results['masks_per_s']:.0f} masks/s, 128 px faces, a {results['resolution']} px network, "
          f"on {results['threads']} thread(s) (goal >= 50 at 128 px on 2 cores)")


if __name__ == "__main__":
    raise SystemExit(main())
