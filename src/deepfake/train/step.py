"""One training step: the G phase, then the D phase (CycleGAN's `optimize_parameters`, StyleGAN's
Gmain / Dmain), as two explicit methods.

    G phase  D frozen. Reconstruct A with side a and B with side b; reconstruction loss, plus the
             adversarial term when gan_weight > 0. Only G's optimizer steps.
    D phase  G untouched. Real faces against the detached reconstructions; optional lazy R1.
             Only D's optimizer steps. With true face (likeness.py), the latent-code discriminator's
             phase follows, on the G phase's detached codes; only its optimizer steps.

A NaN/inf step is skipped on the device (fused Adam's `found_inf`) and counted, without a host sync.
`train.build.build` makes the step; nothing else constructs one.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from deepfake.config.choices import COMPILE_MODES
from deepfake.config import TrainConfig
from deepfake.errors import DeepfakeError
from deepfake.train import distributed as dist
from deepfake.train.augment import Augmented
from deepfake.train.likeness import Likeness, identity_loss
from deepfake.train.losses import d_accuracy, gan_d_loss, gan_g_loss, r1_penalty, reconstruction_loss

# G's logged terms, in the order `generator_phase` sums them, then D's and the true-face phase's.
G_TERMS = ("loss", "loss_a", "loss_b", "dssim_a", "dssim_b", "mse_a", "mse_b", "mask_a", "mask_b", "gan_g",
           "identity", "true_face_g")
D_TERMS = ("loss_d", "d_acc_real", "d_acc_fake", "loss_tf")


class BothSides(nn.Module):
    """One forward for both identities, so DDP and torch.compile see the whole G graph at once.

    With `one_pass`, the shared encoder runs once on both identities' faces stacked into one batch, and
    the result is split for the two decoders: the same arithmetic per face, half the encoder's kernels,
    each on twice the rows (benchmarks/RESULTS.md, "one pass for both sides")."""

    def __init__(self, autoencoder: nn.Module, one_pass: bool = True):
        super().__init__()
        self.autoencoder = autoencoder
        self.one_pass = one_pass

    def forward(self, x_a: torch.Tensor, x_b: torch.Tensor, swaps: bool = False):
        """Both reconstructions; with `swaps`, also A's faces rendered as B, B's rendered as A, and both
        sides' latent codes."""
        if self.one_pass:
            z_a, z_b = self.autoencoder.encode(torch.cat([x_a, x_b])).split([x_a.shape[0], x_b.shape[0]])
        else:
            z_a, z_b = self.autoencoder.encode(x_a), self.autoencoder.encode(x_b)
        rgb_a, mask_a = self.autoencoder.decode(z_a, "a")  # (B, 3, R, R), (B, 1, R, R)
        rgb_b, mask_b = self.autoencoder.decode(z_b, "b")
        if not swaps:
            return rgb_a, mask_a, rgb_b, mask_b, None
        swap_ab, _ = self.autoencoder.decode(z_a, "b")  # (B, 3, R, R): A's pose and expression, B's face
        swap_ba, _ = self.autoencoder.decode(z_b, "a")
        return rgb_a, mask_a, rgb_b, mask_b, (swap_ab, swap_ba, z_a, z_b)


def one_pass(cfg: TrainConfig) -> tuple[bool, bool]:
    """Whether the encoder and the discriminator see both identities (and D real and fake) in one batch:
    `cfg.batch_sides`, except for a network with batch norm, whose statistics would mix the batches."""
    return (cfg.batch_sides and cfg.model.norm != "batch", cfg.batch_sides and cfg.discriminator.norm != "batch")


def set_requires_grad(module: nn.Module | None, flag: bool) -> None:
    if module is not None:
        for p in module.parameters():
            p.requires_grad_(flag)




def resolve_compile_mode(cfg: TrainConfig, device: torch.device) -> str:
    """The torch.compile mode `cfg.compile_mode` means on `device`. "auto" is CUDA graphs
    (reduce-overhead) for models up to 128 px in a single process, where the step is a few milliseconds
    of many small kernels and launching them costs more than running them (benchmarks/RESULTS.md, "CUDA
    graphs"). Larger models keep the device busy on their own and skip the graphs' memory pool. DDP with
    CUDA graphs (collectives inside captured graphs) is untested, so it stays default under DDP."""
    mode = cfg.compile_mode
    if mode not in COMPILE_MODES:
        raise DeepfakeError(f"compile_mode '{mode}': choose one of {', '.join(COMPILE_MODES)}")
    if mode != "auto":
        return mode
    small = cfg.model.resolution <= 128
    return "reduce-overhead" if torch.device(device).type == "cuda" and small and dist.world_size() == 1 else "default"


