"""One declaration per option: the command line and the dashboard's job requests are both generated from
the config fields' `option(...)`, and this walks every job the dashboard can start to check that the two
agree: the same options, choices, defaults and ranges. A job kind or option added on one side only fails
here."""

from __future__ import annotations

import argparse

import pytest

pytest.importorskip("fastapi")

from deepfake.cli import build_parser  # noqa: E402
from deepfake.config import choices  # noqa: E402
from deepfake.ui import specs  # noqa: E402

# Job kind -> the command it runs.
COMMAND = {
    "extract": ("extract",), "faceset_info": ("faceset", "info"), "faceset_clean": ("faceset", "clean"),
    "train": ("train",), "pretrain": ("pretrain",), "swap": ("swap",), "evaluate": ("evaluate",), "sweep": ("sweep",), "detect": ("detect",),
    "mask_train": ("mask", "train"), "mask_apply": ("mask", "apply"),
}
# Fields that name the workspace's own things (resolved to paths by the plan) -> the command's argument
# they become; None: the dashboard's own (more_steps is turned into --steps).
WORKSPACE = {
    "extract": {"inputs": "inputs", "faceset": "--output", "reference": "--reference"},
    "faceset_info": {"faceset": "faceset"},
    "faceset_clean": {"faceset": "faceset", "thresholds": None},
    "train": {"a": "--a", "b": "--b", "model": "--out", "set": "--set", "start_from": "--from"},
    "pretrain": {"facesets": "facesets", "model": "--out", "set": "--set"},
    "swap": {"model": "--model", "input": "input", "output": "--output", "mask_model": "--mask-model"},
    "evaluate": {"model": "--model", "a": "--a", "b": "--b", "output": "--output", "frames": "--frames"},
    "sweep": {"a": "--a", "b": "--b", "output": "--output", "grid": "--grid"},
    "detect": {"inputs": "inputs", "model": "--model"},
    "mask_train": {"facesets": "facesets", "model": "--out", "set": "--set", "more_steps": None},
    "mask_apply": {"faceset": "faceset", "model": "--model"},
}


