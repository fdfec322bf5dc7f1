"""compile_scope "step" (deepfake.whole_step): the whole G+D step, both Adam updates included, as one
function. Its Adam is torch.optim's, its step is the two phases' on real faces (float64: to rounding),
compiled it is one graph with eager's losses, and `deepfake train` trains, resumes and switches scope."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from deepfake import whole_step
from deepfake.augment import Augmented, no_augment
from deepfake.data import FaceCache
from deepfake.errors import DeepfakeError
from deepfake.models import build_autoencoder, build_discriminator, preset_config
from deepfake.train import AdversarialStep, make_optimizer, make_step, read_metrics, train
from deepfake.whole_step import WholeStep, adam_update_, clip_grads

from test_compile import compiler_problem

CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    yield


def tiny(**kw):
    return dataclasses.replace(preset_config("tiny"), device="cpu", amp="off", **kw)


def with_gan(cfg, **loss):
    return dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, gan_weight=0.1, **loss))


@pytest.fixture(scope="module")
def real_faces(faceset_a, faceset_b):
    """(4 + 4 faces of A, 4 + 4 of B) at 64 px, un-augmented: two micro-batches per side."""
    a = FaceCache.from_faceset(faceset_a, 64, progress=False)
    b = FaceCache.from_faceset(faceset_b, 64, progress=False)
    side = lambda c, s: no_augment(c.images[s], c.masks[s], c.landmarks[s])  # noqa: E731
    return [side(a, slice(0, 4)), side(a, slice(4, 8))], [side(b, slice(0, 4)), side(b, slice(4, 8))]


def _as(batches: list[Augmented], dtype) -> list[Augmented]:
    return [Augmented(b.inputs.to(dtype), b.target.to(dtype), b.target_mask.to(dtype), b.landmarks.to(dtype)) for b in batches]


# ----------------------------------------------------------------------------------------------------
# The optimizer arithmetic against torch.optim.


@pytest.mark.parametrize("kind,decay", [("adam", 0.0), ("adam", 0.01), ("adamw", 0.01)])
def test_adam_update_equals_torch_optim(kind, decay):
    gen = torch.Generator().manual_seed(0)
    ours = [torch.randn(s, generator=gen, dtype=torch.float64) for s in ((8, 3, 3, 3), (8,), (5, 7))]
    theirs = [torch.nn.Parameter(p.clone()) for p in ours]
    opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[kind]
    opt = opt_cls(theirs, lr=5e-4, betas=(0.5, 0.999), weight_decay=decay)
    # Our moments and step counts live in an optimizer's state, as in training: adam_state creates them.
    holder = opt_cls([torch.nn.Parameter(p.clone()) for p in ours], lr=5e-4, betas=(0.5, 0.999), weight_decay=decay)
    _, state, group = whole_step.adam_state(holder)
    for step in range(5):
        grads = [torch.randn(p.shape, generator=gen, dtype=torch.float64) * 10.0 ** -step for p in ours]
        for p, g in zip(theirs, grads):
            p.grad = g.clone()
        opt.step()
        adam_update_(ours, grads, state, lr=torch.tensor(5e-4, dtype=torch.float64), betas=(0.5, 0.999), eps=group["eps"],
                     weight_decay=decay, decoupled=kind == "adamw", skip=torch.tensor(False))
        for p, q in zip(ours, theirs):
            torch.testing.assert_close(p, q.detach(), rtol=1e-13, atol=1e-16)
        for s, p in zip(state, theirs):
            torch.testing.assert_close(s["exp_avg"], opt.state[p]["exp_avg"], rtol=1e-13, atol=1e-16)
            torch.testing.assert_close(s["exp_avg_sq"], opt.state[p]["exp_avg_sq"], rtol=1e-13, atol=1e-20)
            assert float(s["step"]) == float(opt.state[p]["step"]) == step + 1


def test_a_skipped_update_changes_nothing_not_even_the_step_count():
    """What fused Adam does with found_inf, and what the phases rely on for a non-finite loss."""
    p = torch.nn.Parameter(torch.randn(6, dtype=torch.float64))
    opt = torch.optim.Adam([p], lr=1e-3)
    params, state, _ = whole_step.adam_state(opt)
    kw = dict(lr=torch.tensor(1e-3), betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False)
    adam_update_(params, [torch.ones(6, dtype=torch.float64)], state, skip=torch.tensor(False), **kw)
    before = [p.detach().clone()] + [t.clone() for t in state[0].values()]
    adam_update_(params, [torch.full((6,), float("nan"), dtype=torch.float64)], state, skip=torch.tensor(True), **kw)
    after = [p.detach()] + list(state[0].values())
    assert all(torch.equal(x, y) for x, y in zip(before, after))
    adam_update_(params, [torch.ones(6, dtype=torch.float64)], state, skip=torch.tensor(False), **kw)
    assert float(state[0]["step"]) == 2 and not torch.equal(p.detach(), before[0])


def test_clip_grads_equals_clip_grad_norm():
    gen = torch.Generator().manual_seed(1)
    grads = [torch.randn(s, generator=gen, dtype=torch.float64) for s in ((4, 4), (9,))]
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for max_norm in (0.5, 100.0):  # clipped, and left alone
        for p, g in zip(params, grads):
            p.grad = g.clone()
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        ours, our_norm = clip_grads(grads, max_norm)
        torch.testing.assert_close(our_norm, norm)
        for p, g in zip(params, ours):
            torch.testing.assert_close(g, p.grad, rtol=1e-14, atol=0)


# ----------------------------------------------------------------------------------------------------
# The step against the two phases, on real faces.


def _pair(cfg, dtype=torch.float32, amp=None, channels_last=False):
    """The same freshly initialised G and D (and their optimizers) twice: for the phases, and for the whole
    step. `amp`: the autocast dtype both run under (None: off). `channels_last`: the weights in that
    layout, as training keeps them on CUDA."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.preserve_format
    ae = build_autoencoder(cfg.model).to(dtype, memory_format=fmt)
    d = build_discriminator(cfg.discriminator, cfg.model.resolution).to(dtype, memory_format=fmt) if cfg.loss.gan_weight > 0 else None
    out = []
    for _ in range(2):
        ae2, d2 = copy.deepcopy(ae), copy.deepcopy(d)
        opt_g = make_optimizer(cfg, ae2.parameters(), cfg.lr, CPU)
        opt_d = make_optimizer(cfg, d2.parameters(), cfg.d_lr, CPU) if d2 is not None else None
        out.append(AdversarialStep(cfg, ae2, d2, opt_g, opt_d, CPU, amp))
    return out[0], WholeStep(out[1], None)


