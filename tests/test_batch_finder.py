"""The batch finder backs off on out-of-memory instead of crashing.

The OOM is simulated: a real model step runs, but allocating past a budget raises the same
torch.OutOfMemoryError the CUDA allocator raises (a CPU machine cannot run out of GPU memory on cue).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepfake.train import memory as batch_finder
from deepfake.train.memory import find_batch_size, is_out_of_memory
from deepfake.config import ModelConfig
from deepfake.errors import DeepfakeError
from deepfake.models import build_autoencoder

TINY = ModelConfig(resolution=64, encoder_channels=[8, 16, 16, 16], latent_dims=16, bottleneck_channels=16,
                   decoder_channels=[16, 8, 8])


def make_probe(limit_bytes: int, log: list[int]):
    """A real train step whose activations are 'allocated' against a budget; over it -> OutOfMemoryError."""
    torch.manual_seed(0)
    model = build_autoencoder(TINY)
    opt = torch.optim.Adam(model.parameters(), 1e-4)

    def probe(batch: int) -> None:
        log.append(batch)
        x = torch.rand(batch, 3, 64, 64)  # (B, 3, 64, 64)
        needed = 40 * x.numel() * x.element_size()  # a crude activation estimate, linear in batch
        if needed > limit_bytes:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {needed} bytes")
        rgb, mask = model(x, "a")
        loss = F.mse_loss(rgb, x) + mask.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return probe


def test_backs_off_to_the_largest_batch_that_fits(monkeypatch):
    freed = []
    monkeypatch.setattr(batch_finder, "free_memory", lambda: freed.append(True))
    tried: list[int] = []
    one_face = 40 * 3 * 64 * 64 * 4
    batch = find_batch_size(make_probe(20 * one_face, tried), start=128)
    assert batch == 16  # 128, 64, 32 do not fit; 16 (<= 20) does
    assert tried == [128, 64, 32, 16]
    assert len(freed) == 3  # memory freed after every failed try


def test_runtime_error_oom_is_recognised_and_multiple_is_kept():
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(torch.OutOfMemoryError("x"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    tried: list[int] = []

    def probe(batch: int) -> None:
        tried.append(batch)
        if batch > 20:
            raise RuntimeError("DefaultCPUAllocator: not enough memory: out of memory")

    # Halving 25 gives 12; kept a multiple of 5 (e.g. ranks) that is 10.
    assert find_batch_size(probe, start=100, multiple_of=5) == 10
    assert tried == [100, 50, 25, 10]


def test_other_errors_propagate_and_min_batch_failure_is_clear():
    def broken(batch: int) -> None:
        raise ValueError("not an OOM")

    with pytest.raises(ValueError):
        find_batch_size(broken, start=8)

    def never_fits(batch: int) -> None:
        raise torch.OutOfMemoryError("out of memory")

    with pytest.raises(DeepfakeError, match="even at batch 2"):
        find_batch_size(never_fits, start=16, min_batch=2)


def test_train_batch_probe_runs_real_steps_and_backs_off(monkeypatch):
    """find_train_batch runs the real G+D step; past a simulated memory budget the step raises OOM."""
    from dataclasses import replace

    from deepfake.models import preset_config
    from deepfake.train.step import AdversarialStep

    cfg = preset_config("tiny")
    cfg = replace(cfg, device="cpu", amp="off", compile=True, loss=replace(cfg.loss, gan_weight=0.1))
    real_phase = AdversarialStep.generator_phase
    seen: list[int] = []

    def limited(self, batches_a, batches_b, step):
        b = batches_a[0].inputs.shape[0]
        seen.append(b)
        assert self.compile_mode is None, "the probe must run eager, not compile every candidate batch"
        if b > 6:
            raise torch.OutOfMemoryError(f"CUDA out of memory (simulated at batch {b})")
        return real_phase(self, batches_a, batches_b, step)

    monkeypatch.setattr(AdversarialStep, "generator_phase", limited)
    assert batch_finder.find_train_batch(cfg, start=24) == 6  # 24, 12 fail; 6 runs a full step
    assert seen == [24, 12, 6]


def test_cli_batch_auto_is_parsed_and_keeps_the_preset_batch_on_cpu(tmp_path, capsys):
    from deepfake.commands.train import _batch_arg

    assert _batch_arg("auto") == "auto:256" and _batch_arg("auto:64") == "auto:64" and _batch_arg("8") == 8
    import argparse

    for bad in ("auto:x", "0", "big"):
        with pytest.raises(argparse.ArgumentTypeError):
            _batch_arg(bad)

    from dataclasses import replace

    from deepfake.commands.train import _auto_batch
    from deepfake.models import preset_config

    cfg = replace(preset_config("tiny"), device="cpu")
    assert _auto_batch(cfg, 64).batch == cfg.batch  # no device memory to probe: the preset's batch stays
    assert "keeping batch" in capsys.readouterr().out
