"""Frozen-dataclass configuration with named presets and ``--field=value`` overrides.

The pattern is nanoGPT's configurator without ``exec``: each experiment declares one frozen
dataclass (one field per line, a comment saying what it is), a dict of named presets, and the
command line picks a preset and overrides single fields. Unknown fields and values of the wrong
type are refused with a message naming the field, so a typo never silently runs the default.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

T = TypeVar("T")

__all__ = ["ConfigError", "apply_overrides", "cfg_to_dict", "cfg_from_dict", "describe_fields", "parse_config",
           "parse_experiment_cli",
           "parse_overrides"]


class ConfigError(ValueError):
    """A configuration value that cannot be accepted (unknown field, wrong type, bad preset)."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(name: str, typ: Any, raw: Any) -> Any:
    """Convert ``raw`` (a string from the command line, or a JSON value) to the field's type."""
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (raw is None or (isinstance(raw, str) and raw.lower() in {"none", "null"})):
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(name, option, raw)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"field '{name}': cannot read {raw!r} as {typ}")
    if origin is typing.Literal:
        for option in args:
            try:
                value = _convert(name, type(option), raw)
            except ConfigError:
                continue
            if value == option:
                return value
        raise ConfigError(f"field '{name}': {raw!r} is not one of {list(args)}")
    if origin in (tuple, list):
        if isinstance(raw, str):
            items = [s for s in raw.replace(";", ",").split(",") if s.strip() != ""]
        elif isinstance(raw, (list, tuple)):
            items = list(raw)
        else:
            raise ConfigError(f"field '{name}': expected a comma-separated list, got {raw!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(name, args[0], s.strip() if isinstance(s, str) else s) for s in items)
        if origin is tuple and args:
            if len(items) != len(args):
                raise ConfigError(f"field '{name}': expected {len(args)} items, got {len(items)}")
            return tuple(_convert(name, a, s) for a, s in zip(args, items))
        inner = args[0] if args else str
        out = [_convert(name, inner, s.strip() if isinstance(s, str) else s) for s in items]
        return tuple(out) if origin is tuple else out
    if typ is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise ConfigError(f"field '{name}': expected a boolean (true/false), got {raw!r}")
    if typ is int:
        if isinstance(raw, bool):
            raise ConfigError(f"field '{name}': expected an integer, got {raw!r}")
        if isinstance(raw, int):
            return raw
        try:
            return int(str(raw).replace("_", ""))
        except ValueError:
            raise ConfigError(f"field '{name}': expected an integer, got {raw!r}") from None
    if typ is float:
        if isinstance(raw, bool):
            raise ConfigError(f"field '{name}': expected a number, got {raw!r}")
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"field '{name}': expected a number, got {raw!r}") from None
    if typ is str:
        if not isinstance(raw, str):
            raise ConfigError(f"field '{name}': expected a string, got {raw!r}")
        return raw
    raise ConfigError(f"field '{name}': unsupported type {typ}")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def apply_overrides(cfg: T, overrides: Mapping[str, Any]) -> T:
    """Return a copy of the frozen dataclass ``cfg`` with fields replaced and type-checked.

    Raises:
        ConfigError: a field name is unknown or a value cannot be read as the field's type.
    """
    types_ = _field_types(type(cfg))
    changes = {}
    for key, raw in overrides.items():
        name = key.replace("-", "_")
        if name not in types_:
            known = ", ".join(sorted(types_))
            raise ConfigError(f"unknown field '{key}' for {type(cfg).__name__} (known: {known})")
        changes[name] = _convert(name, types_[name], raw)
    new = dataclasses.replace(cfg, **changes)
    validate = getattr(new, "validate", None)
    if callable(validate):
        validate()
    return new