@pytest.mark.parametrize("setting", ["plain", "r1+clip+accum+adamw", "batchnorm", "channels_last"])
def test_whole_step_equals_the_two_phases_on_real_faces(real_faces, setting):
    """Three steps in float64: the logged losses, the weights and Adam's moments agree to rounding (rel 1e-8,
    far below float32's 1.2e-7: the same arithmetic, summed in another order at most).
    R1 (every 2nd step) is a nested vjp here and autograd's double backward there. channels_last: the
    weights and inputs in the layout CUDA training uses, which the in-place updates must keep."""
    faces_a, faces_b = real_faces
    cfg = with_gan(tiny(batch=4))
    if setting == "r1+clip+accum+adamw":
        cfg = with_gan(tiny(batch=4, grad_clip=0.05, grad_accum=2, optimizer="adamw", weight_decay=0.01), r1_gamma=10.0, r1_every=2)
    elif setting == "batchnorm":  # running statistics updated in G's forward, and in D's in both phases
        cfg = with_gan(tiny(batch=4))
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, norm="batch"),
                                  discriminator=dataclasses.replace(cfg.discriminator, norm="batch"))
    accum = cfg.grad_accum
    a, b = _as(faces_a[:accum], torch.float64), _as(faces_b[:accum], torch.float64)
    last = setting == "channels_last"
    if last:
        for x in a + b:
            x.inputs = x.inputs.contiguous(memory_format=torch.channels_last)
    phases, whole = _pair(cfg, torch.float64, channels_last=last)
    for step in range(3):
        want = phases.step(a, b, step)
        got = whole.step(a, b, step)
        for name, x, y in zip(("G logs", "G skipped", "D logs", "D skipped"), got, want):
            torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7, msg=f"step {step}: {name}")  # logs are float32
    nets = lambda s: list(s.autoencoder.parameters()) + list(s.discriminator.parameters())  # noqa: E731
    moved = max((p - q).abs().max().item() for p, q in zip(nets(phases), nets(_pair(cfg, torch.float64)[0])))
    assert moved > 1e-4  # three steps trained the weights, so the comparison below compares trained models
    for p, q in zip(nets(phases), nets(whole.phases)):
        torch.testing.assert_close(q, p, rtol=1e-8, atol=1e-11)
        assert q.stride() == p.stride()  # updated in place, in the layout it had
    if last:
        convs = [q for q in nets(whole.phases) if q.dim() == 4 and q.shape[1] > 1 and q.shape[2] > 1]
        assert convs and all(q.is_contiguous(memory_format=torch.channels_last) for q in convs)
    bufs = lambda s: list(s.autoencoder.buffers()) + list(s.discriminator.buffers())  # noqa: E731
    assert (len(bufs(phases)) > 0) == (setting == "batchnorm")
    for p, q in zip(bufs(phases), bufs(whole.phases)):
        torch.testing.assert_close(q, p, rtol=1e-8, atol=1e-11)
    for opt_p, opt_w in ((phases.opt_g, whole.phases.opt_g), (phases.opt_d, whole.phases.opt_d)):
        for p, q in zip(opt_p.param_groups[0]["params"], opt_w.param_groups[0]["params"]):
            torch.testing.assert_close(opt_w.state[q]["exp_avg"], opt_p.state[p]["exp_avg"], rtol=1e-9, atol=1e-15)
            assert float(opt_w.state[q]["step"]) == float(opt_p.state[p]["step"]) == 3


