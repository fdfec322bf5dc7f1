"""report.md: the measured metrics as tables, their precise definitions, the plots, and the comparison
with the DeepFaceLab paper's published numbers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from deepfake.evaluate import metrics as M
from deepfake.io.atomic import atomic_write_text

# DeepFaceLab paper (arXiv 2005.05535), FaceForensics++, as listed by Papers-with-Code. How each was
# measured is not verified, so the comparison is of kind, not a like-for-like benchmark.
DFL_PAPER = [
    # method, SSIM, perceptual, verification, landmarks, pose
    ("DeepFakes", 0.71, 0.41, 0.69, 1.15, 4.75),
    ("Nirkin et al.", 0.65, 0.50, 0.66, 0.35, 6.01),
    ("DeepFaceLab", 0.73, 0.39, 0.61, 0.73, 1.12),
]

# "{verify_threshold}" is filled in per run (definitions()).
DEFINITIONS = f"""\
## Metric definitions

All faces are the model's **held-out validation faces** (the split `deepfake train` made with the
model's seed and `val_fraction`; the model never trained on them), aligned as in the facesets and
resized to the model's resolution. Direction `a2b` puts A's face onto B: the input is a held-out B
face (the *target*: its expression and pose must survive), the output should look like A (the
*source* identity). `b2a` is the reverse.

- **SSIM** (reconstruction): structural similarity between a held-out face and its reconstruction by
  its own decoder (A->A, B->B). Gaussian-weighted local statistics (11x11 window, sigma 1.5), dynamic
  range 1, K1 = {M.SSIM_K1}, K2 = {M.SSIM_K2}, computed per RGB channel and averaged; the per-pixel SSIM
  map is averaged **inside the face-hull mask** of the faceset (weighted by the mask). 1 = identical.
- **PSNR** (reconstruction): 10 log10(1 / MSE), MSE over RGB values in [0, 1], mask-weighted inside the
  face-hull mask. Capped at {M.PSNR_CAP_DB:g} dB.
- **Sharpness ratio**: detail, which SSIM does not reward (a blurred face keeps a good SSIM). For one
  face, var_lap(image, mask) is the variance of the 3x3 Laplacian [[0, 1, 0], [1, -4, 1], [0, 1, 0]]
  (reflected border) of the grey image (BT.601 luma 0.299 R + 0.587 G + 0.114 B, RGB in [0, 1]),
  weighted by the target's face-hull mask. Swap: var_lap(swap, mask) / var_lap(real target, mask);
  reconstruction: var_lap(reconstruction, mask) / var_lap(held-out face, mask); each the **mean of the
  per-face ratios** over the held-out faces (a face with no detail at all is left out). 1 = as sharp as
  the real face, below 1 = blurrier, above 1 = more high-frequency content than the real face (noise,
  ringing, over-sharpening).
