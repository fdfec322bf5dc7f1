"""Model folders: exact optimizer round trips, clear errors, no unpickling, kill -9 safety."""

from __future__ import annotations

import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from deepfake.model_dir import list_snapshots, load_model_dir, write_config

from deepfake.train.checkpoint import Snapshot, flatten_optimizer, latest_snapshot, save_snapshot, unflatten_optimizer
from deepfake.errors import ModelDirError
from deepfake.models import build_autoencoder, build_discriminator, preset_config


def tiny_snapshot(step: int, with_d: bool = True) -> tuple[Snapshot, torch.nn.Module]:
    cfg = preset_config("tiny")
    torch.manual_seed(step)
    ae = build_autoencoder(cfg.model)
    d = build_discriminator(cfg.discriminator, 64) if with_d else None
    opt = torch.optim.Adam(ae.parameters(), lr=1e-3)
    ae(torch.rand(1, 3, 64, 64), "a")[0].mean().backward()
    opt.step()
    snap = Snapshot(
        step=step,
        autoencoder=ae.state_dict(),
        discriminator=d.state_dict() if d is not None else None,
        optimizer_g=opt.state_dict(),
        optimizer_d=None,
        rng={"sample_gen": torch.Generator().manual_seed(step).get_state()},
        state={"wall_s": 1.5},
    )
    return snap, ae


def make_model_dir(path: Path, step: int = 7) -> torch.nn.Module:
    cfg = preset_config("tiny")
    write_config(path, cfg, {"a": [0.1] * 128, "b": [0.2] * 128})
    snap, ae = tiny_snapshot(step)
    save_snapshot(path, snap)
    return ae


def test_optimizer_state_round_trips_exactly_through_safetensors(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        model(torch.randn(5, 4)).square().mean().backward()
        opt.step()
        opt.zero_grad()
    tensors, plain = flatten_optimizer(opt.state_dict())
    assert all(torch.is_tensor(t) for t in tensors.values())
    import json
    from safetensors.torch import load_file, save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "o.safetensors"))
    restored = unflatten_optimizer(load_file(str(tmp_path / "o.safetensors")), json.loads(json.dumps(plain)))
    twin = torch.nn.Linear(4, 3)
    twin.load_state_dict(model.state_dict())
    opt2 = torch.optim.AdamW(twin.parameters(), lr=1e-2)
    opt2.load_state_dict(restored)
    x = torch.randn(5, 4)
    for m, o in ((model, opt), (twin, opt2)):
        m(x).square().mean().backward()
        o.step()
    assert torch.equal(model.weight, twin.weight)


def test_load_model_dir_rebuilds_the_model(tmp_path):
    ae = make_model_dir(tmp_path / "m")
    loaded = load_model_dir(tmp_path / "m")
    assert loaded.step == 7 and loaded.config.preset == "tiny"
    assert loaded.discriminator is not None
    assert loaded.identities["a"].shape == (128,)
    x = torch.rand(1, 3, 64, 64)
    ae.eval()
    with torch.no_grad():
        assert torch.equal(loaded.autoencoder(x, "a")[0], ae(x, "a")[0])
    assert (tmp_path / "m" / "autoencoder.safetensors").is_file()


def test_rotating_backups_keep_the_newest(tmp_path):
    write_config(tmp_path, preset_config("tiny"))
    for step in (10, 20, 30, 40):
        save_snapshot(tmp_path, tiny_snapshot(step, with_d=False)[0], keep=2)
    assert [p.name for p in list_snapshots(tmp_path)] == ["step_000030", "step_000040"]
    snap = latest_snapshot(tmp_path)
    assert snap.step == 40 and snap.state["wall_s"] == 1.5
    assert load_model_dir(tmp_path).step == 40
    assert not any(p.name.startswith(".") for p in (tmp_path / "checkpoints").iterdir())


def test_errors_are_one_line_and_name_the_file(tmp_path):
    with pytest.raises(ModelDirError, match="does not exist"):
        load_model_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelDirError, match="config.json"):
        load_model_dir(tmp_path / "empty")
    write_config(tmp_path / "noweights", preset_config("tiny"))
    with pytest.raises(ModelDirError, match="missing weight file"):
        load_model_dir(tmp_path / "noweights")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ModelDirError, match="bad config"):
        load_model_dir(bad)
    (bad / "config.json").write_text('{"modle": {}}')
    with pytest.raises(ModelDirError, match="modle") as e:
        load_model_dir(bad)
    assert "\n" not in str(e.value)
    make_model_dir(tmp_path / "mismatch")
    (tmp_path / "mismatch" / "config.json").write_text((tmp_path / "mismatch" / "config.json").read_text().replace('"latent_dims": 64', '"latent_dims": 65'))
    with pytest.raises(ModelDirError, match="do not match"):
        load_model_dir(tmp_path / "mismatch")
    (tmp_path / "mismatch2").mkdir()
    make_model_dir(tmp_path / "mismatch2")
    (tmp_path / "mismatch2" / "autoencoder.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelDirError, match="unreadable weight file"):
        load_model_dir(tmp_path / "mismatch2")


class _Trap:
    """Unpickling this creates the marker file: proof that someone unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_loading_never_unpickles(tmp_path):
    model_dir = tmp_path / "m"
    make_model_dir(model_dir)
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(_Trap(str(marker)))
    # The trap works: unpickling it does create the marker.
    pickle.loads(payload).close()
    assert marker.exists()
    marker.unlink()
    # Booby-trapped files named like every checkpoint format a careless loader would try.
    for name in ("model.pt", "autoencoder.pth", "checkpoint.ckpt", "optimizer.pkl", "pytorch_model.bin", "checkpoints/step_000007/optimizer.pt"):
        (model_dir / name).write_bytes(payload)
    loaded = load_model_dir(model_dir)
    assert loaded.step == 7
    assert latest_snapshot(model_dir).step == 7
    assert not marker.exists()


SAVER = textwrap.dedent(
    """
    import sys, torch
    from deepfake.model_dir import write_config
    from deepfake.train.checkpoint import Snapshot, save_snapshot
    from deepfake.models import build_autoencoder, preset_config
    out = sys.argv[1]
    cfg = preset_config("tiny")
    write_config(out, cfg)
    ae = build_autoencoder(cfg.model)
    opt = torch.optim.Adam(ae.parameters())
    step = 0
    print("ready", flush=True)
    while True:
        step += 1
        with torch.no_grad():
            for p in ae.parameters():
                p.fill_(step)  # every weight equals the step: a torn write cannot pass for a whole one
        save_snapshot(out, Snapshot(step, ae.state_dict(), None, opt.state_dict(), None,
                                    {"g": torch.Generator().get_state()}, {}), keep=2)
    """
)


def test_kill_9_during_saving_leaves_a_loadable_model(tmp_path):
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    out = tmp_path / "m"
    rng = random.Random(0)
    steps_seen = []
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.3 + rng.random() * 0.5)  # kill at a random moment, most likely mid-save
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if not list_snapshots(out) and not (out / "autoencoder.safetensors").exists():
            continue  # killed before the first save completed
        loaded = load_model_dir(out)
        first = next(loaded.autoencoder.parameters())
        assert torch.all(first == loaded.step), "weights disagree with their recorded step"
        snap = latest_snapshot(out)
        assert snap is not None and snap.step >= loaded.step
        assert torch.all(next(iter(snap.autoencoder.values())) == snap.step)
        steps_seen.append(loaded.step)
    assert len(steps_seen) >= 3 and max(steps_seen) > 1