def test_a_non_finite_loss_skips_both_updates_on_the_device(real_faces):
    faces_a, faces_b = real_faces
    _, whole = _pair(with_gan(tiny(batch=4)))
    poisoned = [dataclasses.replace(faces_a[0], inputs=faces_a[0].inputs.clone())]
    poisoned[0].inputs[0, 0, 0, 0] = float("nan")
    before = [p.detach().clone() for p in whole.phases.autoencoder.parameters()]
    g_logs, g_skip, d_logs, d_skip = whole.step(poisoned, faces_b[:1], 0)
    assert float(g_skip) == 1 and float(d_skip) == 1  # G's NaN fakes reach D's loss too
    assert all(torch.equal(p, q) for p, q in zip(before, whole.phases.autoencoder.parameters()))
    assert all(int(s["step"]) == 0 for s in whole.phases.opt_g.state.values())
    _, g_skip, _, _ = whole.step(faces_a[:1], faces_b[:1], 1)
    assert float(g_skip) == 0 and not all(torch.equal(p, q) for p, q in zip(before, whole.phases.autoencoder.parameters()))


def _compiled_matches_eager(cfg, backend: str, steps: int, faces, amp=None, rtol=1e-4, atol=1e-5) -> dict:
    """Run the eager and the compiled whole step side by side from the same weights; return Dynamo's
    counters for the compiled one."""
    from torch._dynamo.utils import counters

    a, b = faces
    _, eager = _pair(cfg, amp=amp)
    compiled = WholeStep(_pair(cfg, amp=amp)[0], "default", backend=backend)
    torch._dynamo.reset()
    counters.clear()
    for step in range(steps):
        e = torch.cat([t.view(-1) for t in eager.step(a, b, step)])
        c = torch.cat([t.view(-1) for t in compiled.step(a, b, step)])
        torch.testing.assert_close(c, e, rtol=rtol, atol=atol, msg=f"step {step}")
    assert e[0] != eager.step(a, b, steps)[0][0]  # the steps trained: later steps compared trained models
    return {"graphs": counters["stats"]["unique_graphs"], "breaks": dict(counters["graph_break"])}


def test_compiled_whole_step_is_one_graph_with_eagers_losses(real_faces):
    """Inductor, as `--compile --compile-scope step` runs it: fullgraph=True refuses any graph break, and
    Dynamo's counter confirms one graph for the step, G and D and both updates. Losses as the eager
    whole step's (float32; fused kernels reorder sums)."""
    problem = compiler_problem()
    if problem:
        pytest.skip(problem)
    faces_a, faces_b = real_faces
    seen = _compiled_matches_eager(with_gan(tiny(batch=4)), "inductor", 2, (faces_a[:1], faces_b[:1]))
    assert seen == {"graphs": 1, "breaks": {}}


