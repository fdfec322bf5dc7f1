"""Are these the facesets the model trained on, each on its own side? evaluate's held-out faces are the
model's validation split recomputed from the faceset (faceset.side_split), which only names the faces
training held out while the faceset is the one training split. Swapped or changed facesets are refused,
from what the model folder records:

- identities.json: each side's mean embedding over its whole faceset at training time;
- the newest snapshot's sampler state: how many training faces each side had.

    check_trained_on(model_dir, loaded.config, loaded.identities, {"a": faceset_a, "b": faceset_b})
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

from deepfake.errors import DeepfakeError
from deepfake.faceset import Faceset, side_split
from deepfake.model_dir import list_snapshots

log = logging.getLogger(__name__)

# Recomputed from an unchanged manifest the mean is bit-identical; the margin only absorbs another numpy
# build's summation order, far below what dropping or adding one face in thousands moves it.
SAME_MEAN = 2e-6
OTHER = {"a": "b", "b": "a"}


def training_faces(model_dir: Path) -> dict[str, int]:
    """Training faces per side, from the newest readable snapshot's samplers (a state is the position,
    then the epoch's order); {} when none is readable."""
    for snap in reversed(list_snapshots(model_dir)):
        try:
            with safe_open(str(snap / "state.safetensors"), framework="pt") as f:
                return {s: f.get_slice(f"sampler_{s}").get_shape()[0] - 1 for s in OTHER if f"sampler_{s}" in f.keys()}
        except (SafetensorError, OSError, ValueError):
            continue
    return {}


def check_trained_on(model_dir: Path, tcfg, recorded: dict[str, np.ndarray] | None, sets: dict[str, Faceset]) -> None:
    """DeepfakeError (one line) when --a and --b look swapped, or a faceset is not the one its side trained
    on (faces added, removed or re-extracted): its recomputed split would call training faces held out."""
    if tcfg.data.pool:
        return  # a pretraining run records no sides
    means = {s: fs.mean_embedding() if recorded and len(fs) and fs.records[0].embedding else None
             for s, fs in sets.items()}
    usable = recorded is not None and all(
        s in recorded and m is not None and m.shape == recorded[s].shape and np.isfinite(m).all()
        for s, m in means.items())
    if usable:
        d = {(s, r): float(np.linalg.norm(means[s] - recorded[r])) for s in sets for r in OTHER}
        if d["a", "b"] < d["a", "a"] and d["b", "a"] < d["b", "b"]:
            raise DeepfakeError(
                f"--a and --b look swapped: {sets['a'].root} is nearer the identity the model trained as B "
                f"({d['a', 'b']:.3f} against {d['a', 'a']:.3f} to A's) and {sets['b'].root} nearer A's "
                f"({d['b', 'a']:.3f} against {d['b', 'b']:.3f}); give them the other way round")
    counts = training_faces(model_dir)
    for s, fs in sets.items():
        train_idx, _ = side_split(len(fs), tcfg.val_fraction, tcfg.seed, s, tcfg.val_split)
        moved = float(np.abs(means[s] - recorded[s]).max()) if usable else 0.0
        if s in counts and counts[s] != len(train_idx):
            what = f"{len(train_idx)} training faces of its {len(fs)} now, {counts[s]} when the model trained: " \
                   "faces added or removed since"
        elif moved > SAME_MEAN:
            what = f"its mean identity differs from the one identities.json recorded for side {s.upper()} " \
                   f"by up to {moved:.2g} per dimension: faces replaced or re-extracted since"
        else:
            continue
        raise DeepfakeError(f"{fs.root}: not the faceset side {s.upper()} trained on, or changed since ({what}): "
                            "its held-out faces can no longer be told from training faces; evaluate with the "
                            "faceset as it was trained on")
    if not usable and not counts:
        log.warning("%s records neither identities nor a snapshot: cannot check that the facesets are the ones "
                    "it trained on", model_dir)
