"""Model shapes for every preset, architecture, activation and normalisation (CPU, seconds)."""

from __future__ import annotations

import contextlib
import copy
import dataclasses

import pytest
import torch

from deepfake.config import DiscriminatorConfig, ModelConfig
from deepfake.errors import DeepfakeError
from deepfake.models import PRESETS, build_autoencoder, build_discriminator, preset_config
from deepfake.models.autoencoder import stacked_conv
from deepfake.models.blocks import ACTIVATIONS, NORMS


def tiny_model(**kw) -> ModelConfig:
    return dataclasses.replace(preset_config("tiny").model, **kw)


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_with_plausible_size(name):
    cfg = preset_config(name)
    with torch.device("meta"):  # parameter counts without allocating 100+ M floats
        ae = build_autoencoder(cfg.model)
        d = build_discriminator(cfg.discriminator, cfg.model.resolution)
    expected_min = {"tiny": 1e5, "quick": 1e5, "original64": 5e7, "df128": 5e7, "df256": 1e8, "liae256": 1e8}[name]
    assert n_params(ae) > expected_min
    assert n_params(d) > 1e4
    assert cfg.preset == name


@pytest.mark.parametrize("name", ["tiny", "original64", "df128", "df256"])
def test_preset_forward_at_batch_1(name):
    cfg = preset_config(name)
    torch.manual_seed(0)
    ae = build_autoencoder(cfg.model).eval()
    r = cfg.model.resolution
    x = torch.rand(1, 3, r, r)
    with torch.no_grad():
        for side in ("a", "b"):
            rgb, mask = ae(x, side)
            assert rgb.shape == (1, 3, r, r) and mask.shape == (1, 1, r, r)
            assert 0 <= float(rgb.min()) and float(rgb.max()) <= 1
            assert 0 <= float(mask.min()) and float(mask.max()) <= 1


@pytest.mark.parametrize("arch", ["df", "liae"])
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_shapes_per_activation(arch, act):
    ae = build_autoencoder(tiny_model(arch=arch, activation=act))
    x = torch.rand(2, 3, 64, 64)
    rgb, mask = ae(x, "a")
    assert rgb.shape == (2, 3, 64, 64) and mask.shape == (2, 1, 64, 64)
    (rgb.mean() + mask.mean()).backward()
    assert all(p.grad is not None for p in ae.encoder.parameters())


@pytest.mark.parametrize("arch", ["df", "liae"])
@pytest.mark.parametrize("norm", list(NORMS))
@pytest.mark.parametrize("residual", [False, True])
def test_shapes_per_norm(arch, norm, residual):
    ae = build_autoencoder(tiny_model(arch=arch, norm=norm, residual_blocks=residual))
    rgb, mask = ae(torch.rand(2, 3, 64, 64), "b")
    assert rgb.shape == (2, 3, 64, 64) and mask.shape == (2, 1, 64, 64)
    assert torch.isfinite(rgb).all()


def test_resolution_128_and_no_learned_mask():
    cfg = tiny_model(resolution=128, learned_mask=False)
    rgb, mask = build_autoencoder(cfg)(torch.rand(1, 3, 128, 128), "a")
    assert rgb.shape == (1, 3, 128, 128)
    assert torch.equal(mask, torch.ones(1, 1, 128, 128))


@pytest.mark.parametrize("arch", ["df", "liae"])
def test_swap_decodes_through_the_other_side(arch):
    torch.manual_seed(0)
    ae = build_autoencoder(tiny_model(arch=arch)).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        z = ae.encode(x)
        swapped, _ = ae.swap(x, "b")
        assert torch.equal(swapped, ae.decode(z, "b")[0])
        assert not torch.allclose(swapped, ae(x, "a")[0])
    with pytest.raises(DeepfakeError, match="side"):
        ae.decode(z, "c")


def test_liae_side_a_uses_only_inter_ab():
    torch.manual_seed(0)
    ae = build_autoencoder(tiny_model(arch="liae")).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = ae.swap(x, "a")[0]
        for p in ae.inter_b.parameters():
            p.add_(1.0)
        assert torch.equal(before, ae.swap(x, "a")[0])  # B's private code does not reach side a
        assert not torch.equal(ae(x, "b")[0], before)


