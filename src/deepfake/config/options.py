"""One declaration per option. A config field declared with `option(...)` carries its flag, type, default,
choices, range and help; the command line (argparse) and the dashboard's job requests (pydantic) are
generated from it, so neither restates a choice or a default.

    erode: int = option(0, "shrink the mask by N px of the aligned face (negative grows)", lo=-256, hi=256)

The field's type is the option's type; text from the command line is parsed by config_io's one checker,
as `--set KEY=VALUE` is. A field declared with plain `= value` is a config field with no option of its own
(still settable with `--set` where a command offers it). docs/ARCHITECTURE.md shows how to add one.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Callable, Iterator, Literal

DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d{1,2})?)$"
CHECKPOINT_PATTERN = r"^(best|last|\d{1,9})$"
WORD_PATTERN = r"^[A-Za-z0-9_.:+-]{1,64}$"  # a free-text value the dashboard may pass: one word, no spaces


@dataclass(frozen=True)
class Option:
    help: str
    flag: str | None = None  # the command-line name without '--'; default: the field name with '-'
    choices: tuple | None = None
    lo: float | None = None  # inclusive bounds
    hi: float | None = None
    above: float | None = None  # exclusive lower bound (a budget that must be positive)
    metavar: str | None = None
    pattern: str | None = None  # what the dashboard accepts for a free-text value (default WORD_PATTERN)
    ui: bool = True  # offered in the dashboard's job request
    short: str | None = None  # a one-letter alias on the command line ("-n")


def option(default: Any = MISSING, help: str = "", *, factory: Callable[[], Any] | None = None,
           choices: tuple | list | None = None, lo: float | None = None, hi: float | None = None,
           above: float | None = None, flag: str | None = None, metavar: str | None = None,
           pattern: str | None = None, ui: bool = True, short: str | None = None) -> Any:
    """A dataclass field that is also a command-line option and a dashboard field."""
    meta = {"option": Option(help, flag, tuple(choices) if choices is not None else None, lo, hi, above, metavar,
                             pattern, ui, short)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Declared:
    """One declared option of a config class: where it lives and what it is."""

    path: str  # dotted field path in the config ("model.arch")
    opt: Option
    type: Any  # the field's type hint
    default: Any

    @property
    def flag(self) -> str:
        return self.opt.flag or self.path.rpartition(".")[2].replace("_", "-")

    @property
    def name(self) -> str:
        """The dashboard's field name: the flag with underscores."""
        return self.flag.replace("-", "_")

    @property
    def inverted(self) -> bool:
        """A boolean that is on by default is turned off by its flag (`--no-smooth` sets smooth false)."""
        return self.type is bool and self.default is True

    def range_text(self) -> str:
        """16..2048, >= 0, > 0, or > 0 and <= 100000."""
        o = self.opt
        if o.lo is not None and o.hi is not None:
            return f"{o.lo:g}..{o.hi:g}"
        low = f"> {o.above:g}" if o.above is not None else (f">= {o.lo:g}" if o.lo is not None else "")
        high = f"<= {o.hi:g}" if o.hi is not None else ""
        return " and ".join(x for x in (low, high) if x)

    def check_range(self, value: Any) -> str | None:
        """Why `value` is out of range ("--minutes 0: must be > 0"), or None."""
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return None
        o = self.opt
        if (o.above is not None and not value > o.above) or (o.lo is not None and value < o.lo) or (
                o.hi is not None and value > o.hi):
            return f"--{self.flag} {value:g}: must be {self.range_text()}"
        return None