- **Identity distance**: the Euclidean distance between the 128-D dlib ResNet embedding of the swapped
  face (dlib's own chip and network, run in torch) and an identity's **mean embedding** (the mean over
  that identity's *training* faces, as recorded by `extract`). `to source` should be small, `to
  target` large. dlib's own same-person threshold is {M.VERIFY_THRESHOLD}. Swaps are upscaled to 256 px
  before embedding.
- **Verification** (a threshold verifier): a swap is verified when the Euclidean distance from its
  embedding to the source identity's mean embedding is < {{verify_threshold}}; the rate is the share of
  swaps verified. **Closer to source**: the share whose distance to the source mean is below that to
  the target mean.
- **Retrieval** (top-1 identity retrieval, the FaceShifter / SimSwap protocol): the gallery is the mean
  embedding of every identity in the evaluation: side A, side B and each `--distractors` faceset (its
  mean over all its faces). A swap is retrieved when the identity with the highest **cosine
  similarity** to its embedding (argmax over the identity means) is its source; a tie at the top counts
  as a miss. The rate is the share of swaps retrieved, per direction; overall, over the swaps of both
  directions pooled. With only A and B in the gallery it asks "nearer A or B?"; each distractor makes
  it harder. Distractors must be other people: a swap retrieved as a distractor of the same person
  counts as a miss.
- **Reference rows** (`real target ...`): the same measurements on the *unswapped* held-out target
  faces at the same resolution: what a real face scores through this pipeline (verified and retrieved
  as its *own* identity, the target). A swap cannot be expected to do better than a real face of the
  source does.
- **Landmark error** (expression): dlib's 68 landmarks are predicted on the target face and on its
  swap (both upscaled to 256 px, both started from the same face box); the mean point-to-point
  distance divided by the target's **inter-ocular distance** (outer eye corners, points 36 and 45).
  0 = the same expression and shape.
- **Pose error**: yaw, pitch and roll of the target and of its swap, from `solvePnP` of their
  landmarks on a generic 3D face; the absolute differences in degrees (wrapped to [0, 180]), and
  their mean.
- **Temporal flicker** (with `--frames`): on consecutive frames of a video, the mean absolute change
  (RGB in [0, 1]) of the swapped aligned face between frames, inside both frames' face masks, divided
  by the same change of the original aligned faces. 1 = the swap changes as much as the real video;
  above 1 = it flickers more.
- **Discriminator**: the model's own patch discriminator scores each face by the sigmoid of its
  **mean patch logit** = P(real). Real = the held-out faces of both sides; fake = the swaps of both
  directions. **Accuracy** at P(real) >= threshold; **ROC-AUC** = the probability that a random real
  face scores above a random swap (Mann-Whitney U, ties count half).
- **Cost**: steps, wall time and training throughput (faces/s, both identities) from the run's
  `metrics.csv`; trainable parameters of the autoencoder and the discriminator.
"""


def definitions(verify_threshold: float) -> str:
    """The metric definitions, with the verification threshold the run used."""
    return DEFINITIONS.replace("{verify_threshold}", f"{verify_threshold:g}")


DETECTOR_CAVEAT = """\
**How far the detector can be trusted.** These accuracy and AUC numbers are measured on swaps from
*the same model* the discriminator was trained against, on held-out faces of the same two people.
A discriminator trained against one generator learns that generator's artefacts (its blur, its colour
casts, its checkerboard); it generalises poorly to faces from other models, other resolutions,
other compression and other people, where it can fall to chance (AUC 0.5) or below. In
`tests/test_detect.py`, a discriminator trained against blurred faces separates held-out blurred
faces from real ones (AUC > 0.9) but ranks noise-corrupted faces as *more* real than real ones (AUC
below 0.6): it learned "blurry means fake", not "synthetic means fake". It is a tool for
measuring this model, not a general deepfake detector. The provenance tag that `deepfake swap`
writes (read by `deepfake detect`) is the reliable label for our own outputs.
"""


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return f"{int(x):,}"
    if isinstance(x, (float, np.floating)):
        return f"{x:.{digits}f}"
    return str(x)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_f(c) if not isinstance(c, str) else c for c in r) + " |" for r in rows]
    return out


def report_markdown(result: dict[str, Any], overfit_step: int | None, plots: bool, patience: int = 3) -> str:
    from deepfake.train.metrics import OVERFIT_MARGIN

    rec, sw, cost = result["reconstruction"], result["swap"], result["cost"]
    lines = [
        "# Evaluation report",
        "",
        f"Model `{result['model_dir']}` (preset `{result['preset']}`, {result['resolution']} px) at step "
        f"{_f(result['step'])}. Held-out faces: A {result['held_out']['a']}, B {result['held_out']['b']}.",
        "",
        "## Reconstruction (held-out faces, inside the face mask)",
        "",
    ]
    lines += _table(["side", "faces", "SSIM", "PSNR (dB)", "sharpness ratio"],
                    [[s.upper(), r["n"], r["ssim"], r["psnr"], r["sharpness_ratio"]] for s, r in rec.items()])
    lines += ["", "## Swaps: identity, sharpness, expression, pose", ""]
    rows = []
    for name, d in sw.items():
        rows.append([
            f"{name} ({d['target'].upper()} as {d['source'].upper()})", d["n"], d["id_dist_source"], d["id_dist_target"],
            d["verification"], d["retrieval"], d["closer_to_source"], d["sharpness_ratio"], d["landmark_error"],
            d["pose_error"]["yaw"], d["pose_error"]["pitch"], d["pose_error"]["roll"], d["pose_error"]["mean"],
        ])
    lines += _table(
        ["direction", "faces", "id dist to source", "id dist to target", "verification", "retrieval", "closer to source",
         "sharpness ratio", "landmark error", "yaw err (deg)", "pitch err", "roll err", "mean pose err"], rows)
    ids = result["identities"]
    summary = result["summary"]
    lines += ["", f"Overall retrieval (both directions pooled): {_f(summary['retrieval'])}, over a gallery "
              f"of {len(ids)} identities ({', '.join(f'`{n}`' for n in ids)}). Nearest identity of each swap:", ""]
    lines += _table(["direction"] + list(next(iter(sw.values()))["retrieved_as"]),
                    [[n] + list(d["retrieved_as"].values()) for n, d in sw.items()])
    lines += ["", "Reference, the unswapped target faces through the same pipeline:", ""]
    lines += _table(
        ["direction", "real target to its own mean", "real target to source mean", "real target verified as itself",
         "real target retrieved as itself"],
        [[n, d["reference"]["real_target_to_target"], d["reference"]["real_target_to_source"],
          d["reference"]["real_target_verified_as_target"], d["reference"]["real_target_retrieved_as_target"]]
         for n, d in sw.items()])

    t = result.get("temporal")
    lines += ["", "## Temporal flicker", ""]
    if t:
        lines += _table(["video", "direction", "frames", "original change", "swapped change", "flicker ratio"],
                        [[f"`{t['video']}`", t["direction"], t["frames"], t["original_change"], t["swapped_change"],
                          t["flicker_ratio"]]])
    else:
        lines += ["Not measured (run with `--frames VIDEO`)."]

    d = result.get("discriminator")
    lines += ["", "## The discriminator as a detector", ""]
    if d:
        lines += _table(["real faces", "swaps", "accuracy", "ROC-AUC", "mean P(real) on real", "mean P(real) on swaps"],
                        [[d["n_real"], d["n_fake"], d["accuracy"], d["auc"], d["mean_p_real_on_real"],
                          d["mean_p_real_on_swaps"]]])
        if d.get("trained_by") == "deepfake discriminator":
            lines += ["", "This discriminator was trained alone by `deepfake discriminator`. Its held-out faces "
                      "contain the model's validation faces used here, so it never trained on them; its "
                      "own held-out numbers are in the model's `discriminator_report.json`."]
        lines += ["", DETECTOR_CAVEAT]
    else:
        lines += ["This model directory has no discriminator (it was trained with `gan_weight` 0). Run "
                  "`deepfake discriminator` on it to train one, then evaluate again."]

    lines += ["", "## Cost", ""]
    lines += _table(["steps", "training wall time (s)", "faces/s", "device busy", "peak memory (GiB)",
                     "autoencoder params", "discriminator params"],
                    [[cost["steps"], cost["wall_seconds"], cost["faces_per_s"], cost.get("gpu_busy"),
                      cost.get("peak_mem_gib"), cost["params_autoencoder"], cost["params_discriminator"]]])
    lines += ["", "Device busy: the median share of wall time the training device spent in the G and D phases "
              "(the rest went to data, logging and saving). Peak memory: CUDA's peak while training; "
              "empty on a CPU."]

    s = result["summary"]
    lines += [
        "",
        "## Against the DeepFaceLab paper",
        "",
        "The paper's numbers (arXiv 2005.05535, on FaceForensics++, as listed by Papers-with-Code; how each "
        "was measured there is not verified) next to ours. Ours: SSIM = mean reconstruction SSIM of both "
        "sides; verification = mean verification rate of both directions; landmarks = mean normalised "
        "landmark error; pose = mean of the yaw/pitch/roll errors in degrees. The paper's landmark unit is "
        "unknown (ours is a fraction of the inter-ocular distance), its data are other people and videos, "
        "and we have no perceptual metric (LPIPS is not available), so read this as a comparison of kind.",
        "",
    ]
    paper_rows = [[m, ssim, perc, ver, lm, pose] for m, ssim, perc, ver, lm, pose in DFL_PAPER]
    paper_rows.append([f"**this model** ({result['preset']}, step {_f(result['step'])})", s["ssim"], "n/a",
                       s["verification"], s["landmark_error"], s["pose_error"]])
    lines += _table(["method", "SSIM", "perceptual", "verification", "landmarks", "pose"], paper_rows)

    if plots:
        lines += ["", "## Plots", "", "![loss curves](loss_curves.png)", ""]
        lines.append(
            f"The over-fitting point (marked) is step {overfit_step}: the validation loss is lowest there and "
            f"stays above it afterwards, the last {patience} validations by over {OVERFIT_MARGIN:.0%}, while the "
            "training loss falls." if overfit_step is not None else
            "No over-fitting point: the validation loss did not rise clearly above its minimum in this run."
        )
        lines += ["", "![metric bars](metric_bars.png)", "", "Held-out faces, reconstructions and swaps:", "",
                  "![swaps](swap_grid.png)"]
        if result.get("throughput_plot"):
            lines += ["", "Training throughput and how busy the device was, per log window:", "",
                      "![throughput](throughput.png)"]
    lines += ["", definitions(result.get("verify_threshold", M.VERIFY_THRESHOLD))]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, result: dict[str, Any], training: dict[str, Any],
                 grid_rows: Sequence[tuple[str, Sequence[np.ndarray]]], patience: int, plots: bool = True) -> Path:
    """report.md (and the plots); `patience` is the model's overfit_patience, so the over-fitting point
    marked here is the one training warned about."""
    from deepfake.evaluate.plots import overfit_step

    curves = {"train": training["train"], "val": training["val"]}
    overfit = overfit_step(curves, patience)
    if plots:
        from deepfake.evaluate.plots import plot_loss_curves, plot_metric_bars, plot_throughput, save_swap_grid

        plot_loss_curves(curves, out_dir / "loss_curves.png", patience)
        rec, sw = result["reconstruction"], result["swap"]
        bars = {
            "SSIM (reconstruction)": {s.upper(): r["ssim"] for s, r in rec.items()},
            "PSNR dB (reconstruction)": {s.upper(): r["psnr"] for s, r in rec.items()},
            "identity distance to source": {n: d["id_dist_source"] for n, d in sw.items()},
            "verification rate": {n: d["verification"] for n, d in sw.items()},
            "retrieval rate (top-1)": {n: d["retrieval"] for n, d in sw.items()},
            "sharpness ratio (1 = as the real face)": {f"{s.upper()} recon": r["sharpness_ratio"] for s, r in rec.items()}
            | {n: d["sharpness_ratio"] for n, d in sw.items()},
            "landmark error / IOD": {n: d["landmark_error"] for n, d in sw.items()},
            "pose error (deg)": {n: d["pose_error"]["mean"] for n, d in sw.items()},
        }
        if result.get("discriminator"):
            bars["discriminator"] = {"accuracy": result["discriminator"]["accuracy"], "AUC": result["discriminator"]["auc"]}
        plot_metric_bars(bars, out_dir / "metric_bars.png")
        save_swap_grid(grid_rows, out_dir / "swap_grid.png")
        result["throughput_plot"] = plot_throughput(training.get("throughput", ([], [], [])), out_dir / "throughput.png")
    result["overfit_step"] = overfit
    path = out_dir / "report.md"
    atomic_write_text(path, report_markdown(result, overfit, plots, patience))
    return path
