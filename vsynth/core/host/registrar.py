"""What a plugin's hooks receive, and what ``vsynth plugins`` reports about each plugin.

Kept apart from :mod:`vsynth.core.host.registry` so that the hookspecs can name the registrar
type without importing the registry that calls them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from vsynth.core.host.specs import BridgeSpec, MetricSpec, ModelSpec, WorldSpec


@dataclass
class PluginInfo:
    """What ``vsynth plugins`` reports about one plugin."""

    name: str  # the entry-point name: the ``plugin`` of ``plugin/name``
    version: str
    dist: str = ""  # the distribution that installed it: what `vsynth uninstall` takes
    builtin: bool = False
    error: str = ""  # one line: why it did not load
    warnings: list[str] = field(default_factory=list)  # what it loaded with, e.g. names refused
    disabled_by: str = ""  # the variable that filtered it out, if one did

    @property
    def status(self) -> str:
        if self.disabled_by:
            return "disabled"
        if self.error:
            return "error"
        return "warning" if self.warnings else "ok"

    @property
    def fix(self) -> str:
        return f"vsynth uninstall {self.dist or self.name}" if self.error else ""

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "dist": self.dist,
            "builtin": self.builtin,
            "status": self.status,
            "error": self.error,
            "warnings": list(self.warnings),
            "disabled_by": self.disabled_by,
            "fix": self.fix,
        }


class SpecTables(Protocol):
    """The registry as a registrar sees it: the spec tables and how a spec is added to one."""

    models: dict[str, ModelSpec]
    bridges: dict[str, BridgeSpec]
    metrics: dict[str, MetricSpec]
    worlds: dict[str, WorldSpec]

    def _add(self, table: dict, spec, plugin: PluginInfo) -> None: ...


class Registrar:
    """Handed to a plugin's hooks: records its specs under the plugin's name."""

    def __init__(self, registry: SpecTables, plugin: PluginInfo):
        self._registry = registry
        self._plugin = plugin
        self.plugin = plugin.name

    def register_model(self, spec: ModelSpec) -> None:
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"register_model expects a ModelSpec, got {type(spec).__name__}")
        self._registry._add(self._registry.models, spec.model_copy(update={"plugin": self.plugin}), self._plugin)

    def register_bridge(self, spec: BridgeSpec) -> None:
        if not isinstance(spec, BridgeSpec):
            raise TypeError(f"register_bridge expects a BridgeSpec, got {type(spec).__name__}")
        self._registry._add(self._registry.bridges, spec.model_copy(update={"plugin": self.plugin}), self._plugin)

    def register_metric(self, spec: MetricSpec) -> None:
        if not isinstance(spec, MetricSpec):
            raise TypeError(f"register_metric expects a MetricSpec, got {type(spec).__name__}")
        self._registry._add(self._registry.metrics, spec.model_copy(update={"plugin": self.plugin}), self._plugin)

    def register_world(self, spec: WorldSpec) -> None:
        if not isinstance(spec, WorldSpec):
            raise TypeError(f"register_world expects a WorldSpec, got {type(spec).__name__}")
        self._registry._add(self._registry.worlds, spec.model_copy(update={"plugin": self.plugin}), self._plugin)
