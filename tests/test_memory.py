"""Peak tensor memory: the tracker counts exact bytes, and one training step's report adds up.

The step reports use the tiny preset; under FakeTensorMode (the default) nothing is computed, and one
test checks that a real step gives the very same bytes.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace

import pytest
import torch

from conftest import ROOT
from deepfake.errors import DeepfakeError
from deepfake.train.memory_tracker import ACTIVATIONS, MemoryTracker, tensor_bytes
from deepfake.models import build_autoencoder, preset_config
from deepfake.train.memory import measure_train_step

MIB = 2**20


# ----------------------------------------------------------------------------------------------------
# The tracker.


def test_tracker_counts_an_allocation_exactly_and_subtracts_it_when_freed():
    keep = torch.zeros(1000)  # alive before the block: invisible unless tracked
    with MemoryTracker() as mem:
        assert mem.track([keep, keep.view(10, 100)], "weights") == 4000  # one storage, counted once
        a = torch.empty(MIB // 4)  # 1 MiB of float32
        assert mem.current == 4000 + MIB and mem.peak == 4000 + MIB
        view = a.view(512, 512)
        a.add_(1)  # a view and an in-place result share the storage: no new bytes
        assert mem.current == 4000 + MIB
        b = torch.empty(MIB // 2, dtype=torch.float16)  # another 1 MiB
        assert mem.peak == 4000 + 2 * MIB
        peak_parts = dict(mem.peak_by_category)
        del a, view
        assert mem.current == 4000 + MIB  # freed storage is subtracted
        del b
        c = torch.empty(MIB // 8)  # 0.5 MiB: below the old peak
        assert mem.current == 4000 + MIB // 2
        assert mem.peak == 4000 + 2 * MIB
        del c
    assert mem.current == 4000
    assert peak_parts == {"weights": 4000, ACTIVATIONS: 2 * MIB}
    assert mem.peak_by_category == peak_parts


def test_tracker_sees_autograd_and_tags_gradients():
    lin = torch.nn.Linear(256, 256, bias=False)  # 256 KiB of weights
    x = torch.randn(64, 256)
    with MemoryTracker() as mem:
        mem.track(lin.parameters(), "weights")
        lin.weight.register_post_accumulate_grad_hook(lambda p: mem.tag(p.grad, "grads"))
        lin(x).square().sum().backward()
        assert mem.by_category["grads"] == 256 * 256 * 4
        lin.weight.grad = None
        assert mem.by_category["grads"] == 0
    # The forward output (64 KiB) was saved for square's backward, next to the weights.
    assert mem.peak >= 256 * 256 * 4 + 64 * 256 * 4
    assert tensor_bytes([lin.weight, None, lin.weight[:1]]) == 256 * 256 * 4


def test_tracker_counts_fake_tensors_without_allocating():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(), MemoryTracker() as mem:
        big = torch.empty(2**30, dtype=torch.uint8)  # "1 GiB", nothing allocated
        del big
    assert mem.peak == 2**30 and mem.current == 0


# ----------------------------------------------------------------------------------------------------
# One training step.


def _tiny(checkpoint: bool = False, gan: bool = False):
    cfg = preset_config("tiny")
    return replace(cfg, model=replace(cfg.model, checkpoint_decoder=checkpoint),
                   loss=replace(cfg.loss, gan_weight=0.1 if gan else 0.0))


def test_step_report_counts_weights_and_adam_state_exactly():
    cfg = _tiny()
    rep = measure_train_step(cfg, 4)
    params = list(build_autoencoder(cfg.model).parameters())
    n = sum(p.numel() for p in params)
    assert rep.params == n and rep.weights == 4 * n  # fp32
    # Adam: exp_avg and exp_avg_sq per weight, plus fused Adam's float32 step counter per tensor.
    assert rep.optimizer == 2 * rep.weights + 4 * len(params)
    assert rep.peak >= rep.weights + rep.optimizer + rep.grads + rep.activations > rep.weights + rep.optimizer
    assert not rep.gan and rep.fake


def test_fake_step_counts_the_same_bytes_as_a_real_step():
    cfg = _tiny(gan=True)
    fake, real = measure_train_step(cfg, 2), measure_train_step(cfg, 2, fake=False)
    assert fake.gan and real.gan and fake.params > measure_train_step(_tiny(), 2).params  # D counted
    assert (fake.peak, fake.activations, fake.optimizer) == (real.peak, real.activations, real.optimizer)


def test_checkpointing_the_decoder_lowers_the_activation_peak():
    off = measure_train_step(_tiny(checkpoint=False), 8)
    on = measure_train_step(_tiny(checkpoint=True), 8)
    # Measured: 26.0 MiB against 33.0 MiB (0.79x) for tiny at batch 8, fp32.
    assert on.activations < 0.85 * off.activations
    assert on.peak < off.peak and on.weights == off.weights


def test_peak_grows_with_batch_about_linearly_and_bf16_is_smaller():
    acts = {b: measure_train_step(_tiny(), b).activations for b in (2, 4, 8)}
    assert acts[2] < acts[4] < acts[8]
    # Activations are per face: doubling the batch doubles them, give or take fixed temporaries.
    assert abs(acts[8] - 2 * acts[4]) < 0.05 * acts[8] and abs(acts[4] - 2 * acts[2]) < 0.05 * acts[4]
    bf16 = measure_train_step(_tiny(), 8, amp="bf16")
    assert bf16.activations < 0.8 * acts[8]


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(DeepfakeError, match="amp"):
        measure_train_step(_tiny(), 2, amp="fp16")
    with pytest.raises(DeepfakeError, match="batch"):
        measure_train_step(_tiny(), 0)


# ----------------------------------------------------------------------------------------------------
# The benchmark.


def test_benchmark_quick_mode_runs_and_fake_matches_real(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("train_memory", ROOT / "benchmarks" / "train_memory.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "memory.json"
    assert bench.main(["--quick", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [c["batch"] for c in result["cases"]] == [2, 4]
    for case in result["cases"]:
        assert case["off_real"]["peak"] == case["off"]["peak"] and case["on_real"]["peak"] == case["on"]["peak"]
        assert case["on"]["peak"] < case["off"]["peak"]
    printed = capsys.readouterr().out
    assert "| tiny | 4 | off | off |" in printed and "headroom" in printed and "fragmentation" in printed
