"""The generators: DF (shared encoder, one decoder per identity) and LIAE (shared encoder and decoder,
with `inter_AB` / `inter_B` bottlenecks, as in DeepFaceLab's SAEHD).

Both expose the same interface, which swap, evaluate and train code against:

    z = model.encode(x)               # x: (B, 3, R, R) float in [0, 1]
    rgb, mask = model.decode(z, "a")  # (B, 3, R, R), (B, 1, R, R), both in [0, 1]
    rgb, mask = model(x, "b")         # reconstruct through side b
    rgb, mask = model.swap(x, "a")    # any face rendered as identity a
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from deepfake.config import ModelConfig
from deepfake.errors import DeepfakeError
from deepfake.models.blocks import ConvBlock, ResBlock, Upscale

SIDES = ("a", "b")
HEAD_CONVS = ("direct", "shift_add")
# Where head_conv=shift_add takes effect (when compiled): CUDA, where cuDNN's 5x5 convolution with 4
# outputs is slow. On the CPU the direct convolution is faster (a compiled tiny step on 2 cores: 203 faces/s
# direct, 150 shift-add; benchmarks/RESULTS.md).
SHIFT_ADD_DEVICES = ("cuda",)


def bottleneck_res(cfg: ModelConfig) -> int:
    """Side of the grid the dense bottleneck projects back to (before its own 2x upscale)."""
    return cfg.bottleneck_res or cfg.resolution // 2 ** (cfg.decoder_stages + 1)


def validate(cfg: ModelConfig) -> None:
    """One-line errors for configs that cannot build (checked before any allocation)."""
    r = cfg.resolution
    if not 64 <= r <= 512 or r % 16:
        raise DeepfakeError(f"model.resolution {r}: must be a multiple of 16 between 64 and 512")
    if cfg.arch not in ("df", "liae"):
        raise DeepfakeError(f"model.arch '{cfg.arch}': choose df or liae")
    if cfg.head_conv not in HEAD_CONVS:
        raise DeepfakeError(f"model.head_conv '{cfg.head_conv}': choose {' or '.join(HEAD_CONVS)}")
    if len(cfg.encoder_channels) != cfg.encoder_stages:
        raise DeepfakeError(f"model.encoder_channels has {len(cfg.encoder_channels)} entries for {cfg.encoder_stages} stages")
    if len(cfg.decoder_channels) != cfg.decoder_stages:
        raise DeepfakeError(f"model.decoder_channels has {len(cfg.decoder_channels)} entries for {cfg.decoder_stages} stages")
    if r % 2**cfg.encoder_stages:
        raise DeepfakeError(f"model.resolution {r} is not divisible by 2^{cfg.encoder_stages} encoder stages")
    low = bottleneck_res(cfg)
    if low < 1 or low * 2 ** (cfg.decoder_stages + 1) != r:
        raise DeepfakeError(
            f"model: bottleneck {low}px x 2^{cfg.decoder_stages + 1} upscales != resolution {r} "
            "(set bottleneck_res to 0 for automatic, or change decoder_stages)"
        )


class Encoder(nn.Module):
    """Strided 5x5 convolutions: (B, 3, R, R) -> (B, C * (R / 2^stages)^2), flattened."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers, c = [], 3
        for o in cfg.encoder_channels:
            layers.append(ConvBlock(c, o, cfg.activation, cfg.norm))
            c = o
        self.body = nn.Sequential(*layers)
        self.out_features = c * (cfg.resolution // 2**cfg.encoder_stages) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1)  # (B, C*h*w)


class Inter(nn.Module):
    """Dense latent and back: (B, F) -> latent_dims -> (B, Cb, r, r) -> upscale -> (B, Cb, 2r, 2r)."""

    def __init__(self, in_features: int, cfg: ModelConfig):
        super().__init__()
        self.res = bottleneck_res(cfg)
        self.channels = cfg.bottleneck_channels
        self.dense1 = nn.Linear(in_features, cfg.latent_dims)
        self.dense2 = nn.Linear(cfg.latent_dims, self.res * self.res * self.channels)
        self.up = Upscale(self.channels, self.channels, cfg.activation, cfg.norm)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = self.dense2(self.dense1(h))  # (B, Cb*r*r)
        z = z.view(-1, self.channels, self.res, self.res)  # (B, Cb, r, r)
        return self.up(z)  # (B, Cb, 2r, 2r)


class Decoder(nn.Module):
    """Upscale blocks (optionally each followed by a residual block), then RGB + a learned mask."""

    def __init__(self, in_channels: int, cfg: ModelConfig):
        super().__init__()
        stages, c = [], in_channels
        for o in cfg.decoder_channels:
            stage = [Upscale(c, o, cfg.activation, cfg.norm)]
            if cfg.residual_blocks:
                stage.append(ResBlock(o, cfg.activation, cfg.norm))
            stages.append(nn.Sequential(*stage))
            c = o
        self.stages = nn.ModuleList(stages)
        self.to_rgb = nn.Conv2d(c, 3, 5, 1, 2)
        # The mask gets its own head so its gradient does not fight the colour channels for capacity.
        self.to_mask = nn.Conv2d(c, 1, 5, 1, 2) if cfg.learned_mask else None
        self.checkpoint = cfg.checkpoint_decoder
        self.head_conv = cfg.head_conv

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = z
        for stage in self.stages:
            if self.checkpoint and self.training and torch.is_grad_enabled():
                # Recompute activations in backward instead of storing them: 256-512 px fits small cards.
                x = checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)  # (B, C, 2H, 2W)
        y = self._heads(x)  # (B, 3 [+ 1], R, R)
        rgb = torch.sigmoid(y[:, :3])  # (B, 3, R, R)
        if self.to_mask is None:
            mask = torch.ones_like(rgb[:, :1])  # (B, 1, R, R)
        else:
            mask = torch.sigmoid(y[:, 3:4])  # (B, 1, R, R)
        return rgb, mask

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """to_rgb [and to_mask] as one convolution: (B, 3 [+ 1], R, R) before the sigmoids."""
        # shift_add only where compiled (eager, its 25 shifted sums are 25 passes over a large tensor) and
        # on a device where it pays.
        shift_add = (self.head_conv == "shift_add" and torch.compiler.is_compiling()
                     and x.device.type in SHIFT_ADD_DEVICES)
        return stacked_conv(x, [self.to_rgb] + ([self.to_mask] if self.to_mask is not None else []), shift_add)