def test_activation_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = build_autoencoder(tiny_model(residual_blocks=True))
    ckpt = build_autoencoder(tiny_model(residual_blocks=True, checkpoint_decoder=True))
    ckpt.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 64)
    for m in (plain, ckpt):
        rgb, mask = m(x, "a")
        (rgb.square().mean() + mask.mean()).backward()
    for (n, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=n)


@pytest.mark.parametrize("bad", [
    dict(resolution=72), dict(resolution=32), dict(arch="gan"), dict(encoder_channels=[8, 8]),
    dict(decoder_stages=2), dict(activation="tanhh"), dict(norm="layer"), 
])
def test_bad_configs_raise_one_line_errors(bad):
    with pytest.raises(DeepfakeError) as e:
        build_autoencoder(tiny_model(**bad))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kind,shape", [("patch", (2, 1, 8, 8)), ("unet", (2, 1, 64, 64))])
@pytest.mark.parametrize("act", ["leaky_relu", "gelu", "mish"])
@pytest.mark.parametrize("norm", ["none", "batch", "instance", "group"])
def test_discriminator_gives_per_patch_logits(kind, shape, act, norm):
    d = build_discriminator(DiscriminatorConfig(kind=kind, depth=3, channels=8, activation=act, norm=norm), 64)
    out = d(torch.rand(2, 3, 64, 64))
    assert out.shape == shape
    out.mean().backward()


def test_discriminator_depth_must_divide_resolution():
    with pytest.raises(DeepfakeError, match="depth"):
        build_discriminator(DiscriminatorConfig(depth=7), 64)
    with pytest.raises(DeepfakeError, match="kind"):
        build_discriminator(DiscriminatorConfig(kind="stylegan"), 64)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def as_training_lays_out(module: torch.nn.Module, x: torch.Tensor, device: str) -> torch.Tensor:
    """Move `module` to `device` (channels_last on CUDA, as training runs it); `x` likewise, needing grad."""
    module.to(device)
    x = x.to(device)
    if device == "cuda":
        module.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return x.requires_grad_(True)


@contextlib.contextmanager
def no_tf32():
    """float32 convolutions and matmuls at full precision (training allows TF32 on CUDA)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("learned_mask", [True, False])
def test_decoder_heads_in_one_convolution_equal_the_heads_in_float64(device, learned_mask):
    """The decoder runs to_rgb and to_mask as one convolution of their stacked weights. Its outputs and
    the gradients of the input and of each head's weights must equal the two heads run one by one in
    float64 on the CPU: in fp32 (on CUDA with TF32 off) and, on CUDA, under bf16 autocast.

    The reference is float64 on the CPU, not the separate heads on the same device: cuDNN's algorithms
    for a 1-output convolution need not sum the way the stacked one does, and only a reference off the
    device can say which is right. cuDNN runs autotuned, as training runs it (devices.configure_cuda);
    on CUDA its heuristic pick is also run and its errors printed, to tell an algorithm's error apart."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(preset_config("tiny").model, learned_mask=learned_mask)
    decoder = build_autoencoder(cfg).decoder_a
    heads = [decoder.to_rgb] + ([decoder.to_mask] if learned_mask else [])
    x = torch.randn(4, cfg.decoder_channels[-1], 64, 64)

    # The reference: each head on its own, float64, CPU.
    x64 = x.double().requires_grad_(True)
    w64 = [h.weight.detach().double().requires_grad_(True) for h in heads]
    ref = torch.cat([torch.nn.functional.conv2d(x64, w, h.bias.double(), padding=2) for w, h in zip(w64, heads)], 1)
    ref_grads = torch.autograd.grad(ref.square().sum(), [x64] + w64)

    xd = as_training_lays_out(decoder, x, device)
    errors, bad = [], []
    # cuDNN's algorithm choice: autotuned and asserted; on CUDA also its heuristic pick, printed only.
    saved_benchmark = torch.backends.cudnn.benchmark
    try:
        with no_tf32():
            for benchmark in [True] + ([False] if device == "cuda" else []):
                torch.backends.cudnn.benchmark = benchmark
                for amp in [None] + ([torch.bfloat16] if device == "cuda" else []):
                    with torch.autocast(device, dtype=amp or torch.float32, enabled=amp is not None):
                        fused = stacked_conv(xd, heads)
                    assert fused.shape[1] == 3 + learned_mask  # rgb [+ mask]
                    grads = torch.autograd.grad(fused.float().square().sum(), [xd] + [h.weight for h in heads])
                    # Largest error relative to the largest value (weight gradients sum over every pixel).
                    # fp32 on CUDA: cuDNN's algorithms need not sum exactly (FFT, Winograd), so the whole
                    # network's test's 1e-3 (below); bf16: its 8-bit mantissa.
                    tol = 3e-2 if amp else 1e-3 if device == "cuda" else 1e-4
                    names = ["output", "input", "to_rgb", "to_mask"][: len(heads) + 2]
                    for name, got, r in zip(names, [fused] + list(grads), [ref, *ref_grads]):
                        err = float((got.double().cpu() - r).abs().max() / r.abs().max())
                        label = f"{'' if benchmark else 'heuristic '}{'bf16' if amp else 'fp32'} {name}"
                        errors.append(f"{label} {err:.1e}")
                        if benchmark and not err < tol:
                            bad.append(f"{errors[-1]} (tolerance {tol:g})")
    finally:
        torch.backends.cudnn.benchmark = saved_benchmark
    print(f"{device}, error against float64:", "; ".join(errors))
    assert not bad, f"off on {device}: " + "; ".join(bad)


