"""Finding plugins: entry points in group ``reid_engine.plugins`` (built-ins included).

One :class:`PluginTable` per engine instance, never a global. A module that fails to import
or to register is kept as a :class:`BrokenPlugin` (reported by ``reid-engine plugins``) while
the others keep working. Two plugins claiming one (kind, name) is a :class:`PluginClash`.

Environment switches (as pytest's ``-p no:NAME`` / ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``):
``REID_ENGINE_DISABLE_PLUGINS=a,b`` skips those entry points; ``REID_ENGINE_DISABLE_PLUGIN_AUTOLOAD=1``
loads only the entry points of the ``reid-engine`` distribution itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from importlib import metadata
from types import ModuleType
from typing import Iterable

import pluggy

from reid_engine.errors import ReidError, UsageError

from . import hookspecs
from .hookspecs import HOOK_KINDS, PROJECT
from .spec import PluginSpec

ENTRY_POINT_GROUP = "reid_engine.plugins"
OWN_DISTRIBUTION = "reid-engine"
DISABLE_ENV = "REID_ENGINE_DISABLE_PLUGINS"
NO_AUTOLOAD_ENV = "REID_ENGINE_DISABLE_PLUGIN_AUTOLOAD"


@dataclass(frozen=True)
class BrokenPlugin:
    """An entry point that could not be loaded, and why."""

    entry_point: str
    target: str
    source: str
    error: str


class UnknownPlugin(UsageError, LookupError):
    """A profile names a plugin that no installed distribution provides (exit code 2; still a LookupError)."""


class PluginClash(ReidError, RuntimeError):
    """Two plugins registered the same kind and name (exit code 1; still a RuntimeError)."""


def _normalise(name: str) -> str:
    return name.replace("_", "-").lower()


class PluginTable:
    """The name → :class:`PluginSpec` table of one engine instance."""

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._specs: dict[tuple[str, str], PluginSpec] = {}
        self.broken: list[BrokenPlugin] = []

    # -- discovery -------------------------------------------------------------------------
    @classmethod
    def discover(cls, modules: Iterable[tuple[ModuleType, str]] = ()) -> "PluginTable":
        """Load every entry point of the group (respecting the environment switches).

        ``modules`` are extra (module, source) pairs, for embedding applications.
        """
        table = cls()
        disabled = {_normalise(n) for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
        own_only = os.environ.get(NO_AUTOLOAD_ENV, "") not in ("", "0", "false")
        seen: set[tuple[str, str]] = set()
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist_name = ep.dist.name if ep.dist is not None else "?"
            if (ep.name, ep.value) in seen:  # the same distribution seen twice on sys.path
                continue
            seen.add((ep.name, ep.value))
            if _normalise(ep.name) in disabled:
                continue
            if own_only and _normalise(dist_name) != OWN_DISTRIBUTION:
                continue
            source = f"{dist_name} {ep.dist.version if ep.dist else ''}".strip()
            try:
                module = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import failure is reported, not fatal
                table.broken.append(BrokenPlugin(ep.name, ep.value, source, f"{type(exc).__name__}: {exc}"))
                continue
            table.add_module(module, source=source, name=ep.name)
        for module, source in modules:
            table.add_module(module, source=source, name=module.__name__)
        return table

    def add_module(self, module: ModuleType, *, source: str, name: str) -> None:
        """Register one plugin module and collect the specs its hooks register."""
        if self._pm.is_registered(module):  # one module behind two entry points: its specs are in already
            return
        try:
            self._pm.register(module, name=f"{source}:{name}")  # entry-point names repeat across distributions
            self._pm.check_pending()
        except (pluggy.PluginValidationError, ValueError) as exc:
            if self._pm.is_registered(module):
                self._pm.unregister(module)
            self.broken.append(BrokenPlugin(name, module.__name__, source, f"invalid hook: {exc}"))
            return
        collected: list[PluginSpec] = []
        try:
            for hook_name, kind in HOOK_KINDS.items():
                for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
                    if impl.plugin is module:
                        impl.function(register=lambda spec, kind=kind: collected.append(self._check(spec, kind, name)))
        except Exception as exc:  # noqa: BLE001
            self._pm.unregister(module)
            self.broken.append(BrokenPlugin(name, module.__name__, source, f"{type(exc).__name__}: {exc}"))
            return
        for spec in collected:
            spec = replace(spec, source=source, entry_point=f"{name} = {module.__name__}")
            key = (spec.kind, spec.name)
            if key in self._specs:
                other = self._specs[key]
                raise PluginClash(
                    f"two plugins claim the {spec.kind} name {spec.name!r}: {other.source} ({other.entry_point}) "
                    f"and {spec.source} ({spec.entry_point}); "
                    f"uninstall one, or skip one with {DISABLE_ENV}=<entry point name>"
                )
            self._specs[key] = spec

    @staticmethod
    def _check(spec: object, kind: str, entry: str) -> PluginSpec:
        if not isinstance(spec, PluginSpec):
            raise TypeError(f"{entry}: register() takes a PluginSpec, got {type(spec).__name__}")
        if spec.kind != kind:
            raise TypeError(f"{entry}: plugin {spec.name!r} of kind {spec.kind!r} registered through the {kind} hook")
        return spec

    # -- lookup ----------------------------------------------------------------------------
    def get(self, kind: str, name: str, where: str = "") -> PluginSpec:
        """The spec of plugin ``name`` of ``kind``; an unknown name lists the known ones."""
        spec = self._specs.get((kind, name))
        if spec is None:
            choices = ", ".join(self.names(kind)) or "(none installed)"
            prefix = f"{where}: " if where else ""
            hint = ""
            broken = [b.entry_point for b in self.broken]
            if broken:
                hint = f" (plugins that failed to load: {', '.join(broken)}; see `reid-engine plugins`)"
            raise UnknownPlugin(f"{prefix}unknown {kind} {name!r}; installed {kind}s: {choices}{hint}")
        return spec

    def names(self, kind: str) -> list[str]:
        return sorted(n for k, n in self._specs if k == kind)

    def all(self) -> list[PluginSpec]:
        return sorted(self._specs.values(), key=lambda s: (s.kind, s.name))
