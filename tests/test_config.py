"""Typed config values: one checker for `--set KEY=VALUE`, JSON config files and sweep grids."""

from __future__ import annotations

import argparse
import json

import pytest

from deepfake.cli import main as cli_main
from deepfake.config import DetectConfig, EvaluateConfig, ExtractConfig, SwapConfig, SweepConfig, TrainConfig
from deepfake.config_io import check_value, from_dict, load_json, parse_override, parse_value, to_dict
from deepfake.errors import DeepfakeError
from deepfake.sweep.run import parse_grid
from deepfake.models.presets import PRESETS, preset_config


def error(fn, *args) -> str:
    with pytest.raises(DeepfakeError) as e:
        fn(*args)
    message = str(e.value)
    assert "\n" not in message
    return message


def resolve(tmp_path, *sets: str) -> TrainConfig:
    """`deepfake train ... --set ...` resolved by the command's own parser and resolve_config."""
    from deepfake.commands import train

    p = argparse.ArgumentParser()
    train.add_arguments(p)
    argv = ["--a", "A", "--b", "B", "-o", str(tmp_path / "m"), "--preset", "tiny"]
    for s in sets:
        argv += ["--set", s]
    return train.resolve_config(p.parse_args(argv))


def test_int_fields_take_integer_literals_only(tmp_path):
    cfg = resolve(tmp_path, "steps=2000", "model.latent_dims=+64")
    assert (cfg.steps, cfg.model.latent_dims) == (2000, 64) and type(cfg.steps) is int
    # 1e3 is float notation: an error, never a float (or a rounded int) in an int field.
    assert error(resolve, tmp_path, "steps=1e3") == "steps: expected int (a whole number such as 1000), got '1e3'"
    for text in ("abc", "1000.0", "true", ""):
        assert error(parse_override, TrainConfig(), "steps", text).startswith("steps: expected int")


def test_bools_accept_the_usual_spellings():
    for text, value in [("true", True), ("False", False), ("1", True), ("0", False), ("yes", True), ("NO", False),
                        ("on", True), ("off", False)]:
        assert parse_override(TrainConfig(), "augment.flip", text) is value
    assert error(parse_override, TrainConfig(), "augment.flip", "maybe") == \
        "augment.flip: expected bool (true/false), got 'maybe'"


def test_floats_accept_ints_and_scientific_notation(tmp_path):
    cfg = resolve(tmp_path, "lr=1", "loss.gan_weight=0", "d_lr=2e-4")
    assert (cfg.lr, cfg.loss.gan_weight, cfg.d_lr) == (1.0, 0.0, 2e-4)
    assert type(cfg.lr) is float and type(cfg.loss.gan_weight) is float
    assert "lr: expected float, got 'fast'" == error(parse_override, TrainConfig(), "lr", "fast")


def test_lists_from_json_or_commas(tmp_path):
    cfg = resolve(tmp_path, "model.encoder_channels=[8, 16, 32]", "model.decoder_channels=32,16")
    assert (cfg.model.encoder_channels, cfg.model.decoder_channels) == ([8, 16, 32], [32, 16])
    assert parse_override(ExtractConfig(), "reference", "") == []
    assert parse_override(ExtractConfig(), "reference", "a.png, b.png") == ["a.png", "b.png"]
    assert error(parse_override, TrainConfig(), "model.encoder_channels", "8,x") == \
        "model.encoder_channels: expected list[int], got '8,x'"
    assert error(parse_override, TrainConfig(), "model.encoder_channels", "[8, 16.5]").startswith(
        "model.encoder_channels: expected list[int]")
    assert error(parse_override, TrainConfig(), "model.encoder_channels", "[8,").startswith(
        "model.encoder_channels: expected list[int]")


def test_tuple_betas_have_their_length_checked(tmp_path):
    cfg = resolve(tmp_path, "betas=0.9,0.99")
    assert cfg.betas == (0.9, 0.99) and isinstance(cfg.betas, tuple)
    assert parse_override(TrainConfig(), "betas", "[0, 0.999]") == (0.0, 0.999)
    assert error(parse_override, TrainConfig(), "betas", "0.9") == "betas: expected tuple[float, float], got '0.9'"
    assert error(parse_override, TrainConfig(), "betas", "0.9,0.99,0.999").startswith("betas: expected tuple")