class AdversarialStep:
    """The G and D phases of one training step, as two explicit methods."""

    def __init__(self, cfg: TrainConfig, autoencoder: nn.Module, discriminator: nn.Module | None,
                 opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer | None,
                 device: torch.device, amp_dtype: torch.dtype | None, likeness: Likeness | None = None):
        self.cfg, self.loss_cfg = cfg, cfg.loss
        self.autoencoder, self.discriminator = autoencoder, discriminator
        self.opt_g, self.opt_d = opt_g, opt_d
        self.likeness = likeness
        self.identity = likeness is not None and likeness.identity_net is not None and cfg.loss.identity_weight > 0
        self.true_face = likeness is not None and likeness.code_d is not None and cfg.loss.true_face_weight > 0
        self.device, self.amp_dtype = device, amp_dtype
        g_one_pass, self.d_one_pass = one_pass(cfg)
        self.g_model = dist.wrap_ddp(BothSides(autoencoder, g_one_pass), device)
        # --compile: each phase's forward *and* losses become one graph (AOTAutograd derives its
        # backward), so DSSIM, masks and the GAN terms are fused with the networks, not run eager.
        # compile_mode "reduce-overhead" replays the graphs as CUDA graphs; "auto" picks it where launch
        # overhead dominates (resolve_compile_mode).
        self.compile_mode = resolve_compile_mode(cfg, device) if cfg.compile else None
        compile_ = (lambda fn: torch.compile(fn, mode=self.compile_mode)) if cfg.compile else (lambda fn: fn)
        self.g_losses = compile_(self._g_losses)
        self.d_losses = compile_(self._d_losses)
        self.fused = bool(opt_g.defaults.get("fused"))  # fused Adam skips non-finite steps on the device
        self.cuda_graphs = self.compile_mode == "reduce-overhead"

    def _mark_step(self) -> None:
        """Tell the CUDA-graph trees that the outputs of earlier replays are no longer read (every one
        this step needs was consumed or cloned), so a replay may reuse their memory."""
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()

    def _own_grads(self, params: list[nn.Parameter], accum: int) -> None:
        """Before accumulating micro-batches under CUDA graphs, give every parameter a .grad of its own.

        Otherwise the first backward *installs* its gradient, which lives in the CUDA-graph pool, as
        .grad, and the next micro-batch's replay overwrites it: the sum would be g2 + g2, silently
        (pytorch/pytorch#169545). With a .grad already there, autograd adds into it in place.
        """
        if self.cuda_graphs and accum > 1:
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _finish(self, opt: torch.optim.Optimizer, params: list[nn.Parameter], loss: torch.Tensor,
                step: int = 0, salt: int = 0) -> torch.Tensor:
        """Clip, then step unless the loss or the gradients are non-finite; with lr_dropout, undo the
        update of a random share of the weights. Returns the skip flag (0/1). `step` and `salt` (which
        network) seed the dropout's draw."""
        bad = ~torch.isfinite(loss)
        if self.cfg.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
            bad = bad | ~torch.isfinite(norm)
        # Gradients are averaged over ranks, so one rank's NaN reaches all: every rank must skip together.
        bad = dist.all_reduce_max(bad.float())
        before = [p.detach().clone() for p in params] if self.cfg.lr_dropout > 0 else None
        if self.fused:
            opt.found_inf = bad  # fused Adam reads this and skips the update without a host sync
            opt.step()
            del opt.found_inf
        elif not bad.item():  # unfused optimizers only: this read waits for the device
            opt.step()
        if before is not None:
            self._drop_updates(params, before, step, salt)
        opt.zero_grad(set_to_none=True)
        return bad

    @torch.no_grad()
    def _drop_updates(self, params: list[nn.Parameter], before: list[torch.Tensor], step: int, salt: int) -> None:
        """DFL's learning-rate dropout: each weight keeps its old value with probability lr_dropout. The
        draw comes from a stream seeded by (seed, step, network), so a resumed run drops the same weights
        (Adam's moments update as usual, as in DFL, where the mask falls on the weight update alone)."""
        gen = torch.Generator(device=self.device).manual_seed((self.cfg.seed * 1_000_003 + step) * 4 + salt)
        for p, old in zip(params, before):
            keep_old = torch.rand(p.shape, generator=gen, device=p.device) < self.cfg.lr_dropout
            p.copy_(torch.where(keep_old, old, p))

    def _g_losses(self, a: Augmented, b: Augmented, use_gan: bool):
        """G's forward and loss on one micro-batch. Returns (loss, the logged G_TERMS, rgb_a, rgb_b,
        the latent codes (z_a, z_b) for the true-face phase or None)."""
        cfg = self.loss_cfg
        with self.autocast():
            rgb_a, mask_a, rgb_b, mask_b, swapped = self.g_model(a.inputs, b.inputs, self.identity or self.true_face)
            loss_a, terms_a = reconstruction_loss(rgb_a, mask_a, a.target, a.target_mask, a.landmarks, cfg)
            loss_b, terms_b = reconstruction_loss(rgb_b, mask_b, b.target, b.target_mask, b.landmarks, cfg)
            loss = loss_a + loss_b
            zero = torch.zeros((), device=loss.device)
            gan = identity = true_face = zero
            if use_gan:
                logits_a, logits_b = self._judge(rgb_a, rgb_b)
                gan = gan_g_loss(logits_a, cfg.gan_loss) + gan_g_loss(logits_b, cfg.gan_loss)
                loss = loss + cfg.gan_weight * gan
            if self.identity:
                # Each swap carries the pose of the face it came from: that face's target landmarks.
                swap_ab, swap_ba, _, _ = swapped
                targets = self.likeness.targets  # (2, 128): A, B
                identity = (identity_loss(self.likeness.embed(swap_ba, b.landmarks), targets[0])
                            + identity_loss(self.likeness.embed(swap_ab, a.landmarks), targets[1]))
                loss = loss + cfg.identity_weight * identity
            if self.true_face:
                true_face = gan_g_loss(self.likeness.code_d(swapped[3]), cfg.gan_loss)  # B's codes, judged as A's
                loss = loss + cfg.true_face_weight * true_face
        terms = torch.stack([
            loss.detach(), loss_a.detach(), loss_b.detach(),
            terms_a.get("dssim", zero), terms_b.get("dssim", zero),
            terms_a.get("mse", zero), terms_b.get("mse", zero),
            terms_a.get("mask", zero), terms_b.get("mask", zero), gan.detach(), identity.detach(), true_face.detach(),
        ]).float()  # (len(G_TERMS),)
        codes = (swapped[2], swapped[3]) if self.true_face else None
        return loss, terms, rgb_a, rgb_b, codes

    def _judge(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """D's logits for two batches: in one batched pass (`d_one_pass`) or one pass each."""
        if self.d_one_pass:
            return self.discriminator(torch.cat([x, y])).split([x.shape[0], y.shape[0]])
        return self.discriminator(x), self.discriminator(y)

    def _d_losses(self, real: torch.Tensor, fake: torch.Tensor, r1: bool):
        """D's loss on real targets against detached fakes (+ lazy R1). Returns (loss, real_logits, fake_logits)."""
        with self.autocast():
            real_logits, fake_logits = self._judge(real, fake)
            loss = gan_d_loss(real_logits, fake_logits, self.loss_cfg.gan_loss)
            if r1:
                # StyleGAN2's lazy regularisation: every r1_every steps, scaled to keep its weight.
                loss = loss + self.loss_cfg.r1_gamma / 2 * self.loss_cfg.r1_every * r1_penalty(real_logits, real)
        return loss, real_logits, fake_logits

    def generator_phase(self, batches_a: list[Augmented], batches_b: list[Augmented], step: int):
        """Update G only. Returns (per-step sums of the logged terms, detached fakes for the D phase)."""
        set_requires_grad(self.discriminator, False)  # D gets no gradient from G's loss
        set_requires_grad(self.likeness.code_d if self.true_face else None, False)
        use_gan = self.discriminator is not None and self.loss_cfg.gan_weight > 0 and step >= self.loss_cfg.gan_start_step
        accum = len(batches_a)
        logs = torch.zeros(len(G_TERMS), device=self.device)
        fakes = []  # per micro-batch: (rgb_a, rgb_b), plus (z_a, z_b) with true face, all detached
        total = torch.zeros((), device=self.device)
        params = list(self.autoencoder.parameters())
        self._own_grads(params, accum)
        for i, (a, b) in enumerate(zip(batches_a, batches_b)):
            sync = self.g_model.no_sync() if (i < accum - 1 and hasattr(self.g_model, "no_sync")) else contextlib.nullcontext()
            with sync:
                self._mark_step()
                loss, terms, rgb_a, rgb_b, code = self.g_losses(a, b, use_gan)
                (loss / accum).backward()
            total = total + loss.detach() / accum
            logs += terms.detach().float() / accum
            if self.cuda_graphs:
                # CUDA-graph outputs live in a static pool the next replay overwrites (grad_accum > 1).
                rgb_a, rgb_b = rgb_a.clone(), rgb_b.clone()
                code = tuple(z.clone() for z in code) if code is not None else None
            fakes.append(tuple(t.detach() for t in (rgb_a, rgb_b) + (code or ())))
        skipped = self._finish(self.opt_g, params, total, step, salt=0)
        return logs, skipped, fakes

    def step(self, batches_a: list[Augmented], batches_b: list[Augmented], step: int):
        """The G phase, the D phase, then the true-face phase. Returns (G's logged sums (len(G_TERMS),),
        G skipped, D's and the true-face phase's sums (len(D_TERMS),), D or true face skipped)."""
        g_logs, g_skip, fakes = self.generator_phase(batches_a, batches_b, step)
        d_logs, d_skip = self.discriminator_phase(batches_a, batches_b, fakes, step)
        tf_loss, tf_skip = self.true_face_phase(fakes, step)
        d_logs = d_logs + tf_loss * torch.eye(len(D_TERMS), device=self.device)[-1]  # loss_tf in its slot
        return g_logs, g_skip, d_logs, torch.maximum(d_skip, tf_skip)

    def true_face_phase(self, fakes: list[tuple[torch.Tensor, ...]], step: int = 0):
        """Update the latent-code discriminator only: A's detached codes are "real", B's "fake".
        Returns (its loss, skipped); zeros when true face is off."""
        zero = torch.zeros((), device=self.device)
        codes = [f[2:] for f in fakes if len(f) == 4]
        if not self.true_face or not codes:
            return zero, zero
        code_d, opt = self.likeness.code_d, self.likeness.opt_code
        set_requires_grad(code_d, True)
        params = list(code_d.parameters())
        total = zero
        for z_a, z_b in codes:
            with self.autocast():
                loss = gan_d_loss(code_d(z_a), code_d(z_b), self.loss_cfg.gan_loss)
            (loss / len(codes)).backward()
            total = total + loss.detach().float() / len(codes)
        dist.all_reduce_gradients(code_d.parameters())
        return total, self._finish(opt, params, total, step, salt=2)

    def discriminator_phase(self, batches_a: list[Augmented], batches_b: list[Augmented], fakes, step: int):
        """Update D only, on real targets against detached fakes. Returns sums of D_TERMS (loss_tf 0)."""
        if self.discriminator is None or self.loss_cfg.gan_weight <= 0:
            return torch.zeros(len(D_TERMS), device=self.device), torch.zeros((), device=self.device)
        set_requires_grad(self.discriminator, True)
        accum = len(batches_a)
        lazy_r1 = self.loss_cfg.r1_gamma > 0 and step % max(1, self.loss_cfg.r1_every) == 0
        logs = torch.zeros(len(D_TERMS), device=self.device)
        total = torch.zeros((), device=self.device)
        params = list(self.discriminator.parameters())
        self._own_grads(params, accum)
        for a, b, (fake_a, fake_b, *_) in zip(batches_a, batches_b, fakes):
            real = torch.cat([a.target, b.target])  # (2B, 3, R, R)
            fake = torch.cat([fake_a, fake_b])  # (2B, 3, R, R), no path back into G
            if lazy_r1:
                real = real.detach().requires_grad_(True)
            # R1 needs a double backward, which compiled graphs do not support: that step runs eager.
            d_losses = self._d_losses if lazy_r1 else self.d_losses
            self._mark_step()
            loss, real_logits, fake_logits = d_losses(real, fake, lazy_r1)
            (loss / accum).backward()
            total = total + loss.detach() / accum
            acc_real, acc_fake = d_accuracy(real_logits.detach(), fake_logits.detach())
            logs += torch.stack([loss.detach().float(), acc_real, acc_fake, torch.zeros_like(acc_real)]) / accum
        # D is not DDP-wrapped (R1 needs a double backward); average its gradients by hand.
        dist.all_reduce_gradients(self.discriminator.parameters())
        skipped = self._finish(self.opt_d, params, total, step, salt=1)
        return logs, skipped
