"""One error hierarchy (ReidError: exit 1, UsageError: exit 2) and the one place the CLI maps it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from typer.testing import CliRunner

from reid_engine.errors import DatabaseError, ImageDecodeError, ManifestError, ReidError, UsageError
from reid_engine.registry import ConfigError, PluginClash, UnknownPlugin, config_hash


def _engine_exceptions() -> set[type]:
    """Every exception class defined in a reid_engine module (modules whose optional dependency
    is missing are skipped; __main__ would run the CLI)."""
    found: set[type] = set()
    names = ["reid_engine"]
    for package in ("reid_engine", "reid_engine.registry", "reid_engine.plugins"):  # separate folders
        names += [package] + [i.name for i in pkgutil.walk_packages(importlib.import_module(package).__path__,
                                                                    f"{package}.")]
    for name in sorted(set(names)):
        if name.endswith("__main__"):
            continue
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith("reid_engine."):
                found.add(obj)
    return found


def test_every_engine_error_is_a_reid_error_with_its_exit_code():
    found = _engine_exceptions()
    assert {ReidError, UsageError, ManifestError, DatabaseError, ImageDecodeError,
            ConfigError, UnknownPlugin, PluginClash} <= found
    for cls in found:
        assert issubclass(cls, ReidError), f"{cls.__module__}.{cls.__qualname__} is not a ReidError"
        assert cls.exit_code == (2 if issubclass(cls, UsageError) else 1), cls


@pytest.mark.parametrize("cls, code, old_base", [
    (ConfigError, 2, ValueError), (UnknownPlugin, 2, LookupError), (PluginClash, 1, RuntimeError),
    (ImageDecodeError, 2, Exception), (ManifestError, 2, Exception), (DatabaseError, 1, Exception),
])
def test_registry_and_image_errors_keep_their_exit_codes_and_old_bases(cls, code, old_base):
    assert issubclass(cls, ReidError) and cls.exit_code == code
    assert issubclass(cls, old_base)  # code that caught the stdlib base still catches them


def test_one_config_hash_keeps_the_cached_values():
    """Cached features are keyed by these hashes: the values must never change."""
    from reid_engine.registry.profiles import ImageSettings, SegmentSettings

    assert config_hash(ImageSettings()) == "be976ffcae4d371c"  # one config dataclass: its fields
    assert config_hash(SegmentSettings()) == "18795015ebdca7a1"
    # several parts (components.build_components, embedding/stored.py): the parts as a list
    assert config_hash([["clahe", "1", "abcdef0123456789"]], 1600, 32) == "46d965e8e728d691"
    assert config_hash("abcdef0123456789", "f" * 64, None) == "5e28ec17c85b0d51"


class Surprise(ReidError):
    """A failure the CLI has never heard of."""


class SurpriseUsage(UsageError):
    """A usage error the CLI has never heard of."""


@pytest.mark.parametrize("exc, code", [
    (Surprise("the gallery is on the moon; bring it back"), 1),
    (SurpriseUsage("--moon: not a flag; drop it"), 2),
    (ConfigError("p.toml [image]: unknown key 'x'"), 2),
    (PermissionError(13, "Permission denied", "cache/x.pth"), 1),
])
@pytest.mark.parametrize("argv, target", [
    (["weights", "list"], "reid_engine.weights.status"),  # a subcommand
    (["profiles"], "reid_engine.registry.profiles.builtin_profiles"),  # a top-level command without a handler of its own
])
def test_the_cli_maps_any_reid_error_to_one_line_and_its_exit_code(monkeypatch, exc, code, argv, target):
    from reid_engine.cli import app

    def fail(*args, **kwargs):
        raise exc

    module, name = target.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(module), name, fail)
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == code
    assert result.stderr == f"error: {exc}\n"
    assert "Traceback" not in result.output + result.stderr
    assert result.stdout == ""


def test_ctrl_c_in_a_command_exits_130(monkeypatch):
    from reid_engine.cli import app

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("reid_engine.weights.status", interrupt)
    result = CliRunner().invoke(app, ["weights", "list"])
    assert result.exit_code == 130
    assert "Traceback" not in result.stderr
