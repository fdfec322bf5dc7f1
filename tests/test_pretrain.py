"""Pretraining and reuse on real faces: `pretrain` on three people (d3, d18, s18) with DFL's rules,
then `train --from` on a pair the pool does not contain (d6/d14): exactly the named modules
re-initialised, the rest bitwise the source's, one-line errors, and a lower validation loss than scratch."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from deepfake.cli import main as cli_main
from deepfake.faceset import read_faceset, split_train_val
from deepfake.model_dir import load_model_dir, read_config
from deepfake.models import preset_config
from deepfake.train import train
from deepfake.train.checkpoint import latest_snapshot
from deepfake.train.pretrain import pretrain, pretrain_config
from deepfake.config.choices import RESETS
from deepfake.train.reuse import RESET_MODULES, config_hash

PRETRAIN_STEPS = 300
FINETUNE_STEPS = 50


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    yield


def tiny(**kw):
    base = dict(batch=8, log_every=10, val_every=50, save_every=100, preview_every=0)
    return dataclasses.replace(preset_config("tiny"), **(base | kw))


@pytest.fixture(scope="module")
def pretrained(pool_facesets, tmp_path_factory):
    """tiny pretrained on the pool for PRETRAIN_STEPS steps."""
    out = tmp_path_factory.mktemp("pretrained") / "model"
    result = pretrain(pretrain_config(tiny(steps=PRETRAIN_STEPS)), pool_facesets, out, progress=False)
    assert result.step == PRETRAIN_STEPS
    return out


def weights(folder):
    return load_model_dir(folder).autoencoder.state_dict()


def test_pretrain_follows_dfl_rules_and_both_sides_draw_from_the_whole_pool(pretrained, pool_facesets):
    cfg = read_config(pretrained)
    assert not cfg.augment.warp and cfg.augment.flip and cfg.augment.affine_until_step == 0
    assert cfg.loss.gan_weight == 0 and cfg.lr_dropout == 0 and cfg.data.uniform_yaw
    assert cfg.data.pool == [str(p.resolve()) for p in pool_facesets]
    loaded = load_model_dir(pretrained)
    assert loaded.discriminator is None and loaded.identities is None  # no GAN; a pool is no pair of people
    # Both samplers run over the training faces of all three people, not one faceset each.
    pool_train = sum(len(split_train_val(len(read_faceset(p)), cfg.val_fraction)[0]) for p in pool_facesets)
    snap = latest_snapshot(pretrained)
    assert snap.rng["sampler_a"].numel() == snap.rng["sampler_b"].numel() == pool_train + 1
    assert pool_train > max(len(read_faceset(p)) for p in pool_facesets)
    rows = json.loads((pretrained / "config.json").read_text())
    assert rows["start"]["source"] == ""  # a pretrained model starts from random weights


def test_pretrain_resumes_exactly(pool_facesets, tmp_path):
    cfg = pretrain_config(tiny(steps=8, log_every=4, val_every=4, save_every=4))
    straight = pretrain(cfg, pool_facesets, tmp_path / "straight", progress=False)
    first = pretrain(cfg, pool_facesets, tmp_path / "resumed", progress=False, stop_at=4)
    assert first.step == 4 and first.stopped_by == "stop_at"
    resumed = pretrain(cfg, pool_facesets, tmp_path / "resumed", progress=False)
    assert straight.step == resumed.step == 8
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("arch,reset", [("df", "inter"), ("df", "decoders"), ("df", "none"), ("liae", "inter")])
def test_from_resets_exactly_the_named_modules(arch, reset, pretrained, pool_facesets, faceset_a, faceset_b, tmp_path):
    source = pretrained
    if arch == "liae":  # a few pretraining steps of LIAE's network
        source = tmp_path / "liae_pretrained"
        cfg = tiny(steps=3)
        pretrain(pretrain_config(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, arch="liae"))),
                 pool_facesets, source, progress=False)
    src_cfg = read_config(source)
    # steps=0: the folder holds the start itself, before any update.
    pair = dataclasses.replace(tiny(steps=0), model=src_cfg.model)
    train(pair, faceset_a, faceset_b, tmp_path / "from", progress=False, start_from=source, reset=reset)
    train(pair, faceset_a, faceset_b, tmp_path / "scratch", progress=False)
    src, got, fresh = weights(source), weights(tmp_path / "from"), weights(tmp_path / "scratch")
    named = RESET_MODULES[arch][reset]
    for key in src:
        if key.split(".")[0] in named:
            assert torch.equal(got[key], fresh[key]), key  # exactly a fresh run's initialisation
            assert not torch.equal(got[key], src[key]), key
        else:
            assert torch.equal(got[key], src[key]), key  # the source's, bitwise
    assert {k.split(".")[0] for k in src} >= set(named)
    assert all(set(RESET_MODULES[a]) == set(RESETS) for a in RESET_MODULES)  # every --reset choice, per architecture
    loaded = load_model_dir(tmp_path / "from")
    assert loaded.step == 0  # the step counter starts again
    start = loaded.config.start
    assert (start.source, start.source_step, start.reset) == (str(source.resolve()), src_cfg.steps, reset)
    assert start.source_config_hash == config_hash(src_cfg)


def test_from_keeps_the_kept_modules_optimizer_state(pretrained, faceset_a, faceset_b, tmp_path):
    """As DFL keeps its optimizer's state when pretraining ends: the kept tensors start with the source's
    Adam moments and step count, bitwise; the re-initialised bottleneck with none."""
    pair = dataclasses.replace(tiny(steps=0), model=read_config(pretrained).model)
    train(pair, faceset_a, faceset_b, tmp_path / "from", progress=False, start_from=pretrained)
    theirs, ours = latest_snapshot(pretrained).optimizer_g["state"], latest_snapshot(tmp_path / "from").optimizer_g["state"]
    names = [n for n, _ in load_model_dir(pretrained).autoencoder.named_parameters()]  # the optimizer's order
    assert len(theirs) == len(names)
    for i, name in enumerate(names):
        if name.split(".")[0] in RESET_MODULES["df"]["inter"]:
            assert i not in ours, name
        else:
            assert set(ours[i]) == set(theirs[i]) and all(torch.equal(ours[i][k], theirs[i][k]) for k in theirs[i]), name
    assert any(n.startswith("inter.") for n in names)


def test_the_first_update_from_carried_moments_is_smaller_than_a_fresh_adams(pretrained, faceset_a, faceset_b,
                                                                             tmp_path):
    """A fresh Adam moves every weight by the full learning rate on its first step, whatever its
    gradient; with the source's moments a step is the size pretraining's last ones were (0.70 learning
    rates here, after 300 steps). A source without its snapshots (weights copied alone) starts fresh."""
    cfg = tiny(steps=1, val_every=0)
    bare = tmp_path / "weights_only"
    shutil.copytree(pretrained, bare, ignore=shutil.ignore_patterns("checkpoints"))
    moved = {}
    for name, source in (("carried", pretrained), ("fresh", bare)):
        train(cfg, faceset_a, faceset_b, tmp_path / name, progress=False, start_from=source)
        before, after = weights(source), weights(tmp_path / name)
        moved[name] = torch.cat([(after[k] - before[k]).abs().flatten() for k in before
                                 if k.startswith("encoder.") and k.endswith("weight")]).mean().item() / cfg.lr
    print(f"first step, mean |change| of the encoder's weights in learning rates: {moved}")
    assert moved["fresh"] > 0.9  # Adam's first step: lr * g / |g|
    assert moved["carried"] < 0.85 * moved["fresh"]


def test_from_then_training_counts_from_zero_and_resume_keeps_the_record(pretrained, faceset_a, faceset_b, tmp_path):
    out = tmp_path / "ft"
    cfg = tiny(steps=6, log_every=3, val_every=3, save_every=3)
    first = train(cfg, faceset_a, faceset_b, out, progress=False, start_from=pretrained, stop_at=3)
    assert first.step == 3 and [r["step"] for r in first.metrics] == [3]
    second = train(cfg, faceset_a, faceset_b, out, progress=False)  # resumed, no --from: the record stays
    assert second.step == 6
    assert read_config(out).start.source == str(pretrained.resolve())


def test_discriminator_starts_fresh_unless_the_source_has_one(pretrained, faceset_a, faceset_b, tmp_path):
    gan = tiny(steps=2, loss=dataclasses.replace(preset_config("tiny").loss, gan_weight=0.1))
    train(gan, faceset_a, faceset_b, tmp_path / "gan", progress=False, start_from=pretrained)
    gan0 = dataclasses.replace(gan, steps=0)
    train(gan0, faceset_a, faceset_b, tmp_path / "scratch", progress=False)
    d_first = load_model_dir(tmp_path / "gan").discriminator.state_dict()
    d_fresh = load_model_dir(tmp_path / "scratch").discriminator.state_dict()
    # The pretrained source has no D: the run's D started fresh and then trained 2 steps.
    assert any(not torch.equal(d_first[k], d_fresh[k]) for k in d_fresh)
    train(gan0, faceset_a, faceset_b, tmp_path / "again", progress=False, start_from=tmp_path / "gan", reset="none")
    d_again = load_model_dir(tmp_path / "again").discriminator.state_dict()
    assert all(torch.equal(d_again[k], d_first[k]) for k in d_first)  # the source's D, of the same shape
    theirs, ours = (latest_snapshot(tmp_path / n).optimizer_d["state"] for n in ("gan", "again"))
    assert theirs and set(ours) == set(theirs)  # and its optimizer state with it
    assert all(torch.equal(ours[i][k], theirs[i][k]) for i in theirs for k in theirs[i])


def _one_line_error(capsys, argv) -> str:
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_from_refuses_bad_sources_in_one_line(pretrained, faceset_a, faceset_b, tmp_path, capsys):
    base = ["train", "--a", str(faceset_a), "--b", str(faceset_b), "--steps", "2", "--no-progress"]
    err = _one_line_error(capsys, base + ["-o", str(tmp_path / "x"), "--from", str(pretrained), "--arch", "liae"])
    assert "model.arch" in err and "df there, liae here" in err
    err = _one_line_error(capsys, base + ["-o", str(tmp_path / "x"), "--from", str(pretrained),
                                         "--set", "model.resolution=128"])
    assert "model.resolution" in err and "64 there, 128 here" in err
    err = _one_line_error(capsys, base + ["-o", str(tmp_path / "x"), "--from", str(tmp_path / "absent")])
    assert str(tmp_path / "absent") in err
    corrupt = tmp_path / "corrupt"
    shutil.copytree(pretrained, corrupt)
    (corrupt / "autoencoder.safetensors").unlink()  # a hard link into the snapshot: replace, never write through
    (corrupt / "autoencoder.safetensors").write_bytes(b"not a safetensors file")
    err = _one_line_error(capsys, base + ["-o", str(tmp_path / "x"), "--from", str(corrupt)])
    assert str(corrupt / "autoencoder.safetensors") in err
    (corrupt / "config.json").write_text("{")
    err = _one_line_error(capsys, base + ["-o", str(tmp_path / "x"), "--from", str(corrupt)])
    assert str(corrupt / "config.json") in err
    bad_state = tmp_path / "bad_state"
    shutil.copytree(pretrained, bad_state)
    state_file = bad_state / "checkpoints" / f"step_{PRETRAIN_STEPS:06d}" / "optimizer_g.json"
    state_file.unlink()
    state_file.write_text("{")
    err = _one_line_error(capsys, base + ["-o", str(tmp_path / "x"), "--from", str(bad_state)])
    assert str(state_file) in err and "optimizer state" in err
    assert not (tmp_path / "x").exists()  # nothing was started
    # A folder that already holds a run is resumed, never restarted from another model.
    assert cli_main(base + ["-o", str(tmp_path / "run"), "--preset", "tiny"]) == 0
    capsys.readouterr()
    err = _one_line_error(capsys, base + ["-o", str(tmp_path / "run"), "--from", str(pretrained)])
    assert "already holds a run" in err
    err = _one_line_error(capsys, base + ["-o", str(tmp_path / "y"), "--reset", "none"])
    assert "--reset needs --from" in err


def test_a_folder_resumes_only_as_its_own_kind(pretrained, pool_facesets, faceset_a, faceset_b, tmp_path, capsys):
    """`train` on a pretraining folder, or `pretrain` on a pair's, is refused in one line and changes nothing:
    either would have turned the folder into the other kind of run."""
    pair_args = ["--a", str(faceset_a), "--b", str(faceset_b), "--no-progress"]
    pre = tmp_path / "pre"
    shutil.copytree(pretrained, pre)
    err = _one_line_error(capsys, ["train", *pair_args, "-o", str(pre), "--steps", str(PRETRAIN_STEPS + 2)])
    assert "holds a pretraining run" in err and f"--from {pre}" in err
    pair = tmp_path / "pair"
    assert cli_main(["train", *pair_args, "-o", str(pair), "--preset", "tiny", "--steps", "2"]) == 0
    capsys.readouterr()
    saved = (pair / "config.json").read_bytes()
    assert not read_config(pair).data.pool
    err = _one_line_error(capsys, ["pretrain", *map(str, pool_facesets), "-o", str(pair), "--steps", "4", "--no-progress"])
    assert "holds a pair's run" in err
    assert (pair / "config.json").read_bytes() == saved and load_model_dir(pair).step == 2
    assert load_model_dir(pre).step == PRETRAIN_STEPS


def test_a_pretrained_model_is_refused_for_a_swap_or_an_export(pretrained, tmp_path, capsys):
    """Both decoders of a pretrained model draw the pool's faces in general: a swap or a .dfm from it would
    show nobody, so both say to train a pair from it first, and write nothing."""
    from conftest import media_path

    out = tmp_path / "out.png"
    err = _one_line_error(capsys, ["swap", str(media_path("d9.jpg")), "-m", str(pretrained), "-o", str(out)])
    assert str(pretrained) in err and "a pretrained model" in err and f"--from {pretrained}" in err
    err = _one_line_error(capsys, ["export", "-m", str(pretrained), "-o", str(tmp_path / "m.dfm")])
    assert "a pretrained model" in err and "exported" in err
    assert not out.exists() and not (tmp_path / "m.dfm").exists()


def test_pretrain_cli(pool_facesets, tmp_path, capsys):
    out = tmp_path / "pre"
    argv = ["pretrain", *map(str, pool_facesets), "-o", str(out), "--preset", "tiny", "--steps", "4", "--no-progress",
            "--save-every", "2"]
    assert cli_main(argv) == 0
    assert "--from" in capsys.readouterr().out
    assert load_model_dir(out).step == 4 and read_config(out).data.pool
    assert cli_main(argv[:-5] + ["--steps", "6", "--no-progress"]) == 0  # resumed from step 4
    assert load_model_dir(out).step == 6
    err = _one_line_error(capsys, ["pretrain", str(tmp_path), "-o", str(tmp_path / "p2")])
    assert "not a faceset" in err


def test_a_pretrained_start_beats_scratch_on_a_pair_the_pool_did_not_contain(pretrained, faceset_a, faceset_b,
                                                                              tmp_path):
    cfg = tiny(steps=FINETUNE_STEPS, val_every=FINETUNE_STEPS)
    scratch = train(cfg, faceset_a, faceset_b, tmp_path / "scratch", progress=False)
    warm = train(cfg, faceset_a, faceset_b, tmp_path / "from", progress=False, start_from=pretrained)
    val_scratch, val_warm = scratch.metrics[-1]["val_loss"], warm.metrics[-1]["val_loss"]
    print(f"validation loss after {FINETUNE_STEPS} steps: scratch {val_scratch:.4f}, "
          f"pretrained {PRETRAIN_STEPS} steps on three other people {val_warm:.4f}")
    assert val_warm < 0.95 * val_scratch


def test_the_ui_train_job_starts_from_a_workspace_model(tmp_path):
    from deepfake.errors import DeepfakeError
    from deepfake.ui.specs import parse
    from deepfake.ui.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws")
    for name in ("a", "b"):
        (ws.root / "facesets" / name).mkdir()
    (ws.root / "models" / "pre").mkdir()
    (ws.root / "models" / "pre" / "config.json").write_text("{}")
    spec = {"kind": "train", "a": "a", "b": "b", "model": "ab", "start_from": "pre", "reset": "none"}
    argv = parse(spec).plan(ws, lambda d: "cpu").argv
    assert f"--from={ws.root / 'models' / 'pre'}" in argv and "--reset=none" in argv
    assert not any(a.startswith("--from") for a in parse(spec | {"start_from": None, "reset": None}).plan(ws, lambda d: "cpu").argv)
    for bad in ({"start_from": "../pre"}, {"start_from": "absent"}, {"start_from": None}):
        with pytest.raises(DeepfakeError):
            parse(spec | bad).plan(ws, lambda d: "cpu")


def test_the_ui_pretrain_job_and_the_workspace_show_a_pretraining_run(pretrained, pool_facesets, tmp_path):
    """The dashboard's pretrain job is the CLI's command on the workspace's facesets; the workspace lists a
    pretrained model with its pool (the Train page's "start from" labels it), and its view names the pool."""
    from deepfake.errors import DeepfakeError
    from deepfake.ui.specs import parse
    from deepfake.ui.views import training_view
    from deepfake.ui.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws")
    for fs in pool_facesets:
        shutil.copytree(fs, ws.root / "facesets" / fs.name)
    names = [fs.name for fs in pool_facesets]
    spec = {"kind": "pretrain", "facesets": names, "model": "pre", "preset": "tiny", "steps": 4, "set": ["data.uniform_yaw=false"]}
    plan = parse(spec).plan(ws, lambda d: "cpu")
    assert plan.argv == ["pretrain", *(str(ws.root / "facesets" / n) for n in names), f"--out={ws.root / 'models' / 'pre'}",
                         "--preset=tiny", "--steps=4", "--set=data.uniform_yaw=false"]
    assert plan.title.startswith("pretrain pre") and plan.targets == {"model": "pre"}
    for bad in ({"facesets": ["absent"]}, {"facesets": []}, {"gan_weight": -1}):
        with pytest.raises(DeepfakeError):
            parse(spec | bad).plan(ws, lambda d: "cpu")
    shutil.copytree(pretrained, ws.root / "models" / "pre")
    shutil.copytree(pretrained, ws.root / "models" / "pair")
    cfg = read_config(ws.root / "models" / "pair")
    (ws.root / "models" / "pair" / "config.json").write_text(
        json.dumps(json.loads((ws.root / "models" / "pair" / "config.json").read_text()) | {
            "data": dataclasses.asdict(cfg.data) | {"pool": []}}))
    listed = {m["name"]: m["pool"] for m in ws.models()}
    assert listed == {"pre": len(pool_facesets), "pair": 0}
    assert training_view(ws, "pre")["pool"] == names and training_view(ws, "pair")["pool"] == []
    assert parse(spec).plan(ws, lambda d: "cpu").title.startswith("resume pretraining pre")


def test_demo_from_a_pretrained_model(pretrained, tmp_path, capsys):
    out = tmp_path / "demo"
    rc = cli_main(["demo", "--minutes", "0.05", "--frames", "24", "-o", str(out), "-q", "--from", str(pretrained)])
    assert rc == 0, capsys.readouterr().err
    assert f"from the weights of `{pretrained}`" in (out / "report.md").read_text()
    cfg = read_config(out / "work" / "model")
    assert cfg.start.source == str(pretrained.resolve()) and cfg.preset == "tiny"  # the source's preset
