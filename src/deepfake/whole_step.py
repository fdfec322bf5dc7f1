"""The whole training step as one function of tensors: G's forward, losses and gradient, G's Adam update,
D's forward, losses and gradient, D's Adam update. `--compile-scope step` compiles it as one graph.

The two phases of `train.AdversarialStep` are compiled one forward-and-loss graph each, while
`loss.backward()`, gradient clipping and the fused Adam run outside them: Dynamo does not trace
`Tensor.backward()`, `requires_grad_()`, `Optimizer.zero_grad` or the fused optimizer's kernel, so a
`torch.compile` of that code splits into many graphs. Here the gradients come from `torch.func.grad`
over the parameters (R1's double backward from a nested `torch.func.vjp`), and clipping, the non-finite
skip and Adam are tensor arithmetic, so Dynamo traces all of it into a single graph (`fullgraph=True`
refuses any break). The parameters and the optimizers' moments are updated in place, in the same
`torch.optim` state the checkpoints save, so a run may switch scope on resume.

Under torchrun each rank's gradients are averaged inside the graph by functional collectives (DDP's
hooks live in autograd's backward, which is not used here), the non-finite skip is agreed by all ranks the
same way, and the weights are broadcast from rank 0 at the start, as DDP does.

Buffers (batch norm's running statistics) are inputs of the transformed functions, not captured:
`torch.func.grad` refuses a function that mutates a captured tensor in place. What it does not support,
with a clear error: decoder checkpointing (`torch.func` has no saved-tensor hooks; DSSIM's own
recomputation is skipped inside the transform for the same reason), and R1 with a batch-norm
discriminator (the inner transform of R1 would mutate a captured buffer, and an integer one,
`num_batches_tracked`, cannot be made an input of a gradient transform).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import torch
from torch import nn

from deepfake import distributed as dist
from deepfake.augment import Augmented
from deepfake.errors import DeepfakeError
from deepfake.losses import d_accuracy, gan_d_loss

if TYPE_CHECKING:
    from deepfake.train import AdversarialStep

log = logging.getLogger(__name__)

COMPILE_SCOPES = ("phases", "step")


# ----------------------------------------------------------------------------------------------------
# Optimizer arithmetic (pure tensor code, traceable).


def clip_grads(grads: list[torch.Tensor], max_norm: float) -> tuple[list[torch.Tensor], torch.Tensor]:
    """`torch.nn.utils.clip_grad_norm_` as a function: (scaled gradients, their total norm before)."""
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    return [g * coef.to(g.dtype) for g in grads], norm


@torch.no_grad()
def adam_update_(params: list[torch.Tensor], grads: list[torch.Tensor], state: list[dict[str, torch.Tensor]], *,
                 lr: torch.Tensor, betas: tuple[float, float], eps: float, weight_decay: float, decoupled: bool,
                 skip: torch.Tensor) -> None:
    """One Adam (`decoupled`: AdamW) step in place, as torch.optim's computes it, unless `skip` (a 0-d
    bool tensor) is set: then nothing changes, the step counts included (what fused Adam does with
    `found_inf`). Without a host sync: the skip is a select on the device, not a branch."""
    beta1, beta2 = betas
    keep = ~skip
    for p, g, s in zip(params, grads, state):
        m, v, t = s["exp_avg"], s["exp_avg_sq"], s["step"]
        g = torch.where(keep, g, torch.zeros_like(g))  # a skipped step's gradient may be NaN
        if weight_decay and not decoupled:
            g = g + weight_decay * p
        t_new = t + keep.to(t.dtype)
        m_new = m.lerp(g, 1 - beta1)
        v_new = v * beta2 + (1 - beta2) * g * g
        # The bias corrections in float64, as torch.optim computes them: 1 - 0.999 ** t rounded in float32
        # is 1.3e-5 off at t = 1, which would scale every early step.
        t64 = t_new.double()
        step_size = (lr / (1 - torch.pow(beta1, t64))).to(p.dtype)
        bias2_sqrt = (1 - torch.pow(beta2, t64)).sqrt().to(p.dtype)
        base = p * (1 - lr * weight_decay).to(p.dtype) if (weight_decay and decoupled) else p
        p_new = base - step_size * m_new / (v_new.sqrt() / bias2_sqrt + eps)
        p.copy_(torch.where(keep, p_new, p))
        m.copy_(torch.where(keep, m_new, m))
        v.copy_(torch.where(keep, v_new, v))
        t.copy_(t_new)


def adam_state(opt: torch.optim.Optimizer) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]], dict]:
    """The parameters of a one-group Adam/AdamW and their state, created where missing the way fused
    Adam creates it (moments like the parameter, a float32 step count on its device), so a checkpoint
    written from here loads into either scope."""
    if not isinstance(opt, (torch.optim.Adam, torch.optim.AdamW)) or len(opt.param_groups) != 1:
        raise DeepfakeError("compile_scope 'step': needs one Adam or AdamW parameter group")
    group = opt.param_groups[0]
    if group.get("amsgrad") or group.get("maximize"):
        raise DeepfakeError("compile_scope 'step': amsgrad and maximize are not supported")
    params = list(group["params"])
    for p in params:
        s = opt.state[p]
        if not s:
            s["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
            s["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            s["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        elif s["step"].device != p.device:  # a non-fused Adam keeps its count on the host
            s["step"] = s["step"].to(device=p.device, dtype=torch.float32)
    return params, [opt.state[p] for p in params], group


# ----------------------------------------------------------------------------------------------------
# The step.


class _Nets(nn.Module):
    """G (both sides) and D under one root, so `torch.func.functional_call` can swap the parameters of
    both for one call. Its forward runs `fn` with the swapped parameters in place."""

    def __init__(self, g: nn.Module, d: nn.Module | None):
        super().__init__()
        self.g = g
        if d is not None:
            self.d = d

    def forward(self, fn, *args):
        return fn(*args)


def _flat(batches: list[Augmented]) -> tuple[tuple[torch.Tensor, ...], ...]:
    return tuple((b.inputs, b.target, b.target_mask, b.landmarks) for b in batches)


class WholeStep:
    """G and D phases of one step as one call (`step`): eager, or compiled as one graph."""

    def __init__(self, phases: AdversarialStep, compile_mode: str | None, backend: str = "inductor"):
        """`compile_mode` None runs the step eager. `backend` "aot_eager" traces the same one graph but
        runs it without generating kernels: a quick check of the tracing (tests)."""
        check_supported(phases.cfg)
        if hasattr(phases.g_model, "no_sync"):
            raise DeepfakeError("the whole step averages gradients itself: build its phases with ddp=False")
        self.phases = phases
        for net in (phases.autoencoder, phases.discriminator):
            if net is not None:
                dist.broadcast_parameters(net)  # every rank starts from rank 0's weights, as DDP makes it
        self.nets = _Nets(phases.g_model, phases.discriminator)
        self.g_params, self.g_state, self.g_group = adam_state(phases.opt_g)
        self.d_params, self.d_state, self.d_group = (adam_state(phases.opt_d) if phases.opt_d is not None
                                                     else ([], [], {}))
        names = {id(p): n for n, p in self.nets.named_parameters()}
        self.g_names = [names[id(p)] for p in self.g_params]
        self.d_names = [names[id(p)] for p in self.d_params]
        self.buffers = dict(self.nets.named_buffers())  # G's and D's: batch norm's statistics, if any
        self.decoupled = isinstance(phases.opt_g, torch.optim.AdamW)
        device = phases.device
        # Tensors, so a new learning rate is no recompile; float64, as torch.optim holds it (a Python float).
        self.lr_g = torch.zeros((), dtype=torch.float64, device=device)
        self.lr_d = torch.zeros((), dtype=torch.float64, device=device)
        self.compile_mode = compile_mode
        self.cuda_graphs = compile_mode == "reduce-overhead"
        self._compiled: dict[tuple[bool, bool, bool], float] = {}  # variant -> seconds its first call took
        self._lrs: tuple = (None, None)  # the values lr_g and lr_d hold
        if compile_mode is not None:
            # The parameters, the moments and the learning rates are updated in place at fixed addresses,
            # marked as the compiled torch.optim marks its state, so CUDA graphs may replay over them.
            states = [t for s in self.g_state + self.d_state for t in s.values()]
            for t in self.g_params + self.d_params + list(self.buffers.values()) + states:
                torch._dynamo.mark_static_address(t)
            torch._dynamo.mark_static_address(self.lr_g)
            torch._dynamo.mark_static_address(self.lr_d)
            mode = compile_mode if backend == "inductor" else None  # modes are inductor's
            self._run = torch.compile(self._step, backend=backend, mode=mode, fullgraph=True)
        else:
            self._run = self._step

    def autocast(self):
        return self.phases.autocast()

    def step(self, batches_a: list[Augmented], batches_b: list[Augmented], step: int):
        """Returns (G's logged sums (10,), G skipped, D's logged sums (3,), D skipped), as the phases do."""
        loss_cfg = self.phases.loss_cfg
        has_d = self.phases.discriminator is not None and loss_cfg.gan_weight > 0
        use_gan = has_d and step >= loss_cfg.gan_start_step
        lazy_r1 = has_d and loss_cfg.r1_gamma > 0 and step % max(1, loss_cfg.r1_every) == 0
        lrs = (self.g_group["lr"], self.d_group["lr"] if has_d else None)
        if lrs[0] != self._lrs[0]:  # a kernel only when the rate changes (a warm-up), not every step
            self.lr_g.fill_(lrs[0])
        if has_d and lrs[1] != self._lrs[1]:
            self.lr_d.fill_(lrs[1])
        self._lrs = lrs
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        variant = (use_gan, has_d, lazy_r1)
        first = self.compile_mode is not None and variant not in self._compiled
        t0 = time.perf_counter()
        with torch.no_grad():  # gradients come from torch.func, which ignores this; autograd records nothing
            out = self._run(_flat(batches_a), _flat(batches_b), use_gan, has_d, lazy_r1)
        if first:  # each variant of the step (GAN term on or off, R1 or not) is a graph of its own
            self._compiled[variant] = time.perf_counter() - t0  # host time of the first call: the compile
            log.info("whole step compiled (gan %s, r1 %s) in %.1f s", use_gan, lazy_r1, self._compiled[variant])
        return out

    # The traced function. Everything below is one graph under torch.compile.

    def _g_loss(self, g_params: dict, buffers: dict, a: Augmented, b: Augmented, use_gan: bool, accum: int):
        loss, terms, rgb_a, rgb_b = torch.func.functional_call(self.nets, {**g_params, **buffers},
                                                               (self.phases._g_losses, a, b, use_gan))
        return loss / accum, (loss, terms, rgb_a, rgb_b)

    def _judge(self, d_params: dict, x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self.nets, d_params, (self.phases.discriminator, x))

    def _d_loss(self, d_params: dict, buffers: dict, real: torch.Tensor, fake: torch.Tensor, r1: bool, accum: int):
        """D's loss on real targets against detached fakes, + lazy R1 by a nested vjp (the penalty's
        gradient with respect to D's parameters is then a double backward, which torch.func traces)."""
        loss_cfg = self.phases.loss_cfg
        d_params = {**d_params, **buffers}
        with self.phases.autocast():
            if r1:  # (D has no buffers here: check_supported refuses R1 with a batch-norm D)
                real_logits, vjp = torch.func.vjp(lambda x: self._judge(d_params, x), real)
                fake_logits = self._judge(d_params, fake)
            elif self.phases.d_one_pass:
                real_logits, fake_logits = self._judge(d_params, torch.cat([real, fake])).split([real.shape[0], fake.shape[0]])
            else:
                real_logits, fake_logits = self._judge(d_params, real), self._judge(d_params, fake)
            loss = gan_d_loss(real_logits, fake_logits, loss_cfg.gan_loss)
            if r1:
                (grad,) = vjp(torch.ones_like(real_logits))  # d(sum of real logits)/d(real)
                penalty = grad.float().pow(2).flatten(1).sum(1).mean()
                loss = loss + loss_cfg.r1_gamma / 2 * loss_cfg.r1_every * penalty
        return loss / accum, (loss, real_logits, fake_logits)

    def _finish(self, params, state, grads, total, lr, group) -> torch.Tensor:
        """Average the gradients over ranks, clip, and update unless any rank's loss or the gradients are
        non-finite (then every rank skips). Returns the skip flag (0/1)."""
        grads = dist.mean_over_ranks(grads)
        bad = dist.all_reduce_max((~torch.isfinite(total)).float()) > 0
        clip = self.phases.cfg.grad_clip
        if clip > 0:
            grads, norm = clip_grads(grads, clip)
            bad = bad | ~torch.isfinite(norm)
        adam_update_(params, grads, state, lr=lr, betas=group["betas"], eps=group["eps"],
                     weight_decay=group["weight_decay"], decoupled=self.decoupled, skip=bad)
        return bad.float()

    def _step(self, flat_a, flat_b, use_gan: bool, has_d: bool, lazy_r1: bool):
        device = self.phases.device
        accum = len(flat_a)
        batches_a = [Augmented(*t) for t in flat_a]
        batches_b = [Augmented(*t) for t in flat_b]

        # G phase: D's parameters are constants here (only G's are differentiated).
        g_params = dict(zip(self.g_names, self.g_params))
        g_grad = torch.func.grad(self._g_loss, has_aux=True)
        grads, total, logs, fakes = None, torch.zeros((), device=device), torch.zeros(10, device=device), []
        for a, b in zip(batches_a, batches_b):
            gs, (loss, terms, rgb_a, rgb_b) = g_grad(g_params, self.buffers, a, b, use_gan, accum)
            grads = gs if grads is None else {k: grads[k] + gs[k] for k in grads}
            total = total + loss.detach() / accum
            logs = logs + terms.float() / accum
            fakes.append(torch.cat([rgb_a, rgb_b]))
        g_skip = self._finish(self.g_params, self.g_state, [grads[k] for k in self.g_names], total, self.lr_g, self.g_group)
        if not has_d:
            return logs, g_skip, torch.zeros(3, device=device), torch.zeros((), device=device)

        # D phase: on real targets against the fakes made before G's update (as the phases do).
        d_params = dict(zip(self.d_names, self.d_params))
        d_grad = torch.func.grad(self._d_loss, has_aux=True)
        grads, total, d_logs = None, torch.zeros((), device=device), torch.zeros(3, device=device)
        for a, b, fake in zip(batches_a, batches_b, fakes):
            real = torch.cat([a.target, b.target])  # (2B, 3, R, R)
            gs, (loss, real_logits, fake_logits) = d_grad(d_params, self.buffers, real, fake, lazy_r1, accum)
            grads = gs if grads is None else {k: grads[k] + gs[k] for k in grads}
            total = total + loss / accum
            acc_real, acc_fake = d_accuracy(real_logits, fake_logits)
            d_logs = d_logs + torch.stack([loss.float(), acc_real, acc_fake]) / accum
        d_skip = self._finish(self.d_params, self.d_state, [grads[k] for k in self.d_names], total, self.lr_d, self.d_group)
        return logs, g_skip, d_logs, d_skip


def check_supported(cfg) -> None:
    """Raise a one-line DeepfakeError for a TrainConfig the whole step cannot run."""
    if cfg.loss.gan_weight > 0 and cfg.loss.r1_gamma > 0 and cfg.discriminator.norm == "batch":
        raise DeepfakeError("compile_scope 'step' does not support R1 (loss.r1_gamma) with a batch-norm discriminator "
                            "(R1's inner gradient cannot take its integer batch count): use compile_scope 'phases'")
    if cfg.model.checkpoint_decoder:
        raise DeepfakeError("compile_scope 'step' does not support checkpoint_decoder (torch.func has no "
                            "saved-tensor hooks): use compile_scope 'phases'")


def check_scope(scope: str) -> str:
    if scope not in COMPILE_SCOPES:
        raise DeepfakeError(f"compile_scope '{scope}': choose one of {', '.join(COMPILE_SCOPES)}")
    return scope