def test_whole_step_with_r1_and_accumulation_traces_as_one_graph(real_faces):
    """R1's double backward (a vjp inside the gradient) and two micro-batches, traced by Dynamo and
    AOTAutograd into one graph per variant (the R1 step is one, the others another) and run by
    aot_eager: the tracing without inductor's minutes of kernel generation on a CPU."""
    faces_a, faces_b = real_faces
    cfg = with_gan(tiny(batch=4, grad_accum=2, grad_clip=0.05), r1_gamma=1.0, r1_every=2)
    seen = _compiled_matches_eager(cfg, "aot_eager", 3, (faces_a, faces_b))  # steps: R1, plain, R1
    assert seen == {"graphs": 2, "breaks": {}}


def test_whole_step_under_bf16_autocast_traces_as_one_graph(real_faces):
    """The autocast region inside torch.func.grad, as CUDA training runs the step (bf16), here under the
    CPU's bf16 autocast: traced by Dynamo and AOTAutograd as one graph with no break (aot_eager), and
    the losses as the eager whole step's within bf16 tolerance. The CUDA test says the same on a GPU."""
    faces_a, faces_b = real_faces
    cfg = with_gan(tiny(batch=4, grad_clip=1.0))
    seen = _compiled_matches_eager(cfg, "aot_eager", 2, (faces_a[:1], faces_b[:1]), amp=torch.bfloat16, rtol=2e-2, atol=1e-2)
    assert seen == {"graphs": 1, "breaks": {}}


# ----------------------------------------------------------------------------------------------------
# Training with it.


@pytest.mark.parametrize("first,then", [("step", "phases"), ("phases", "step")])
def test_train_switches_scope_on_resume_and_matches_the_phases(faceset_a, faceset_b, tmp_path, first, then):
    """`deepfake train` trains 4 steps in one scope (eager here), resumes its checkpoint (weights, Adam
    state) in the other for 4 more; the losses match a run in the phases throughout (float32 rounding)."""
    # A warm-up: the learning rate changes at every step up to 6, across the resume too.
    cfg = with_gan(tiny(steps=8, batch=4, log_every=2, val_every=4, save_every=4, preview_every=0, warmup_steps=6),
                   r1_gamma=1.0, r1_every=2)
    straight = train(cfg, faceset_a, faceset_b, tmp_path / "phases", progress=False)
    part = train(dataclasses.replace(cfg, compile_scope=first), faceset_a, faceset_b, tmp_path / "mixed", progress=False, stop_at=4)
    assert part.step == 4
    resumed = train(dataclasses.replace(cfg, compile_scope=then), faceset_a, faceset_b, tmp_path / "mixed", progress=False)
    assert straight.step == resumed.step == 8
    keys = ("loss", "loss_a", "loss_b", "gan_g", "loss_d", "val_loss")
    a = read_metrics(tmp_path / "phases" / "metrics.csv")
    b = read_metrics(tmp_path / "mixed" / "metrics.csv")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [2, 4, 6, 8]
    for ra, rb in zip(a, b):
        for k in keys:
            if ra[k] is None:  # val_loss: on validation rows only
                assert rb[k] is None and ra["step"] % 4, (ra["step"], k)
            else:
                assert rb[k] == pytest.approx(ra[k], rel=1e-5, abs=1e-7), (ra["step"], k)
    assert a[-1]["loss"] != a[0]["loss"]