def declared(cls: type, prefix: str = "") -> Iterator[Declared]:
    """The declared options of config class `cls`, nested configs included (their paths dotted)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from declared(tp, f"{prefix}{f.name}.")
            continue
        opt = f.metadata.get("option")
        if opt is None:
            continue
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        yield Declared(prefix + f.name, opt, tp, default)


def chosen(cls: type, exclude: tuple[str, ...] = (), flags: dict[str, str] | None = None,
           only: tuple[str, ...] | None = None) -> list[Declared]:
    """The declared options of `cls` one command offers: without the paths (or sections) in `exclude`, with
    the flags in `flags` renamed (a renamed one is offered even from an excluded section: sweep's
    --eval-faces is its evaluate.max_faces). A config names its own in the class attributes OPTION_EXCLUDE
    and OPTION_FLAGS, so its command line and its dashboard request see the same."""
    flags = {**getattr(cls, "OPTION_FLAGS", {}), **(flags or {})}
    exclude = (*getattr(cls, "OPTION_EXCLUDE", ()), *exclude)
    out = []
    for d in declared(cls):
        if only is not None and d.path not in only:
            continue
        if d.path in flags:
            out.append(dataclasses.replace(d, opt=dataclasses.replace(d.opt, flag=flags[d.path])))
        elif not any(d.path == e or d.path.startswith(e + ".") for e in exclude):
            out.append(d)
    return out


# ----------------------------------------------------------------------------------------------------
# The command line.


def _optional(tp: Any) -> tuple[Any, bool]:
    """(the type inside `X | None`, whether None is allowed)."""
    args = typing.get_args(tp)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else tp), True
    return tp, False


def _parser_type(d: Declared) -> Callable[[str], Any]:
    from deepfake.config_io import parse_value
    from deepfake.errors import DeepfakeError

    item = typing.get_args(d.type)[0] if typing.get_origin(d.type) is list else d.type

    def parse(text: str) -> Any:
        try:
            value = parse_value(item, text, "--" + d.flag)
        except DeepfakeError as e:
            raise argparse.ArgumentTypeError(str(e).partition(": ")[2] or str(e)) from None
        return value

    parse.__name__ = getattr(item, "__name__", "value")  # argparse names the type in its errors
    return parse


def add_options(parser: argparse.ArgumentParser | Any, cls: type, *, overrides: bool = False,
                exclude: tuple[str, ...] = (), flags: dict[str, str] | None = None,
                only: tuple[str, ...] | None = None, default_text: str | None = None) -> None:
    """An argparse option for each declared option of `cls`.

    overrides: every default is None, meaning "not given": the command resolves the config elsewhere
    (a preset, a model folder's own config) and applies only the options given (`given_values`); the help
    names the declared default unless `default_text` says where the defaults come from instead ("": the
    command's own help says it).
    """
    for d in chosen(cls, exclude, flags, only):
        help_text = d.opt.help
        if d.range_text() and not d.opt.choices:
            help_text += f" [{d.range_text()}]"
        if overrides and default_text is None:
            help_text += f" (default {show(d.default)})"
        kw: dict[str, Any] = {"dest": d.path, "help": help_text}
        if d.type is bool:
            kw["action"] = "store_false" if d.inverted else "store_true"
            kw["default"] = None if overrides else d.default
        else:
            is_list = typing.get_origin(d.type) is list
            # An empty default means "decided later" (swap's hull region: the model's); argparse leaves it out.
            default = None if overrides else (argparse.SUPPRESS if d.default == "" else d.default)
            kw.update(type=_parser_type(d), default=default)
            if is_list:
                kw["nargs"] = "+"
            if d.opt.choices:
                kw["choices"] = d.opt.choices
            if not d.opt.choices:
                kw["metavar"] = d.opt.metavar or d.flag.upper().replace("-", "_")
        names = (d.opt.short, "--" + d.flag) if d.opt.short else ("--" + d.flag,)
        action = parser.add_argument(*names, **kw)
        action.declared = d  # what the agreement test (tests/test_options.py) compares the dashboard with


def show(value: Any) -> str:
    """A default as help prints it: 1e-3 rather than 0.001."""
    if isinstance(value, float) and value and abs(value) < 1e-2:
        mantissa, _, exponent = f"{value:.0e}".partition("e")
        return f"{mantissa}e{int(exponent)}"
    return str(value)


def given_values(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """{dotted path: value} of the declared options given on the command line (an overrides parser);
    DeepfakeError (one line) for a value out of its range."""
    out = {}
    for d in chosen(cls):
        value = getattr(args, d.path, None)
        if value is not None:
            out[d.path] = _in_range(d, value)
    return out


def config_from_args(cls: type, args: argparse.Namespace, base: Any = None) -> Any:
    """`cls` with every declared option's parsed value; or `base` (a config file's) with those that differ
    from their default, so a file's values stand unless an option says otherwise. DeepfakeError (one line)
    for a value out of its range: the command line's checks are the dashboard's (spec_fields)."""
    from deepfake.config_io import replace_path

    cfg = cls() if base is None else base
    for d in chosen(cls):
        if hasattr(args, d.path):
            value = _in_range(d, getattr(args, d.path))
            if base is not None and value == d.default:
                continue
            cfg = replace_path(cfg, d.path, list(value) if isinstance(value, list) else value)
    return cfg


def _in_range(d: Declared, value: Any) -> Any:
    from deepfake.errors import DeepfakeError

    why = d.check_range(value)
    if why:
        raise DeepfakeError(why)
    return value


# ----------------------------------------------------------------------------------------------------
# The dashboard's job requests.


def spec_fields(cls: type, *, overrides: bool = False, exclude: tuple[str, ...] = (),
                flags: dict[str, str] | None = None, keep_defaults: bool = False) -> dict[str, Any]:
    """pydantic field definitions (name -> (type, FieldInfo)) for `pydantic.create_model`, one per declared
    option of `cls` that the dashboard offers. A value left out is left off the command line, so the CLI's
    default applies; the schema still documents it as the field's default."""
    from typing import Annotated

    from pydantic import Field

    fields: dict[str, Any] = {}
    for d in chosen(cls, exclude, flags):
        if not d.opt.ui:
            continue
        extra = {} if overrides or d.default == "" else {"default": _jsonable(d.default)}
        if d.type is bool:
            fields[d.name] = (bool, Field(default=False, description=d.opt.help,
                                          json_schema_extra={} if overrides else {"default": False}))
            continue
        inner, nullable = _optional(d.type)
        if d.opt.choices:
            tp: Any = Literal[d.opt.choices]  # type: ignore[valid-type]
        elif inner is str:
            tp = Annotated[str, Field(pattern=d.opt.pattern or WORD_PATTERN)]
        elif inner in (int, float):
            tp = Annotated[inner, Field(ge=d.opt.lo, le=d.opt.hi, gt=d.opt.above)]
        elif typing.get_origin(inner) is list:
            tp = list[Annotated[str, Field(pattern=d.opt.pattern or WORD_PATTERN)]]
        else:
            tp = inner
        # keep_defaults: a value left out is the declared default and null is None ('none' on the command
        # line), for options whose None means "off" (faceset clean's thresholds).
        default = d.default if keep_defaults else None
        fields[d.name] = (tp | None, Field(default=default, description=d.opt.help, json_schema_extra=extra))
    return fields


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