def command_parser(path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = build_parser(only=path[0])
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


def arguments(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Option string (or a positional's dest) -> its action."""
    out = {}
    for a in parser._actions:
        for s in a.option_strings or [a.dest]:
            out[s] = a
    return out


def job_schemas() -> dict[str, dict]:
    defs = specs._ADAPTER.json_schema()["$defs"]
    return {m["properties"]["kind"]["const"]: m for m in defs.values() if "kind" in m.get("properties", {})}


def plain(prop: dict) -> dict:
    """The non-null branch of an optional field's schema."""
    return next((a for a in prop.get("anyOf", [prop]) if a.get("type") != "null"), prop)


def test_every_job_kind_is_a_command():
    assert set(job_schemas()) == set(specs.KINDS) == set(COMMAND) == set(WORKSPACE)


def option_pairs():
    """(kind, field, its schema, the CLI's action) for every option field of every job, nested ones included."""
    for kind, model in sorted(job_schemas().items()):
        args = arguments(command_parser(COMMAND[kind]))
        props = dict(model["properties"])
        if kind == "faceset_clean":
            props |= specs._ADAPTER.json_schema()["$defs"]["Thresholds"]["properties"]
        for name, prop in props.items():
            if name == "kind" or name in WORKSPACE[kind]:
                continue
            yield kind, name, prop, args.get("--" + name.replace("_", "-"))


@pytest.mark.parametrize("kind, name, prop, action", list(option_pairs()), ids=lambda x: x if isinstance(x, str) else "")
def test_dashboard_fields_are_the_command_options(kind, name, prop, action):
    assert action is not None, f"{kind}.{name}: the dashboard offers it, `deepfake {' '.join(COMMAND[kind])}` has no --{name}"
    p = plain(prop)
    assert set(p.get("enum") or ()) == set(action.choices or ()), f"{kind}.{name}: choices differ"
    declared = getattr(action, "declared", None)
    assert declared is not None, f"{kind}.{name}: --{name} is declared by hand, not from its config field"
    if action.nargs == 0:  # a flag
        assert p["type"] == "boolean"
        return
    if action.default is None:  # resolved elsewhere (a preset, the folder's config): both leave it out
        assert prop.get("default") is None
    elif action.default is not argparse.SUPPRESS:
        assert prop.get("default") == action.default, f"{kind}.{name}: default differs"
    o = declared.opt
    assert (p.get("minimum"), p.get("maximum"), p.get("exclusiveMinimum")) == (o.lo, o.hi, o.above), name


@pytest.mark.parametrize("kind", sorted(COMMAND))
def test_every_declared_command_option_is_offered_by_the_dashboard(kind):
    """The other way round: an option the command generates from a declaration marked for the dashboard
    is in the job's request model (under the same name)."""
    props = set(job_schemas()[kind]["properties"])
    if kind == "faceset_clean":
        props |= set(specs._ADAPTER.json_schema()["$defs"]["Thresholds"]["properties"])
    for action in command_parser(COMMAND[kind])._actions:
        d = getattr(action, "declared", None)
        if d is not None and d.opt.ui:
            assert d.name in props, f"{kind}: --{d.flag} is not in the dashboard's request"


def test_the_implementations_offer_exactly_the_declared_choices():
    from deepfake.models.discriminator import KINDS
    from deepfake.models.presets import PRESETS
    from deepfake.swap.blend import BLEND_MODES
    from deepfake.swap.color import COLOR_MODES
    from deepfake.swap.model import DIRECTIONS

    assert tuple(PRESETS) == choices.PRESET_NAMES
    assert tuple(COLOR_MODES) == choices.COLOR_MODES
    assert tuple(BLEND_MODES) == choices.BLEND_MODES
    assert tuple(DIRECTIONS) == choices.DIRECTIONS
    assert tuple(KINDS) == choices.DISCRIMINATOR_KINDS


def test_train_help_lists_every_preset(capsys):
    with pytest.raises(SystemExit):
        build_parser(only="train").parse_args(["train", "--help"])
    text = capsys.readouterr().out
    for name in choices.PRESET_NAMES:
        assert name in text
    assert "quick" in text


def test_openapi_documents_every_job(tmp_path):
    from deepfake.config import UiConfig
    from deepfake.ui.app import create_app

    app = create_app(UiConfig(tmp_path / "ws"))
    try:
        schema = app.openapi()
    finally:
        app.state.ctx.jobs.close()
    body = schema["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    refs = {v.rsplit("/", 1)[1] for v in body["discriminator"]["mapping"].values()}
    components = schema["components"]["schemas"]
    for kind, model in job_schemas().items():
        assert model["title"] in refs, kind
        assert set(components[model["title"]]["properties"]) == set(model["properties"]), kind
    assert components["Swap"]["properties"]["color"]["anyOf"][0]["enum"] == list(choices.COLOR_MODES)


def test_a_bad_choice_or_range_is_refused_by_both(capsys):
    from deepfake.cli import main

    assert main(["swap", "x.mp4", "-m", "m", "-o", "y.mp4", "--erode", "999"]) == 2
    assert capsys.readouterr().err.strip() == "error: --erode 999: must be -256..256"
    with pytest.raises(SystemExit):
        main(["swap", "x.mp4", "-m", "m", "-o", "y.mp4", "--color", "purple"])
    assert "invalid choice: 'purple'" in capsys.readouterr().err
    with pytest.raises(specs.SpecError, match="erode"):
        specs.parse({"kind": "swap", "model": "m", "input": "x.mp4", "erode": 999})
    with pytest.raises(specs.SpecError, match="color"):
        specs.parse({"kind": "swap", "model": "m", "input": "x.mp4", "color": "purple"})


# Arguments a command declares by hand: paths and names of things, the run's own switches (--set, --config,
# --dry-run, quiet, what to print). A new option belongs on a config field; add it here only if it is one
# of those.
BY_HAND = {"-h", "--help", "--a", "--b", "-o", "--out", "--output", "-m", "--model", "--set", "--config", "--dry-run",
           "--no-progress", "-q", "--quiet", "--json", "--grid", "--frames", "--no-plots", "--reference", "--no-save",
           "--camera", "--stats", "--export", "--import"}


def test_every_command_option_comes_from_a_declaration():
    from deepfake.commands import COMMANDS

    for name in COMMANDS:
        parsers = [command_parser((name,))]
        while parsers:
            parser = parsers.pop()
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    parsers += list(action.choices.values())
                    continue
                hand = [s for s in action.option_strings if s not in BY_HAND]
                if hand and getattr(action, "declared", None) is None:
                    raise AssertionError(f"deepfake {name} {hand[0]}: declared by hand; declare it on its config")
