"""The hooks a vsynth plugin implements.

A plugin is any module (built-in, or found through the ``vsynth`` entry-point group) with
functions marked ``@vsynth.hookimpl``. Each hook receives a :class:`Registrar` bound to that
plugin, so every spec knows which plugin registered it. Hooks must only register metadata:
importing torch or loading weights here would slow down ``vsynth models`` for everyone.
"""

from __future__ import annotations

from vsynth.core.host.markers import hookspec
from vsynth.core.host.registrar import Registrar


@hookspec
def vsynth_register_models(registrar: Registrar) -> None:
    """Register image and video models with ``registrar.register_model(ModelSpec(...))``."""


@hookspec
def vsynth_register_bridges(registrar: Registrar) -> None:
    """Register bridging strategies with ``registrar.register_bridge(BridgeSpec(...))``."""


@hookspec
def vsynth_register_metrics(registrar: Registrar) -> None:
    """Register metrics with ``registrar.register_metric(MetricSpec(...))``, and worlds that know their videos'
    ground truth with ``registrar.register_world(WorldSpec(...))``."""
