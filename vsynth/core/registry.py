"""The plugin host: built-in and installed plugins, and the specs they register.

Entry points are loaded one at a time and every hook is called per plugin, so a plugin that
fails to import, or whose hooks do not match the hookspecs, is recorded with its reason while
every other plugin keeps working. ``VSYNTH_STRICT_PLUGINS=1`` re-raises instead.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from typing import Iterable

import pluggy

from vsynth import __version__
from vsynth.core import hookspecs
from vsynth.core.specs import BridgeSpec, ModelSpec
from vsynth.errors import PluginError, UnknownNameError

ENTRY_POINT_GROUP = "vsynth"
BUILTIN = "vsynth"
BUILTIN_MODULES = ("vsynth.plugins.idm", "vsynth.plugins.vdm", "vsynth.plugins.bridges")


@dataclass
class PluginInfo:
    name: str
    version: str
    status: str = "ok"  # "ok" or "error"
    error: str = ""
    builtin: bool = False

    def as_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "status": self.status, "error": self.error, "builtin": self.builtin}


class Registrar:
    """Handed to a plugin's hooks: records its specs under the plugin's name."""

    def __init__(self, registry: Registry, plugin: str):
        self._registry = registry
        self.plugin = plugin

    def register_model(self, spec: ModelSpec) -> None:
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"register_model expects a ModelSpec, got {type(spec).__name__}")
        self._registry._add(self._registry.models, spec.model_copy(update={"plugin": self.plugin}))

    def register_bridge(self, spec: BridgeSpec) -> None:
        if not isinstance(spec, BridgeSpec):
            raise TypeError(f"register_bridge expects a BridgeSpec, got {type(spec).__name__}")
        self._registry._add(self._registry.bridges, spec.model_copy(update={"plugin": self.plugin}))


@dataclass
class Registry:
    """Every spec of every plugin that loaded, and a report on each plugin."""

    models: dict[str, ModelSpec] = field(default_factory=dict)
    bridges: dict[str, BridgeSpec] = field(default_factory=dict)
    plugins: dict[str, PluginInfo] = field(default_factory=dict)

    def _add(self, table: dict, spec) -> None:
        existing = table.get(spec.name)
        if existing is not None:
            raise PluginError(f"{spec.kind} '{spec.name}' is already registered by plugin '{existing.plugin}'")
        table[spec.name] = spec

    def model(self, name: str, kind: str) -> ModelSpec:
        spec = self.models.get(name)
        if spec is None or spec.kind != kind:
            names = [n for n, s in self.models.items() if s.kind == kind]
            raise UnknownNameError(_unknown(f"{kind.upper()}", name, names))
        return spec

    def bridge(self, name: str) -> BridgeSpec:
        if name not in self.bridges:
            raise UnknownNameError(_unknown("bridge", name, list(self.bridges)))
        return self.bridges[name]


def _unknown(what: str, name: str, names: Iterable[str]) -> str:
    names = sorted(names)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown {what} '{name}': {hint}choose from {', '.join(names)} (see `vsynth models`)"


def _strict() -> bool:
    return os.environ.get("VSYNTH_STRICT_PLUGINS", "") not in ("", "0")


def _plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _register_module(pm: pluggy.PluginManager, registry: Registry, module, name: str, plugin: str) -> None:
    """Register one plugin module and run its hooks against a registrar bound to ``plugin``.

    On failure nothing of the module stays behind: neither its hooks nor the specs it managed
    to register before failing.
    """
    pm.register(module, name=name)
    try:
        registrar = Registrar(registry, plugin)
        for hook in (pm.hook.vsynth_register_models, pm.hook.vsynth_register_bridges):
            for impl in hook.get_hookimpls():
                if impl.plugin_name == name:
                    impl.function(registrar=registrar)
    except BaseException:
        pm.unregister(name=name)
        for table in (registry.models, registry.bridges):
            for key in [k for k, spec in table.items() if spec.plugin == plugin]:
                del table[key]
        raise


def build_registry(entry_points: Iterable[metadata.EntryPoint] | None = None) -> Registry:
    """Load the built-in plugins, then every installed plugin, each one in isolation."""
    import importlib

    registry = Registry()
    pm = _plugin_manager()
    registry.plugins[BUILTIN] = PluginInfo(BUILTIN, __version__, builtin=True)
    for module_name in BUILTIN_MODULES:
        _register_module(pm, registry, importlib.import_module(module_name), module_name, BUILTIN)

    if entry_points is None:
        entry_points = metadata.entry_points(group=ENTRY_POINT_GROUP)
    for ep in entry_points:
        version = ep.dist.version if ep.dist is not None else "?"
        info = registry.plugins[ep.name] = PluginInfo(ep.name, version)
        try:
            _register_module(pm, registry, ep.load(), ep.name, ep.name)
        except Exception as exc:  # a broken plugin must not break the others
            if _strict():
                raise PluginError(f"plugin '{ep.name}' failed to load: {exc}") from exc
            info.status = "error"
            info.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return registry


@cache
def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    return build_registry()
