"""What a plugin registers: :class:`PluginSpec`, and building a validated config for it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from reid_engine.errors import UsageError

# the plugin kinds, one per ``register_*`` hook (hookspecs.HOOK_KINDS maps hook names to them)
KINDS: tuple[str, ...] = ("embedder", "extractor", "matcher", "scorer", "preprocessor", "segmenter", "dataset")


class ConfigError(UsageError, ValueError):
    """A profile or plugin config names an unknown key or a value of the wrong type (exit code 2).

    Still a ValueError, as it was before it joined :class:`~reid_engine.errors.ReidError`."""


@dataclass(frozen=True)
class EmptyConfig:
    """Config of a plugin that takes no options."""


@dataclass(frozen=True)
class PluginSpec:
    """One named plugin.

    ``build(config, device)`` returns the working object (see the hook docs for each kind);
    ``config_cls`` is a frozen dataclass whose defaults are the plugin's defaults. ``version``
    must change whenever the plugin's output changes: it is part of every cache key.
    """

    name: str
    kind: str
    version: str
    build: Callable[[Any, str], Any]
    config_cls: type = EmptyConfig
    description: str = ""
    # filled in by the registry: the distribution and the entry point that registered it
    source: str = field(default="", compare=False)
    entry_point: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"plugin {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not dataclasses.is_dataclass(self.config_cls):
            raise TypeError(f"plugin {self.name!r}: config_cls must be a dataclass")

    def make_config(self, options: Mapping[str, Any] | None = None, where: str = "") -> Any:
        """Build the config dataclass from ``options``; unknown keys, bad types or values its own
        checks refuse raise ConfigError."""
        options = dict(options or {})
        fields = {f.name: f for f in dataclasses.fields(self.config_cls)}
        unknown = sorted(set(options) - set(fields))
        prefix = f"{where}: " if where else ""
        if unknown:
            choices = ", ".join(sorted(fields)) or "(none: this plugin takes no options)"
            raise ConfigError(
                f"{prefix}unknown option {', '.join(map(repr, unknown))} for {self.kind} {self.name!r}; "
                f"its options are: {choices}"
            )
        hints = typing.get_type_hints(self.config_cls)
        for key, value in options.items():
            options[key] = coerce_value(value, hints.get(key), f"{prefix}{self.name}.{key}")
        try:
            return self.config_cls(**options)
        except ValueError as exc:  # the config's own checks (``__post_init__``): a profile error, not a crash
            raise ConfigError(f"{prefix}{self.kind} {self.name!r} rejects its options: {exc}") from None


def coerce_value(value: Any, hint: Any, where: str) -> Any:
    """Check (and lightly convert: int → float, list → tuple) a TOML value against a type hint."""
    if hint is None or hint is Any:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce_value(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else None
        return tuple(coerce_value(v, inner, where) for v in value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def config_hash(*parts: Any) -> str:
    """A stable 16-hex hash, part of every cache key: ``config_hash(config)`` hashes one config
    dataclass (its fields), ``config_hash(a, b, ...)`` several values together (e.g. a config
    hash folded with the view it sees). Cached features are keyed by these values: never change them.
    """
    if len(parts) == 1 and dataclasses.is_dataclass(parts[0]) and not isinstance(parts[0], type):
        payload: Any = dataclasses.asdict(parts[0])
    else:
        payload = parts
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
