"""torch.compile'd train step = eager train step (same loss), on CPU in float32.

Inductor needs a C compiler on CPU; without one (or without a working compile stack) the test skips
and says why. On CUDA the same comparison would use bf16 tolerances; CI has no GPU.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
import torch

from deepfake.train.augment import no_augment
from deepfake.models import preset_config
from deepfake.train.build import build


def compiler_problem() -> str | None:
    if not any(shutil.which(cc) for cc in ("gcc", "cc", "clang")):
        return "no C compiler on PATH: inductor cannot build CPU kernels"
    try:
        fn = torch.compile(lambda x: torch.sin(x) * 2)
        x = torch.rand(8)
        if not torch.allclose(fn(x), torch.sin(x) * 2):
            return "torch.compile gives wrong results on this machine"
    except Exception as e:  # any failure of the compile stack itself
        return f"torch.compile unavailable: {type(e).__name__}: {str(e)[:200]}"
    return None


def run_steps(compile_: bool, steps: int = 2) -> list[list[float]]:
    cfg = preset_config("tiny")
    cfg = replace(cfg, compile=compile_, device="cpu", amp="off", loss=replace(cfg.loss, gan_weight=0.1))
    torch.manual_seed(0)
    stepper = build(cfg).step
    gen = torch.Generator().manual_seed(1)
    images = (torch.rand(4, 3, 64, 64, generator=gen) * 255).to(torch.uint8)  # (4, 3, 64, 64)
    masks = torch.zeros(4, 1, 64, 64, dtype=torch.uint8)
    masks[:, :, 12:56, 14:50] = 255
    landmarks = torch.rand(4, 68, 2, generator=gen) * 40 + 12  # (4, 68, 2) px
    a = [no_augment(images[:2], masks[:2], landmarks[:2])]
    b = [no_augment(images[2:], masks[2:], landmarks[2:])]
    logs = []
    for step in range(steps):
        g_logs, _, fakes = stepper.generator_phase(a, b, step)
        d_logs, _ = stepper.discriminator_phase(a, b, fakes, step)
        logs.append(torch.cat([g_logs, d_logs]).tolist())
    return logs


def test_compiled_step_matches_eager_step():
    """The whole G + D step, compiled as `--compile` builds it, against eager on the same weights."""
    problem = compiler_problem()
    if problem:
        pytest.skip(problem)
    eager, compiled = run_steps(False), run_steps(True)
    for step, (e, c) in enumerate(zip(eager, compiled)):
        # G loss and D loss: float32 on both sides; fused kernels reorder sums, so not bitwise.
        assert c[0] == pytest.approx(e[0], rel=1e-4), f"step {step}: G loss compiled {c[0]} vs eager {e[0]}"
        assert c[10] == pytest.approx(e[10], rel=1e-4), f"step {step}: D loss compiled {c[10]} vs eager {e[10]}"
    assert eager[1][0] != eager[0][0]  # the first step changed the weights, so step 2 compares trained models


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA"))])
def test_compiled_loss_gradient_matches_eager(device):
    """The reconstruction loss (DSSIM with its custom blur recomputed in backward, masked MSE, mask
    loss) compiled gives eager's gradient. torch 2.11's compiler once got it entirely wrong (relative
    error 1.0) for an in-place add inside the blur; this runs on the device image's torch too."""
    from deepfake.config import LossConfig
    from deepfake.faces.align import canonical_points
    from deepfake.train.losses import reconstruction_loss

    problem = compiler_problem()
    if problem:
        pytest.skip(problem)
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 64, 64, generator=gen).to(device)
    pred0 = (target.cpu() + 0.1 * torch.randn(2, 3, 64, 64, generator=gen)).clamp(0, 1).to(device)
    mask = (torch.rand(2, 1, 64, 64, generator=gen) > 0.2).float().to(device)
    lm = torch.as_tensor(canonical_points(64, 0.75), dtype=torch.float32).expand(2, 68, 2).to(device)

    def loss(pred, pred_mask):
        return reconstruction_loss(pred, pred_mask, target, mask, lm, LossConfig())[0]

    def grads(fn):
        pred = pred0.clone().requires_grad_(True)
        pred_mask = torch.full_like(mask, 0.5).requires_grad_(True)
        fn(pred, pred_mask).backward()
        return pred.grad, pred_mask.grad

    (ge, gme), (gc, gmc) = grads(loss), grads(torch.compile(loss))
    for name, e, c in (("image", ge, gc), ("mask", gme, gmc)):
        err = float((c - e).norm() / e.norm())
        assert err < 1e-4, f"{name} gradient: relative error {err:.3g}"


def test_compiled_augmentation_matches_eager():
    """Training compiles the augmentation's pixel work too (augment_kernel): same faces as eager."""
    from deepfake.train.augment import apply, augment_kernel, sample_params
    from deepfake.config import AugmentConfig

    problem = compiler_problem()
    if problem:
        pytest.skip(problem)
    gen = torch.Generator().manual_seed(3)
    images = (torch.rand(4, 3, 64, 64, generator=gen) * 255).to(torch.uint8)  # (4, 3, 64, 64)
    masks = (torch.rand(4, 1, 64, 64, generator=gen) > 0.5).to(torch.uint8) * 255
    landmarks = torch.rand(4, 68, 2, generator=gen) * 40 + 12  # (4, 68, 2) px
    kernel = augment_kernel(True)
    for warp in (True, False):  # the warp phase and the no-warp phase are two graphs
        params = sample_params(AugmentConfig(), 4, gen, warp=warp)
        eager = apply(images, masks, landmarks, params)
        compiled = apply(images, masks, landmarks, params, kernel)
        for name in ("inputs", "target", "target_mask", "landmarks"):
            torch.testing.assert_close(getattr(compiled, name), getattr(eager, name), atol=1e-5, rtol=1e-5, msg=name)
        assert not torch.equal(eager.inputs, images.float() / 255)  # the augmentation did something


