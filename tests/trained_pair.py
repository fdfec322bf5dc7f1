"""One small model trained on the shared facesets (A = d6, B = d14), for the export and live tests.

Trained once per test session into the session's base temp folder, whichever test module asks first, so
the export and live tests share it (a module-scoped fixture in each would train it twice).
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

STEPS = 300
_LOCK = threading.Lock()


def trained_model(tmp_path_factory, faceset_a, faceset_b) -> Path:
    """The tiny preset trained STEPS steps on one torch thread (about a minute on a shared 2-core box)."""
    import torch

    from deepfake.models.presets import preset_config
    from deepfake.train import train

    out = tmp_path_factory.getbasetemp() / "trained_pair" / "model"
    with _LOCK:
        if not (out / "autoencoder.safetensors").is_file():
            cfg = preset_config("tiny")
            cfg = dataclasses.replace(cfg, steps=STEPS, val_every=0, save_every=10**6, preview_every=10**6,
                                      log_every=50, device="cpu", seed=0)
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                train(cfg, faceset_a, faceset_b, out, progress=False)
            finally:
                torch.set_num_threads(threads)
    return out
