"""The sweep grid: parse it, expand it into named variants, and apply a variant's overrides to the base config.

Keys are dotted TrainConfig paths; a short key (`activation`, `gan_weight`) is looked up in the sections.
Values are checked against the field's type by the same checker that reads config files and `--set`
(deepfake.config), so a wrong type is the same one-line error everywhere.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from deepfake.config import TrainConfig

from deepfake.config_io import check_value, field_type, parse_value, replace_path, to_dict
from deepfake.errors import DeepfakeError

BASELINE = "baseline"
# Grid-file keys that are not config fields: `one_at_a_time: true` makes each value of each key a
# variant of its own against the baseline (a tuning study) instead of the full product, and
# `bundles: [{key: value, ...}, ...]` adds variants that set several keys at once (a schedule, say).
ONE_AT_A_TIME = "one_at_a_time"
BUNDLES = "bundles"

# The section a short key means when several have it: "activation" is the model's, not the discriminator's.
_PREFERRED_SECTION = "model"


@dataclass
class Variant:
    name: str  # stable across runs: derived from the overrides, used as folder name and state key
    overrides: dict[str, Any]  # dotted TrainConfig path -> value
    baseline: bool = False


def resolve_key(key: str, base: TrainConfig) -> str:
    """A grid key -> the dotted TrainConfig path. Short keys (`activation`, `gan_weight`) are looked up."""
    key = key.strip()
    if not key:
        raise DeepfakeError("empty key in sweep grid")
    if "." in key:
        field_type(base, key)  # raises DeepfakeError on an unknown path
        return key
    top = {f.name for f in dataclasses.fields(base)}
    if key in top and not dataclasses.is_dataclass(getattr(base, key)):
        return key
    sections = [f.name for f in dataclasses.fields(base) if dataclasses.is_dataclass(getattr(base, f.name))]
    hits = [s for s in sections if key in {f.name for f in dataclasses.fields(getattr(base, s))}]
    if not hits:
        raise DeepfakeError(f"sweep grid: unknown config field '{key}'")
    if len(hits) > 1 and _PREFERRED_SECTION not in hits:
        raise DeepfakeError(f"sweep grid: '{key}' is ambiguous ({', '.join(h + '.' + key for h in hits)})")
    return f"{_PREFERRED_SECTION if len(hits) > 1 else hits[0]}.{key}"


def parse_grid(spec: str | Path | Iterable[str], base: TrainConfig) -> dict[str, list[Any]]:
    """A grid from YAML/JSON files or inline `key=v1,v2` strings: dotted TrainConfig path -> values.

    A file holds a mapping of key -> list of values (a scalar is a one-value list); nested mappings
    (`model: {activation: [relu, gelu]}`) are flattened to dotted keys, and values keep their YAML types
    (expand_grid checks them). Inline values are text, parsed for the field's type as `--set` parses
    them; commas inside brackets belong to one value, so `encoder_channels=[32,64],[16,32]` is two lists.
    """
    items = [spec] if isinstance(spec, (str, Path)) else list(spec)
    grid: dict[str, list[Any]] = {}
    for item in items:
        text = str(item)
        path = Path(text)
        if "=" not in text or path.suffix.lower() in {".yaml", ".yml", ".json"} and path.is_file():
            for k, v in _read_grid_file(path).items():
                if k == BUNDLES:
                    grid[k] = [{resolve_key(bk, base): bv for bk, bv in _flatten(b).items()} for b in v]
                else:
                    grid[k if k == ONE_AT_A_TIME else resolve_key(k, base)] = v
            continue
        key, _, values = text.partition("=")
        key = resolve_key(key, base)
        tp = field_type(base, key)
        parsed = [parse_value(tp, v, f"sweep grid: {key}") for v in _split_values(values)]
        if not parsed:
            raise DeepfakeError(f"sweep grid: no values in '{text}'")
        grid[key] = parsed
    if not grid:
        raise DeepfakeError("sweep grid is empty")
    return grid


def _split_values(text: str) -> list[str]:
    """Split `v1,v2` on commas outside brackets, so `[64,128],[32,64]` is two list values."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _read_grid_file(path: Path) -> dict[str, list[Any]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML is a superset of JSON
    except FileNotFoundError:
        raise DeepfakeError(f"{path}: sweep grid file not found (or write inline key=v1,v2)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise DeepfakeError(f"{path}: not a readable YAML/JSON grid ({e})") from None
    if not isinstance(data, dict) or not data:
        raise DeepfakeError(f"{path}: a sweep grid must be a non-empty mapping of field -> list of values")
    special = {k: data.pop(k) for k in (ONE_AT_A_TIME, BUNDLES) if k in data}
    bundles = special.get(BUNDLES, [])
    if not isinstance(bundles, list) or not all(isinstance(b, dict) and b for b in bundles):
        raise DeepfakeError(f"{path}: '{BUNDLES}' must be a list of mappings of field -> value")
    grid = {k: (v if isinstance(v, list) else [v]) for k, v in _flatten(data).items()}
    empty = [k for k, v in grid.items() if not v]
    if empty:
        raise DeepfakeError(f"{path}: no values for {', '.join(empty)} (give at least one, or leave the key out)")
    if ONE_AT_A_TIME in special:
        grid[ONE_AT_A_TIME] = [bool(special[ONE_AT_A_TIME])]
    if bundles:
        grid[BUNDLES] = bundles
    return grid


def format_value(x: Any) -> str:
    """A value as variant names and the results table show it: lists as `a,b`."""
    return ",".join(map(str, x)) if isinstance(x, (list, tuple)) else str(x)


def variant_name(overrides: dict[str, Any]) -> str:
    if not overrides:
        return BASELINE
    parts = [f"{k.split('.')[-1]}={format_value(v)}" for k, v in overrides.items()]
    return re.sub(r"[^A-Za-z0-9_.=,+-]", "_", "_".join(parts))[:120]


def expand_grid(grid: dict[str, list[Any]], base: TrainConfig) -> list[Variant]:
    """The baseline first, then every combination (or, with `one_at_a_time`, every value of every key on
    its own), then the bundles. A variant equal to the base config is the baseline.

    Every value is checked against its field's type (YAML's `1` for a float field becomes 1.0), and every
    variant's config against the rules training applies (check_variant), so no variant fails on its config
    after others have trained.
    """
    one_at_a_time = grid.get(ONE_AT_A_TIME, [False])[0]
    fields_ = {k: vs for k, vs in grid.items() if k not in (ONE_AT_A_TIME, BUNDLES)}
    empty = [k for k, vs in fields_.items() if not vs]
    if empty:
        raise DeepfakeError(f"sweep grid: no values for {', '.join(empty)}")
    keys = [resolve_key(k, base) for k in fields_]
    values = [[check_value(field_type(base, k), v, f"sweep grid: {k}") for v in vs]
              for k, vs in zip(keys, fields_.values())]
    if one_at_a_time:
        combos = [{k: v} for k, vs in zip(keys, values) for v in vs]
    else:
        combos = [dict(zip(keys, combo)) for combo in itertools.product(*values)] if keys else []
    for bundle in grid.get(BUNDLES, []):
        combos.append({resolve_key(k, base): check_value(field_type(base, resolve_key(k, base)), v, f"sweep grid: {k}")
                       for k, v in bundle.items()})
    variants = [Variant(BASELINE, {}, baseline=True)]
    seen = {json.dumps(to_dict(base), sort_keys=True)}
    for overrides in combos:
        fingerprint = json.dumps(to_dict(apply_overrides(base, overrides)), sort_keys=True)
        if fingerprint in seen:
            continue  # the baseline (or a duplicate) is trained once
        seen.add(fingerprint)
        variants.append(Variant(variant_name(overrides), overrides))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise DeepfakeError("sweep grid: two variants map to the same name; shorten the values")
    for v in variants:
        check_variant(apply_overrides(base, v.overrides), v.name)
    return variants


def check_variant(cfg: TrainConfig, name: str) -> None:
    """One-line DeepfakeError naming variant `name` when its config cannot train: the checks train() runs
    where it enters, then the networks built on the meta device, where an unknown activation or norm
    surfaces (train() finds those only after loading its data) without allocating anything."""
    from deepfake.train.checks import validate

    try:
        validate(cfg)
        _build_on_meta(cfg)
    except DeepfakeError as e:
        raise DeepfakeError(f"sweep variant {name}: {e}") from None


def _build_on_meta(cfg: TrainConfig) -> None:
    """Build the nets train() builds, shapes only. Only the config's own errors (DeepfakeError) count:
    anything else the meta device cannot do is left to the trainer."""
    import torch

    from deepfake.models import build_autoencoder, build_discriminator

    try:
        with torch.device("meta"):
            build_autoencoder(cfg.model)
            if cfg.loss.gan_weight > 0:
                build_discriminator(cfg.discriminator, cfg.model.resolution)
    except DeepfakeError:
        raise
    except Exception:  # noqa: BLE001 - see the docstring
        pass


def apply_overrides(base: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    cfg = base
    for key, value in overrides.items():
        cfg = replace_path(cfg, key, value)
    return _fit_stage_widths(cfg, overrides)


def _fit_stage_widths(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """A grid over stage counts carries the per-stage widths along, unless the grid sets them too.

    Fewer stages keep the first widths; more stages continue the pattern (encoder widths double,
    decoder widths halve, never below 16). Without this, `encoder_stages=3,5` would only make
    variants that fail to build.
    """
    m = cfg.model
    enc, dec = list(m.encoder_channels), list(m.decoder_channels)
    if "model.encoder_channels" not in overrides:
        enc = _resize_widths(enc, m.encoder_stages, lambda c: c * 2)
    if "model.decoder_channels" not in overrides:
        dec = _resize_widths(dec, m.decoder_stages, lambda c: max(16, c // 2))
    if (enc, dec) == (m.encoder_channels, m.decoder_channels):
        return cfg
    return replace_path(replace_path(cfg, "model.encoder_channels", enc), "model.decoder_channels", dec)


def _resize_widths(widths: list[int], n: int, next_width) -> list[int]:
    out = list(widths[:n])
    while out and len(out) < n:
        out.append(next_width(out[-1]))
    return out