def test_decoder_heads_in_one_convolution_equal_the_separate_heads_on_the_cpu():
    """On the CPU the stacked convolution and the heads run one by one agree to fp32 rounding."""
    torch.manual_seed(0)
    decoder = build_autoencoder(preset_config("tiny").model).decoder_a
    x = torch.randn(2, 16, 64, 64, requires_grad=True)
    heads = [decoder.to_rgb, decoder.to_mask]
    fused = decoder._heads(x)
    separate = torch.cat([h(x) for h in heads], dim=1)
    torch.testing.assert_close(fused, separate, rtol=1e-5, atol=1e-5)
    params = [x] + [h.weight for h in heads]
    for g_f, g_s in zip(torch.autograd.grad(fused.square().sum(), params), torch.autograd.grad(separate.square().sum(), params)):
        torch.testing.assert_close(g_f, g_s, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("network", ["autoencoder", "patch", "unet"])
def test_every_weight_gradient_matches_float64(device, network):
    """Every parameter's gradient of a whole network against float64 on the CPU: on CUDA in
    channels_last fp32 with TF32 off, as training lays the networks out. The discriminators end in
    1-output convolutions (3x3 and 1x1), the shape whose weight gradient disagreed on an H200 in run 4
    (the decoder heads' test above); the encoders start from 3 input channels."""
    torch.manual_seed(0)
    if network == "autoencoder":
        net = build_autoencoder(tiny_model())
        run = lambda m, x: torch.cat(m(x, "a") + m(x, "b"), dim=1)  # noqa: E731  rgb and mask, both sides
    else:
        net = build_discriminator(DiscriminatorConfig(kind=network, depth=3, channels=8), 64)
        run = lambda m, x: m(x)  # noqa: E731
    x = torch.rand(4, 3, 64, 64)
    ref = copy.deepcopy(net).double()
    x64 = x.double().requires_grad_(True)
    ref_grads = torch.autograd.grad(run(ref, x64).square().sum(), [x64, *ref.parameters()])

    xd = as_training_lays_out(net, x, device)
    with no_tf32():
        grads = torch.autograd.grad(run(net, xd).square().sum(), [xd, *net.parameters()])
    names = ["input"] + [n for n, _ in net.named_parameters()]
    bad = []
    for name, g, r in zip(names, grads, ref_grads):
        err = float((g.double().cpu() - r).abs().max() / r.abs().max().clamp_min(1e-30))
        if not err < 1e-3:  # relative to the gradient's largest value
            bad.append(f"{name} {tuple(r.shape)}: {err:.2g}")
    assert not bad, f"gradients off on {device}: " + "; ".join(bad)
