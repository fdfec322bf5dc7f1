"""The data section on its own CUDA stream (deepfake/data_stream.py): the same batches as on one stream,
drawn while the main stream is still busy, and their memory guarded until the main stream has used it.

The faces are real frames of the shared clips (centre crops, as in test_data_cache). On the CPU the
stream is a no-op, and the check is that the loop's data section still draws exactly what `_draw` draws.
"""

from __future__ import annotations

from dataclasses import fields, replace

import pytest
import torch

from deepfake.train.data_stream import DataStream
from deepfake.models import preset_config
from deepfake.train.batches import _draw, draw_step, load_side
from test_data_cache import build_faceset

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="the side stream exists on CUDA only")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
SLEEP_CYCLES = 200_000_000  # torch.cuda._sleep: about 0.1 s of the main stream on a 2 GHz GPU


@pytest.fixture(scope="module")
def facesets(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream_faces")
    build_faceset(root / "a", "d6.mp4", count=10, size=64, every=3)
    build_faceset(root / "b", "d14.mp4", count=10, size=64, every=3)
    return root / "a", root / "b"


def sides(facesets, cfg, device):
    gen = torch.Generator().manual_seed(0)
    _, a = load_side(facesets[0], cfg, device, "a", gen, progress=False)
    _, b = load_side(facesets[1], cfg, device, "b", gen, progress=False)
    return a, b


def tensors(batch):
    return [getattr(batch, f.name) for f in fields(batch)]


@pytest.mark.parametrize("device", DEVICES)
def test_side_stream_draws_the_same_batches_as_one_stream(facesets, device):
    """draw_step through the data stream (while the main stream is busy, on CUDA) gives bitwise the
    batches of plain `_draw` calls on the main stream: same faces, same augmentation, same order."""
    device = torch.device(device)
    cfg = replace(preset_config("tiny"), device=device.type, grad_accum=2, channels_last=False)
    got, want = [], []
    for use_stream in (True, False):
        side_a, side_b = sides(facesets, cfg, device)
        aug_gen = torch.Generator().manual_seed(5)
        stream = DataStream(device) if use_stream else None
        for step in range(3):
            if device.type == "cuda":
                torch.cuda._sleep(SLEEP_CYCLES // 10)  # the previous step's G and D phases, as it were
            if use_stream:
                a, b = draw_step(side_a, side_b, 3, cfg, aug_gen, step, None, stream)
                got += [t.clone() for batch in a + b for t in tensors(batch)]
            else:
                a = [_draw(side_a, 3, cfg, aug_gen, step) for _ in range(cfg.grad_accum)]
                b = [_draw(side_b, 3, cfg, aug_gen, step) for _ in range(cfg.grad_accum)]
                want += [t.clone() for batch in a + b for t in tensors(batch)]
    assert len(got) == len(want) == 3 * 4 * 4
    for i, (g, w) in enumerate(zip(got, want)):
        assert torch.equal(g, w), f"tensor {i} differs"
    assert not torch.equal(got[0], got[4])  # successive micro-batches differ: the comparison has teeth


@CUDA
def test_data_section_runs_beside_the_main_stream(facesets):
    """The side stream's work finishes while the main stream is still busy with the step before, and
    the main stream starts the next step only after it."""
    device = torch.device("cuda")
    cfg = replace(preset_config("tiny"), device="cuda")
    side_a, side_b = sides(facesets, cfg, device)
    stream = DataStream(device)
    aug_gen = torch.Generator().manual_seed(5)
    draw_step(side_a, side_b, 4, cfg, aug_gen, 0, None, stream)  # warm-up: first-call costs off the clock
    torch.cuda.synchronize()
    main = torch.cuda.current_stream(device)
    timing = lambda: torch.cuda.Event(enable_timing=True)  # noqa: E731
    main_start, main_end, side_end, handed = timing(), timing(), timing(), timing()
    main_start.record(main)
    torch.cuda._sleep(SLEEP_CYCLES)  # the previous step, still running
    main_end.record(main)
    a, b = draw_step(side_a, side_b, 4, cfg, aug_gen, 1, None, stream)
    side_end.record(stream.stream)
    handed.record(main)
    torch.cuda.synchronize()
    assert side_end.elapsed_time(main_end) > 0, "the data section waited for the main stream"
    assert main_start.elapsed_time(side_end) < 0.5 * main_start.elapsed_time(main_end)  # it ran early on
    assert side_end.elapsed_time(handed) > -0.01 and main_end.elapsed_time(handed) > -0.01  # main waited for both
    assert all(t.is_cuda for batch in a + b for t in tensors(batch))


@CUDA
def test_handed_over_memory_is_not_reused_while_the_main_stream_reads_it():
    """A tensor made on the side stream and read late by the main stream: once dropped, its block must
    not go to the side stream's next tensor before the main stream has read it (record_stream)."""
    device = torch.device("cuda")
    stream = DataStream(device)
    with stream.section():
        x = torch.full((1 << 20,), 3.0, device=device)
    stream.hand_over([x])
    torch.cuda._sleep(SLEEP_CYCLES)  # the main stream is busy before it reads x
    y = x * 2  # queued on the main stream, runs after the sleep
    ptr = x.data_ptr()
    del x
    with stream.section():
        z = torch.empty(1 << 20, device=device)
        z.fill_(7.0)  # would overwrite x's block before y reads it, were the block handed out again
    torch.cuda.synchronize()
    assert torch.all(y == 6.0), "the main stream read memory the side stream had reused"
    assert z.data_ptr() != ptr
