"""The training benchmark's reference: the encoder, decoder and discriminator shapes of a ModelConfig as
plain PyTorch modules, L1 + MSE [+ GAN] on random tensors, no data and no augmentation: what our step is
measured against (ratio_to_ref)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from harness import count_flops, peak_memory_gib, reset_peak, sig, timed

from deepfake.config import ModelConfig, TrainConfig


class RefUpscale(nn.Module):
    def __init__(self, i: int, o: int):
        super().__init__()
        self.conv = nn.Conv2d(i, o * 4, 3, 1, 1)

    def forward(self, x):
        return F.pixel_shuffle(F.leaky_relu(self.conv(x), 0.1), 2)  # (B, o, 2H, 2W)


class RefRes(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(c, c, 3, 1, 1), nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
        return F.leaky_relu(x + self.c2(F.leaky_relu(self.c1(x), 0.2)), 0.2)


class RefEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers, c = [], 3
        for o in cfg.encoder_channels:
            layers += [nn.Conv2d(c, o, 5, 2, 2), nn.LeakyReLU(0.1)]
            c = o
        self.body = nn.Sequential(*layers)
        self.low = cfg.bottleneck_res or cfg.resolution // 2 ** (cfg.decoder_stages + 1)
        self.ch = cfg.bottleneck_channels
        self.fc1 = nn.Linear(c * (cfg.resolution // 2**cfg.encoder_stages) ** 2, cfg.latent_dims)
        self.fc2 = nn.Linear(cfg.latent_dims, self.low**2 * self.ch)
        self.up = RefUpscale(self.ch, self.ch)

    def forward(self, x):
        z = self.fc2(self.fc1(self.body(x).flatten(1))).view(-1, self.ch, self.low, self.low)
        return self.up(z)  # (B, Cb, 2r, 2r)


class RefDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers, c = [], cfg.bottleneck_channels
        for o in cfg.decoder_channels:
            layers.append(RefUpscale(c, o))
            if cfg.residual_blocks:
                layers.append(RefRes(o))
            c = o
        self.body = nn.Sequential(*layers)
        self.rgb, self.mask = nn.Conv2d(c, 3, 5, 1, 2), nn.Conv2d(c, 1, 5, 1, 2)

    def forward(self, z):
        h = self.body(z)
        return torch.sigmoid(self.rgb(h)), torch.sigmoid(self.mask(h))


class RefPatchD(nn.Module):
    def __init__(self, channels: int, depth: int):
        super().__init__()
        layers, c = [], 3
        for i in range(depth):
            o = channels * 2 ** min(i, 3)
            layers += [nn.Conv2d(c, o, 4, 2, 1), nn.LeakyReLU(0.2)]
            c = o
        layers.append(nn.Conv2d(c, 1, 3, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


def build_reference(cfg: TrainConfig, device: torch.device, amp: torch.dtype | None, compile_: bool, batch: int):
    """A step function over random tensors, and the modules (for parameter counts)."""
    enc, dec_a, dec_b = RefEncoder(cfg.model), RefDecoder(cfg.model), RefDecoder(cfg.model)
    disc = RefPatchD(cfg.discriminator.channels, cfg.discriminator.depth) if cfg.loss.gan_weight > 0 else None
    mods = [m for m in (enc, dec_a, dec_b, disc) if m is not None]
    cl = device.type == "cuda" and cfg.channels_last
    for m in mods:
        m.to(device)
        if cl:
            m.to(memory_format=torch.channels_last)
    fused = device.type == "cuda"
    opt = torch.optim.Adam([p for m in (enc, dec_a, dec_b) for p in m.parameters()], cfg.lr, betas=cfg.betas, fused=fused)
    dopt = torch.optim.Adam(disc.parameters(), cfg.d_lr, betas=cfg.betas, fused=fused) if disc else None
    r = cfg.model.resolution

    def step(wa, ta, wb, tb):
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            pa, ma = dec_a(enc(wa))
            pb, mb = dec_b(enc(wb))
            loss = F.l1_loss(pa.float(), ta) + F.l1_loss(pb.float(), tb) + F.mse_loss(pa.float(), ta) + F.mse_loss(pb.float(), tb)
            loss = loss + 0.01 * (ma.float().mean() + mb.float().mean())  # the mask head takes part, as ours
            if disc is not None:
                loss = loss + 0.1 * F.softplus(-disc(pa)).mean() + 0.1 * F.softplus(-disc(pb)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if disc is not None:
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                dl = F.softplus(-disc(ta)).mean() + F.softplus(disc(pa.detach())).mean() \
                    + F.softplus(-disc(tb)).mean() + F.softplus(disc(pb.detach())).mean()
            dopt.zero_grad(set_to_none=True)
            dl.backward()
            dopt.step()
        return loss.detach()

    sets = []
    for _ in range(2):
        t = [torch.rand(batch, 3, r, r, device=device) for _ in range(4)]  # wa, ta, wb, tb
        if cl:
            t = [x.contiguous(memory_format=torch.channels_last) for x in t]
        sets.append(t)
    compiled = torch.compile(step) if compile_ else step
    return step, compiled, sets, mods


def measure_reference(cfg: TrainConfig, device: torch.device, amp, compiled: bool, batch: int, args, peak: float) -> dict:
    reset_peak(device)
    ref_eager, ref_step, sets, ref_mods = build_reference(cfg, device, amp, compiled, batch)
    ref_flops = count_flops(lambda: ref_eager(*sets[0]))
    for i in range(args.warmup):
        ref_step(*sets[i % 2])
    ref_s = timed(lambda i: ref_step(*sets[i % 2]), args.steps, device)
    return dict(
        # The reference runs as ANCHORS.md measured it: eager, or torch.compile in its default mode, also
        # beside a cudagraphs case (there the ratio is CUDA-graph replay against the anchors' best setting).
        ref_mode="compile" if compiled else "eager",
        ref_params_M=round(sum(p.numel() for m in ref_mods for p in m.parameters()) / 1e6, 2),
        ref_step_ms=round(ref_s * 1e3, 3),
        ref_gflop_per_step=sig(ref_flops / 1e9),
        ref_faces_per_s=round(2 * batch / ref_s, 1),
        ref_tflops=sig(ref_flops / ref_s / 1e12),
        ref_mfu_pct=sig(100 * ref_flops / ref_s / 1e12 / peak, 3),
        ref_peak_gib=round(peak_memory_gib(device), 2),
    )