def test_compiled_training_loop_matches_eager(faceset_a, faceset_b, tmp_path, one_torch_thread):
    """The whole `train` loop with --compile (G and D phases, the compiled augmentation, the warp phase
    ending mid-run, lazy R1 steps that run eager) logs the same losses as the eager loop, on real faces."""
    from deepfake.train import train

    problem = compiler_problem()
    if problem:
        pytest.skip(problem)
    cfg = preset_config("tiny")
    cfg = replace(cfg, steps=4, batch=2, log_every=1, val_every=0, save_every=10**6, preview_every=0, device="cpu",
                  amp="off", augment=replace(cfg.augment, warp_until_step=2),
                  loss=replace(cfg.loss, gan_weight=0.1, r1_gamma=1.0, r1_every=2))
    eager = train(cfg, faceset_a, faceset_b, tmp_path / "eager", progress=False)
    compiled = train(replace(cfg, compile=True), faceset_a, faceset_b, tmp_path / "compiled", progress=False)
    assert compiled.compile_s is not None and eager.compile_s is None
    for e, c in zip(eager.metrics, compiled.metrics):
        for key in ("loss", "loss_d", "dssim_a", "mse_b", "gan_g"):
            assert c[key] == pytest.approx(e[key], rel=1e-3, abs=1e-5), f"step {e['step']}: {key} {c[key]} vs {e[key]}"
    assert [r["step"] for r in compiled.metrics] == [1, 2, 3, 4]


def accumulated_grads(compile_mode: str | None, device: torch.device, steps: int = 3,
                      which: slice = slice(0, 2)) -> list[torch.Tensor]:
    """G's and D's gradients accumulated over the micro-batches `which` (of 2, all different faces), at
    the last of `steps` steps (the optimizers never step: every step sees the same weights)."""
    accum = len(range(2)[which])
    cfg = preset_config("tiny")
    cfg = replace(cfg, compile=compile_mode is not None, compile_mode=compile_mode or "default", device=device.type,
                  amp="off", grad_accum=accum, loss=replace(cfg.loss, gan_weight=0.1))
    torch.manual_seed(0)
    stepper = build(cfg, device).step
    captured: list[torch.Tensor] = []

    def capture(opt, params, loss, *args, **kwargs):  # in place of clip + step: keep the summed gradients, drop them
        captured[:] = [p.grad.detach().clone() for p in params]
        opt.zero_grad(set_to_none=True)
        return torch.zeros((), device=device)

    stepper._finish = capture
    gen = torch.Generator().manual_seed(1)
    images = (torch.rand(8, 3, 64, 64, generator=gen) * 255).to(torch.uint8).to(device)  # (8, 3, 64, 64)
    masks = torch.full((8, 1, 64, 64), 255, dtype=torch.uint8, device=device)
    landmarks = (torch.rand(8, 68, 2, generator=gen) * 40 + 12).to(device)  # (8, 68, 2) px
    micro = [no_augment(images[i : i + 2], masks[i : i + 2], landmarks[i : i + 2]) for i in range(0, 8, 2)]
    a, b = micro[:2][which], micro[2:][which]  # up to 2 micro-batches per side, all different faces
    grads = []
    for step in range(steps):
        _, _, fakes = stepper.generator_phase(a, b, step)
        g_grads = list(captured)
        stepper.discriminator_phase(a, b, fakes, step)
        grads = g_grads + list(captured)
    return grads


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_gradient_accumulation_under_cuda_graphs_sums_every_micro_batch():
    """With --compile-mode reduce-overhead and grad_accum 2, the first micro-batch's gradient must not be
    overwritten by the second's graph replay (pytorch/pytorch#169545): the sums equal eager's."""
    device = torch.device("cuda")
    eager = accumulated_grads(None, device)
    graphs = accumulated_grads("reduce-overhead", device)
    assert len(graphs) == len(eager) > 0
    for i, (e, c) in enumerate(zip(eager, graphs)):
        err = float((c - e).norm() / e.norm().clamp_min(1e-12))
        assert err < 1e-2, f"gradient {i}: relative error {err:.3g} against eager"


def test_gradient_accumulation_capture_is_exact_on_cpu():
    """The helper above, eager on the CPU: 2 accumulated micro-batches give the mean of their separate
    gradients, so the CUDA test compares real sums (and the capture itself is sound)."""
    cpu = torch.device("cpu")
    both = accumulated_grads(None, cpu, steps=2)
    first = accumulated_grads(None, cpu, steps=1, which=slice(0, 1))
    second = accumulated_grads(None, cpu, steps=1, which=slice(1, 2))
    assert len(both) == len(first) == len(second) > 0
    for i, (s, x, y) in enumerate(zip(both, first, second)):
        torch.testing.assert_close(s, (x + y) / 2, rtol=1e-4, atol=1e-7, msg=f"gradient {i}")
    assert sum(float((x - y).abs().sum()) for x, y in zip(first, second)) > 0  # the micro-batches differ