def stacked_conv(x: torch.Tensor, convs: list[nn.Conv2d], shift_add: bool = False) -> torch.Tensor:
    """Convolutions of the same kernel and padding on the same input as one convolution of their stacked
    weights (the parameters stay separate): their outputs, concatenated along channels.

    The decoder's heads. cuDNN has no fast kernel for a 5x5 convolution with 3 or 1 output channels: on
    an H200, forward and backward of original64's two heads took 1.00 ms run one by one and 0.61 ms
    stacked, df256's 9.9 ms and 5.3 ms (benchmarks/kernel_choices.py; zero filters padding the stack to
    8 outputs were slower than 4). `shift_add` runs the stacked convolution as `shift_add_conv`."""
    weight = torch.cat([c.weight for c in convs])  # (sum of outputs, C, k, k)
    bias = torch.cat([c.bias for c in convs])
    if shift_add:
        return shift_add_conv(x, weight, bias)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        weight = weight.contiguous(memory_format=torch.channels_last)
    return F.conv2d(x, weight, bias, padding=convs[0].padding)


def shift_add_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A k x k convolution (stride 1, padding k // 2) with few outputs, as one matrix product to k*k*O
    channels per pixel and the sum of its k*k spatially shifted O-channel slices. The same FLOPs and
    result as `F.conv2d(x, weight, bias, padding=k // 2)`.

    The product is a GEMM with good shapes for tensor cores (B*H*W rows, C deep, k*k*O columns padded
    with zero columns to a multiple of 8, so each row is 16-byte aligned in bf16), run by cuBLAS rather
    than by cuDNN, whose autotuned pick ran df256's stacked heads at about 30 TFLOP/s on an H200
    (benchmarks/RESULTS.md, run 4). On channels_last input (B*H*W, C) is a view, not a copy. The shifted
    sums and their gradient are `_ShiftSum`. Eager, the sums are k*k passes over a k*k-times larger
    tensor: slower than the direct convolution. Compiled, they fuse into one pass (summed in float32,
    rounded once), and so does their gradient.

    x: (B, C, H, W); weight: (O, C, k, k), k odd; bias: (O,). Returns (B, O, H, W), channels_last."""
    o, c, k, k2 = weight.shape
    if k != k2 or k % 2 == 0:
        raise ValueError(f"shift_add_conv: needs a square kernel of odd size, got {k}x{k2}")
    n = k * k * o
    # (C, N'): column (ty*k + tx)*O + out holds the flipped tap weight[out, :, k-1-ty, k-1-tx] (see _ShiftSum).
    taps = F.pad(weight.flip(2, 3).permute(1, 2, 3, 0).reshape(c, n), (0, -n % 8))
    b, _, h, w = x.shape
    z = (x.permute(0, 2, 3, 1).reshape(b * h * w, c) @ taps).view(b, h, w, -1)  # (B, H, W, N')
    y = _ShiftSum.apply(z, k, o) + bias  # (B, H, W, O), float32 for bf16 z
    return y.to(z.dtype).permute(0, 3, 1, 2)  # (B, O, H, W)


class _ShiftSum(torch.autograd.Function):
    """y[n, i, j, c] = sum over ty, tx < k of z[n, i + p - ty, j + p - tx, (ty*k + tx)*O + c] (zero outside
    the image, p = k // 2): the shifted sums of `shift_add_conv`, with z's columns in flipped-tap order.

    Autograd's own gradient of these k*k slices is k*k masked selections for every element of z's
    gradient: on an H200 it ran df256's at 2.9 ms a call (benchmarks/RESULTS.md, run 5). The gradient is
    a gather, one read per element: dz[n, i, j, (ty*k + tx)*O + c] = y's gradient, zero-padded by p, at
    [n, i + ty, j + tx, c], i.e. its k x k windows (`Tensor.unfold`), which the flipped order makes a
    plain reshape of. Forward: z (B, H, W, N' >= k*k*O) -> (B, H, W, O), summed in float32 for a bf16 z."""

    # forward and setup_context apart: the form torch.func transforms need (the whole-step graph).
    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        z, k, o = inputs
        ctx.k, ctx.o, ctx.n, ctx.dtype = k, o, z.shape[-1], z.dtype

    @staticmethod
    def forward(z: torch.Tensor, k: int, o: int) -> torch.Tensor:
        b, h, w, _ = z.shape
        p = k // 2
        zp = F.pad(z, (0, 0, p, p, p, p))  # (B, H + 2p, W + 2p, N')
        acc = torch.promote_types(z.dtype, torch.float32)  # bf16 is summed in float32, as conv2d accumulates
        y = None
        for ty in range(k):
            for tx in range(k):
                t = (ty * k + tx) * o
                s = zp[:, k - 1 - ty:k - 1 - ty + h, k - 1 - tx:k - 1 - tx + w, t:t + o].to(acc)  # z[i+p-ty, j+p-tx]
                y = s if y is None else y + s
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        k, o, p = ctx.k, ctx.o, ctx.k // 2
        b, h, w, _ = grad.shape
        gp = F.pad(grad.to(ctx.dtype), (0, 0, p, p, p, p))  # (B, H + 2p, W + 2p, O)
        windows = gp.unfold(1, k, 1).unfold(2, k, 1)  # (B, H, W, O, k, k): [n, i, j, c, ty, tx] = gp[n, i + ty, j + tx, c]
        dz = windows.permute(0, 1, 2, 4, 5, 3).reshape(b, h, w, k * k * o)
        return F.pad(dz, (0, ctx.n - k * k * o)), None, None


def _side(side: str) -> str:
    s = str(side).lower()
    if s not in SIDES:
        raise DeepfakeError(f"unknown side '{side}' (choose a or b)")
    return s


class DFAutoencoder(nn.Module):
    """DF: shared encoder + bottleneck, one decoder per identity. Swapping = decoding with the other side."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        validate(cfg)
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.inter = Inter(self.encoder.out_features, cfg)
        self.decoder_a = Decoder(cfg.bottleneck_channels, cfg)
        self.decoder_b = Decoder(cfg.bottleneck_channels, cfg)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.inter(self.encoder(x))  # (B, Cb, 2r, 2r)

    def decode(self, z: torch.Tensor, side: str) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.decoder_a if _side(side) == "a" else self.decoder_b)(z)

    def forward(self, x: torch.Tensor, side: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode(self.encode(x), side)

    def swap(self, x: torch.Tensor, to_side: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode(self.encode(x), to_side)


class LIAEAutoencoder(nn.Module):
    """LIAE: shared encoder and decoder. `inter_AB` sees both identities, `inter_B` only B.

    Side a decodes [inter_AB(h), inter_AB(h)]; side b decodes [inter_B(h), inter_AB(h)]. Rendering any
    face as a therefore uses inter_AB only, which carries pose and expression but not B's identity code.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        validate(cfg)
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.inter_ab = Inter(self.encoder.out_features, cfg)
        self.inter_b = Inter(self.encoder.out_features, cfg)
        self.decoder = Decoder(2 * cfg.bottleneck_channels, cfg)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # (B, F)

    def decode(self, z: torch.Tensor, side: str) -> tuple[torch.Tensor, torch.Tensor]:
        ab = self.inter_ab(z)  # (B, Cb, 2r, 2r)
        first = ab if _side(side) == "a" else self.inter_b(z)
        return self.decoder(torch.cat([first, ab], dim=1))  # code: (B, 2Cb, 2r, 2r)

    def forward(self, x: torch.Tensor, side: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode(self.encode(x), side)

    def swap(self, x: torch.Tensor, to_side: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode(self.encode(x), to_side)


ARCHS: dict[str, type[nn.Module]] = {"df": DFAutoencoder, "liae": LIAEAutoencoder}


def build_autoencoder(cfg: ModelConfig) -> nn.Module:
    validate(cfg)
    return ARCHS[cfg.arch](cfg)

