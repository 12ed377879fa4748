"""Plugin registry: hook specifications, plugin discovery, profiles and the weights manifest."""

from .hookspecs import hookimpl, hookspec
from .spec import KINDS
from .spec import ConfigError, EmptyConfig, PluginSpec, config_hash
from .table import BrokenPlugin, PluginClash, PluginTable, UnknownPlugin

__all__ = [
    "KINDS",
    "BrokenPlugin",
    "ConfigError",
    "EmptyConfig",
    "PluginClash",
    "PluginSpec",
    "PluginTable",
    "UnknownPlugin",
    "config_hash",
    "hookimpl",
    "hookspec",
]