def test_nested_fields_unknown_fields_and_sections(tmp_path):
    cfg = resolve(tmp_path, "model.activation=gelu", "discriminator.depth=4", "device=cpu")
    assert (cfg.model.activation, cfg.discriminator.depth, cfg.device) == ("gelu", 4, "cpu")
    assert resolve(tmp_path, "preset=123").preset == "123"  # a str field keeps the text as it is
    assert error(resolve, tmp_path, "model.nope=1") == "unknown config field 'model.nope' for TrainConfig"
    assert error(resolve, tmp_path, "nope=1") == "unknown config field 'nope' for TrainConfig"
    assert error(resolve, tmp_path, "model=gelu").startswith("model: is a section (ModelConfig)")
    assert "expected KEY=VALUE" in error(resolve, tmp_path, "steps")


def test_optional_fields_take_none_or_the_inner_type():
    assert parse_value(int | None, "none") is None and parse_value(int | None, "null") is None
    assert parse_value(int | None, "7") == 7
    assert check_value(float | None, None) is None and check_value(float | None, 2) == 2.0
    assert error(parse_value, int | None, "1e3", "limit") == "limit: expected int | None, got '1e3'"


def test_json_config_values_are_checked_against_their_fields(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"steps": "abc"}))
    assert error(load_json, TrainConfig, path) == \
        f"{path}.steps: expected int (a whole number such as 1000), got 'abc'"
    path.write_text(json.dumps({"model": {"latent_dims": 1.5}}))
    assert error(load_json, TrainConfig, path).startswith(f"{path}.model.latent_dims: expected int")
    path.write_text(json.dumps({"augment": {"flip": "no"}}))  # typed input: a string is not a bool
    assert error(load_json, TrainConfig, path).startswith(f"{path}.augment.flip: expected bool")
    path.write_text(json.dumps({"lr": 1, "betas": [0.9, 0.99], "model": {"activation": "gelu"}}))
    cfg = load_json(TrainConfig, path)
    assert (cfg.lr, cfg.betas, cfg.model.activation) == (1.0, (0.9, 0.99), "gelu") and type(cfg.lr) is float


def test_every_saved_config_loads_back_unchanged():
    configs = [preset_config(name) for name in PRESETS]
    configs += [ExtractConfig(reference=["a.png"]), SwapConfig(), SweepConfig(), EvaluateConfig(), DetectConfig()]
    for cfg in configs:
        data = json.loads(json.dumps(to_dict(cfg)))  # what a config file holds
        assert from_dict(type(cfg), data) == cfg


def test_sweep_grid_text_goes_through_the_same_checker(tmp_path):
    base = TrainConfig()
    set_error = error(parse_override, base, "steps", "1e3")
    assert error(parse_grid, ["steps=1000,1e3"], base) == f"sweep grid: {set_error}"
    assert error(parse_grid, ["flip=true,maybe"], base) == \
        f"sweep grid: {error(parse_override, base, 'augment.flip', 'maybe')}"
    assert parse_grid(["steps=1000,2000", "lr=1"], base) == {"steps": [1000, 2000], "lr": [1.0]}


def test_both_commands_print_the_same_one_line_error(tmp_path, capsys):
    assert cli_main(["train", "--a", "A", "--b", "B", "-o", str(tmp_path / "m"), "--preset", "tiny",
                     "--set", "steps=abc", "--dry-run"]) == 2
    train_err = capsys.readouterr().err
    assert train_err == "error: steps: expected int (a whole number such as 1000), got 'abc'\n"
    assert cli_main(["sweep", "--a", "A", "--b", "B", "-o", str(tmp_path / "s"), "--grid", "steps=abc",
                     "--dry-run"]) == 2
    assert capsys.readouterr().err == train_err.replace("error: ", "error: sweep grid: ")
    assert not (tmp_path / "m").exists() and not (tmp_path / "s").exists()

