"""Configs to and from JSON, and typed values for `--set KEY=VALUE` and sweep grids.

`to_dict`/`from_dict` handle nesting; unknown keys and wrongly typed values are errors, so a typo in a
config file is caught at the boundary instead of silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from deepfake.errors import DeepfakeError

T = TypeVar("T")


# ----------------------------------------------------------------------------------------------------
# JSON round trips.


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain JSON-able dict of a (nested) dataclass."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            v = to_dict(v)
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build `cls` from a dict, each value checked against its field's type (see `check_value`).

    Nested dataclasses are built too. Unknown keys and wrongly typed values raise DeepfakeError.
    """
    if not isinstance(data, dict):
        raise DeepfakeError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise DeepfakeError(f"{where}: unknown key(s) {', '.join(unknown)} for {cls.__name__}")
    return cls(**{key: check_value(hints[key], value, f"{where}.{key}") for key, value in data.items()})


def save_json(cfg: Any, path: str | Path) -> None:
    from deepfake.io.atomic import atomic_write_json

    atomic_write_json(path, to_dict(cfg))


def load_json(cls: type[T], path: str | Path) -> T:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DeepfakeError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DeepfakeError(f"{path}: not a readable JSON config ({e})") from None
    return from_dict(cls, data, where=str(path))


def replace_path(cfg: T, dotted: str, value: Any) -> T:
    """Return a copy of `cfg` with `a.b.c` set to `value` (used by sweeps and `--set key=value`)."""
    head, _, rest = dotted.partition(".")
    if head not in {f.name for f in dataclasses.fields(cfg)}:
        raise DeepfakeError(f"unknown config field '{dotted}' for {type(cfg).__name__}")
    if rest:
        return dataclasses.replace(cfg, **{head: replace_path(getattr(cfg, head), rest, value)})
    return dataclasses.replace(cfg, **{head: value})



# ----------------------------------------------------------------------------------------------------
# Typed values: one checker for JSON config files, `--set KEY=VALUE` and sweep grids.
#
# Typed input (JSON, YAML) must already have the field's type, widened only where nothing is lost: an
# integer for a float field, a list for a tuple. Text input is parsed for the field's type:
#   int    an integer literal only: `steps=1e3` is an error, so a float never lands in an int field
#   float  anything float() reads, integers included
#   bool   true/false, yes/no, on/off, 1/0 (any case)
#   str    the text as it is
#   list, tuple   a JSON list (`[128,256]`) or comma-separated items (`128,256`); a tuple's length is checked
#   X | None      none or null for None, else X
# A wrong value is a one-line DeepfakeError that names the field and the type it expects.

_TRUE, _FALSE, _NONE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}, {"none", "null"}
_HINTS = {bool: " (true/false)", int: " (a whole number such as 1000)"}


class _Mismatch(Exception):
    pass


def field_type(cfg: Any, dotted: str) -> Any:
    """The type hint of field `a.b.c` of a config dataclass (a class or an instance)."""
    tp = root = cfg if isinstance(cfg, type) else type(cfg)
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(tp) or part not in {f.name for f in dataclasses.fields(tp)}:
            raise DeepfakeError(f"unknown config field '{dotted}' for {root.__name__}")
        tp = typing.get_type_hints(tp)[part]
    return tp


def check_value(tp: Any, value: Any, where: str = "config") -> Any:
    """A typed `value` (from JSON or YAML) as type `tp`; a dict for a dataclass type is built."""
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    return _checked(tp, value, False, where)


def parse_value(tp: Any, text: str, where: str = "config") -> Any:
    """The text of a value (`--set`, an inline sweep grid) parsed as type `tp`."""
    if dataclasses.is_dataclass(tp):
        raise DeepfakeError(f"{where}: is a section ({tp.__name__}); set one of its fields, {where}.NAME=VALUE")
    return _checked(tp, text.strip(), True, where)


def parse_override(cfg: Any, dotted: str, text: str) -> Any:
    """The value `dotted=text` sets on `cfg`, typed for that field, e.g. parse_override(cfg, "steps", "1000")."""
    return parse_value(field_type(cfg, dotted), text, dotted)


def _checked(tp: Any, value: Any, text: bool, where: str) -> Any:
    try:
        return _convert(tp, value, text)
    except _Mismatch:
        name = tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")
        raise DeepfakeError(f"{where}: expected {name}{_HINTS.get(tp, '')}, got {value!r}") from None


def _convert(tp: Any, value: Any, text: bool) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if type(None) in args and (value is None or text and value.lower() in _NONE):
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, text)
            except _Mismatch:
                pass
        raise _Mismatch
    if origin in (list, tuple):
        return _convert_items(origin, args, value, text)
    if tp is bool:
        if text and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        if not text and isinstance(value, bool):
            return value
    elif tp is int:
        if text and re.fullmatch(r"[+-]?\d+", value):
            return int(value)
        if not text and isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
    elif tp is float:
        if text:
            try:
                return float(value)
            except ValueError:
                pass
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        return value  # Any and other hints: not checked
    raise _Mismatch


def _convert_items(origin: type, args: tuple, value: Any, text: bool) -> list | tuple:
    if text and value.startswith("["):
        try:
            value, text = json.loads(value), False
        except json.JSONDecodeError:
            raise _Mismatch from None
    elif text:
        value = [v.strip() for v in value.split(",")] if value else []
    if not isinstance(value, (list, tuple)):
        raise _Mismatch
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise _Mismatch
        return tuple(_convert(t, v, text) for t, v in zip(args, value))
    item = args[0] if args else Any
    items = [_convert(item, v, text) for v in value]
    return tuple(items) if origin is tuple else items