def parse_overrides(argv: Sequence[str]) -> dict[str, str]:
    """Read ``--field=value`` (or ``--field value``) pairs; anything else is an error."""
    out: dict[str, str] = {}
    i = 0
    argv = list(argv)
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("--") or tok == "--":
            raise ConfigError(f"unexpected argument {tok!r} (expected --field=value)")
        if "=" in tok:
            key, value = tok[2:].split("=", 1)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            key, value = tok[2:], argv[i + 1]
            i += 1
        else:
            raise ConfigError(f"missing value for {tok!r} (expected --field=value)")
        out[key] = value
        i += 1
    return out


def cfg_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of the dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def describe_fields(cfg: Any) -> str:
    """One ``--field=value`` line per field of a config instance (for ``--help`` output)."""
    lines = []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        shown = ",".join(map(str, v)) if isinstance(v, tuple) else v
        lines.append(f"  --{f.name}={shown}")
    return "\n".join(lines)


def cfg_from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Rebuild a config from :func:`cfg_to_dict` output, type-checking every field."""
    defaults = cls()  # type: ignore[call-arg]
    return apply_overrides(defaults, dict(data))


def parse_config(cls: type[T], presets: Mapping[str, T], argv: Sequence[str] | None = None, *,
                 prog: str | None = None, default_preset: str | None = None,
                 extra: argparse.ArgumentParser | None = None) -> tuple[T, argparse.Namespace]:
    """Parse ``--preset NAME [--config file.json] [--field=value ...]`` into a config.

    Args:
        cls: the frozen dataclass type.
        presets: named instances of ``cls`` (e.g. ``{"toy": ..., "paper": ...}``).
        argv: arguments (default ``sys.argv[1:]``).
        prog: program name for messages.
        default_preset: preset used when ``--preset`` is absent (default: the first one).
        extra: a parser holding the command's own (non-config) options, e.g. ``--out``.

    Returns:
        The resolved config and the namespace of ``extra``'s options.

    Raises:
        ConfigError: unknown preset or field, or a value of the wrong type.
    """
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=prog, add_help=False, allow_abbrev=False,
                                     parents=[extra] if extra is not None else [])
    parser.add_argument("--preset", default=default_preset or next(iter(presets)))
    parser.add_argument("--config", default=None, help="JSON file of field values")
    ns, rest = parser.parse_known_args(argv)
    if ns.preset not in presets:
        raise ConfigError(f"unknown preset '{ns.preset}' (choose from {', '.join(presets)})")
    cfg = presets[ns.preset]
    if ns.config:
        path = Path(ns.config)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"{path}: cannot read config JSON ({err})") from None
        try:
            cfg = apply_overrides(cfg, data)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
    cfg = apply_overrides(cfg, parse_overrides(rest))
    return cfg, ns


def parse_experiment_cli(cls: type[T], presets: Mapping[str, T], argv: Sequence[str] | None, *, prog: str,
                         default_preset: str, source: str,
                         validate: Callable[[T], Any] | None = None) -> tuple[T, str] | int:
    """The shared command line of an experiment: ``[--preset P] --out DIR [--field=value ...]``.

    Returns ``(config, out)``, or the exit code when there is nothing to run: 0 after ``--help``
    (usage, presets and every field with the preset's value), 2 after a usage or config error
    (one line on stderr naming the field). ``source`` is the file that documents the fields.
    """
    usage = f"usage: {prog} [--preset {{{','.join(presets)}}}] --out DIR [--field=value ...]"
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--out", help="output folder")
    extra.add_argument("--help", "-h", action="store_true")
    try:
        cfg, ns = parse_config(cls, presets, argv, prog=prog, default_preset=default_preset, extra=extra)
        if validate is not None:
            validate(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if ns.help:
        print(f"{usage}\npresets: {', '.join(presets)}\nfields (values of this preset; "
              f"see {source} for their meaning):\n{describe_fields(cfg)}")
        return 0
    if not ns.out:
        print(f"{usage}\nerror: --out is required", file=sys.stderr)
        return 2
    return cfg, ns.out