def test_cli_compile_scope_is_parsed_and_the_dry_run_estimates_both_scopes(tmp_path, capsys):
    import re

    from deepfake.checkpoint import read_config
    from deepfake.cli import main as cli_main

    out = tmp_path / "m"
    assert cli_main(["train", "--a", "A", "--b", "B", "-o", str(out), "--preset", "tiny", "--compile-scope", "step",
                     "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert '"compile_scope": "step"' in printed and read_config(out).compile_scope == "step"
    step = re.search(r"per identity: ([\d.]+) MiB with bf16", printed)
    phases = re.search(r"with compile_scope phases: ([\d.]+) MiB with bf16", printed)
    assert step and phases and float(phases.group(1)) < float(step.group(1))  # eager torch.func keeps more
    assert cli_main(["train", "--a", "A", "--b", "B", "-o", str(tmp_path / "x"), "--set", "compile_scope=sideways",
                     "--dry-run"]) == 2
    assert "compile_scope 'sideways': choose one of phases, step" in capsys.readouterr().err


def test_what_the_whole_step_cannot_run_is_refused_clearly():
    with pytest.raises(DeepfakeError, match="compile_scope 'sideways'"):
        make_step(tiny(compile_scope="sideways"), *_nets(tiny()))
    bn_r1 = with_gan(tiny(compile_scope="step"), r1_gamma=1.0)
    bn_r1 = dataclasses.replace(bn_r1, discriminator=dataclasses.replace(bn_r1.discriminator, norm="batch"))
    with pytest.raises(DeepfakeError, match="R1"):
        make_step(bn_r1, *_nets(bn_r1))
    ckpt = tiny(compile_scope="step")
    ckpt = dataclasses.replace(ckpt, model=dataclasses.replace(ckpt.model, checkpoint_decoder=True))
    with pytest.raises(DeepfakeError, match="checkpoint_decoder"):
        make_step(ckpt, *_nets(ckpt))


def _nets(cfg):
    ae = build_autoencoder(cfg.model)
    return ae, None, make_optimizer(cfg, ae.parameters(), cfg.lr, CPU), None, CPU, None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_cuda_whole_step_is_one_graph_with_eagers_losses(mode):
    """On CUDA as training runs it (bf16 autocast, channels_last, fused-Adam state): one graph, no break,
    and with reduce-overhead one CUDA graph replayed (no cudagraph skip: the parameters and Adam's moments
    it updates in place are static inputs). Losses as the eager whole step's within bf16 tolerance.
    Random faces: the device machine has no dlib to extract real ones."""
    from torch._dynamo.utils import counters

    from deepfake.train import configure_cuda

    dev = torch.device("cuda")
    configure_cuda(dev)
    cfg = dataclasses.replace(with_gan(tiny(batch=4)), device="cuda", amp="bf16")
    gen = torch.Generator().manual_seed(1)
    images = (torch.rand(8, 3, 64, 64, generator=gen) * 255).to(torch.uint8).to(dev)  # (8, 3, 64, 64)
    masks = torch.zeros(8, 1, 64, 64, dtype=torch.uint8, device=dev)
    masks[:, :, 12:56, 14:50] = 255
    landmarks = (torch.rand(8, 68, 2, generator=gen) * 40 + 12).to(dev)  # (8, 68, 2) px
    faces = [no_augment(images[:4], masks[:4], landmarks[:4])], [no_augment(images[4:], masks[4:], landmarks[4:])]
    for f in faces[0] + faces[1]:
        f.inputs = f.inputs.contiguous(memory_format=torch.channels_last)  # as draw_step hands them over

    def build(compile_mode):
        torch.manual_seed(0)
        ae = build_autoencoder(cfg.model).to(dev, memory_format=torch.channels_last)
        d = build_discriminator(cfg.discriminator, 64).to(dev, memory_format=torch.channels_last)
        opt_g, opt_d = make_optimizer(cfg, ae.parameters(), cfg.lr, dev), make_optimizer(cfg, d.parameters(), cfg.d_lr, dev)
        return WholeStep(AdversarialStep(cfg, ae, d, opt_g, opt_d, dev, torch.bfloat16), compile_mode)

    eager, compiled = build(None), build(mode)
    torch._dynamo.reset()
    counters.clear()
    for step in range(4):
        e = torch.cat([t.view(-1).float() for t in eager.step(*faces, step)])
        c = torch.cat([t.view(-1).float() for t in compiled.step(*faces, step)])
        torch.testing.assert_close(c, e, rtol=3e-2, atol=3e-3, msg=f"step {step}")
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]
    assert counters["inductor"]["cudagraph_skips"] == 0, "CUDA graphs were skipped (see the perf hints log)"
