"""The plugin host: built-in and installed plugins, and the specs they register.

Entry points are loaded one at a time and every hook is called per plugin, so a plugin that
fails to import, or whose hooks do not match the hookspecs, is recorded with its reason while
every other plugin keeps working. ``VSYNTH_STRICT_PLUGINS=1`` re-raises instead.

Names: specs are stored under ``plugin/name``. A built-in name cannot be taken by a plugin (its
spec is skipped and the plugin reported); when two plugins register one short name of one kind,
both are kept and the short name is refused with the qualified choices. Entry points load sorted
by (plugin name, distribution name), so when two distributions name their plugin alike, the one
whose distribution name sorts first keeps it, on every machine; the other is reported, and a run
that asks for one of its models is told why it is missing.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from typing import Callable, Iterable, Iterator

import pluggy

import vsynth.interrupts as interrupts
from vsynth.version import __version__
from vsynth.core.host import hookspecs
from vsynth.core.host.markers import PROJECT
from vsynth.core.host.registrar import PluginInfo, Registrar
from vsynth.core.host.specs import BridgeSpec, MetricSpec, ModelSpec, SpecError, WorldSpec
from vsynth.errors import PluginError, PluginRunError, UnknownNameError, VsynthError, shorten

ENTRY_POINT_GROUP = "vsynth"
BUILTIN = "vsynth"
BUILTIN_MODULES = ("vsynth.plugins.idm", "vsynth.plugins.vdm", "vsynth.plugins.bridges", "vsynth.plugins.metrics", "vsynth.toy.plugin")
HOOKS = tuple(name for name in vars(hookspecs) if name.startswith("vsynth_"))
# Importing these while loading makes every command slow; a plugin that does is warned.
HEAVY_MODULES = ("torch",)
# A plugin whose import takes longer delays every command; it is warned, by name.
SLOW_IMPORT_SECONDS = 2.0

STRICT_ENV = "VSYNTH_STRICT_PLUGINS"
LOAD_ENV = "VSYNTH_LOAD_PLUGINS"
DISABLE_ENV = "VSYNTH_DISABLE_PLUGINS"


@dataclass
class Registry:
    """Every spec of every plugin that loaded (keyed ``plugin/name``), and a report on each plugin."""

    models: dict[str, ModelSpec] = field(default_factory=dict)
    bridges: dict[str, BridgeSpec] = field(default_factory=dict)
    metrics: dict[str, MetricSpec] = field(default_factory=dict)
    worlds: dict[str, WorldSpec] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    # Specs of plugins that did not load because another distribution has their plugin name.
    clashed: list[tuple[ModelSpec | BridgeSpec, PluginInfo]] = field(default_factory=list)

    def _add(self, table: dict, spec, plugin: PluginInfo) -> None:
        same = [s for s in table.values() if s.name == spec.name and s.kind == spec.kind]
        if any(s.plugin == spec.plugin for s in same):
            raise PluginError(f"{spec.kind} '{spec.name}' is registered twice")
        if any(s.plugin == BUILTIN for s in same):
            plugin.warnings.append(f"{spec.kind} '{spec.name}' not loaded: the name belongs to a built-in {spec.kind}")
            return
        table[spec.qualified_name] = spec

    def conflicts(self, spec) -> bool:
        """Whether another plugin registers the same short name for the same kind."""
        table = self._table(spec.kind)
        return sum(s.name == spec.name and s.kind == spec.kind for s in table.values()) > 1

    def _table(self, kind: str) -> dict:
        return {"bridge": self.bridges, "metric": self.metrics, "world": self.worlds}.get(kind, self.models)

    def address(self, spec) -> str:
        """The name a user types for ``spec``: the short name, or ``plugin/name`` when it conflicts."""
        return spec.qualified_name if self.conflicts(spec) else spec.name

    @property
    def failed(self) -> list[PluginInfo]:
        """The plugins that did not load (not those a variable disabled)."""
        return [p for p in self.plugins if p.error]

    def failure_lines(self) -> list[str]:
        """One line per plugin that did not load, for commands that list or resolve names (`vsynth plugins` has its table)."""
        return [
            f"plugin '{p.name}' ({p.dist or p.name} {p.version}) did not load: {p.error}; `vsynth plugins` shows it, "
            f"`{p.fix}` removes it"
            for p in self.failed
        ]

    def provider(self, spec) -> dict[str, str]:
        """The distribution and version that provide ``spec`` (the built-ins: vsynth and its version), for run.json."""
        info = next((p for p in self.plugins if p.name == spec.plugin and not p.error and not p.disabled_by), None)
        return {"dist": info.dist, "version": info.version} if info is not None else {"dist": "", "version": ""}

    def model(self, name: str, kind: str | None = None) -> ModelSpec:
        """The model called ``name`` (short or ``plugin/name``), of ``kind`` when given."""
        return self._lookup(self.models, name, kind, kind.upper() if kind else "model")

    def bridge(self, name: str) -> BridgeSpec:
        return self._lookup(self.bridges, name, "bridge", "bridge")

    def metric(self, name: str) -> MetricSpec:
        return self._lookup(self.metrics, name, "metric", "metric")

    def world(self, name: str) -> WorldSpec:
        return self._lookup(self.worlds, name, "world", "world")

    def _lookup(self, table: dict, name: str, kind: str | None, what: str):
        candidates = [s for s in table.values() if kind is None or s.kind == kind]
        matches = [s for s in candidates if name in (s.name, s.qualified_name)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            choices = " or ".join(f"'{s.qualified_name}'" for s in matches)
            raise UnknownNameError(f"{what} '{name}' is registered by several plugins: choose {choices}")
        for spec, plugin in self.clashed:
            same_table = self._table(spec.kind) is table
            if same_table and (kind is None or spec.kind == kind) and name in (spec.name, spec.qualified_name):
                raise UnknownNameError(f"{what} '{name}' is provided by {plugin.dist} {plugin.version}, which did not load: {plugin.error}")
        raise UnknownNameError(unknown_name(what, name, [self.address(s) for s in candidates], self.failed))


def unknown_name(what: str, name: str, names: Iterable[str], failed: Iterable[PluginInfo] = ()) -> str:
    """The one line for a name nobody registered: the closest match, every choice, and the plugins
    that did not load (one of them may be where the name comes from)."""
    names = sorted(names)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    line = f"unknown {what} '{shorten(name)}': {hint}choose from {', '.join(names)} (see `vsynth models`)"
    failed = [f"'{p.name}' ({p.dist or p.name} {p.version})" for p in failed]
    if failed:
        plugins = f"plugin {failed[0]} did not" if len(failed) == 1 else f"plugins {', '.join(failed)} did not"
        line += f"; {plugins} load and may provide it: see `vsynth plugins`"
    return line


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join([f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__, *lines[1:]])


def _env_set(name: str) -> set[str] | None:
    """A comma list from the environment: None when unset, possibly empty when set."""
    value = os.environ.get(name)
    return None if value is None else {item.strip() for item in value.split(",") if item.strip()}


def _disabled_by(ep: metadata.EntryPoint) -> str:
    """Which variable, if any, filters this plugin out; a plugin is named by its entry point or its distribution."""
    names = {ep.name, ep.dist.name if ep.dist is not None else ep.name}
    load, disable = _env_set(LOAD_ENV), _env_set(DISABLE_ENV)
    if load is not None and not names & load:
        return LOAD_ENV
    if disable is not None and names & disable:
        return DISABLE_ENV
    return ""


def _warn_unmatched_filter(entry_points: list[metadata.EntryPoint]) -> None:
    """A name in VSYNTH_LOAD_PLUGINS or VSYNTH_DISABLE_PLUGINS that no installed plugin has is most likely a typo."""
    installed = {ep.name for ep in entry_points} | {ep.dist.name for ep in entry_points if ep.dist is not None}
    for variable in (LOAD_ENV, DISABLE_ENV):
        for name in sorted((_env_set(variable) or set()) - installed):
            close = difflib.get_close_matches(name, sorted(installed), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            choices = ", ".join(sorted(ep.name for ep in entry_points)) or "none"
            logging.getLogger("vsynth").warning("%s names '%s', which matches no installed plugin: %sinstalled: %s", variable, name, hint, choices)


def _strict() -> bool:
    return os.environ.get(STRICT_ENV, "") not in ("", "0")


def _plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _register_module(pm: pluggy.PluginManager, registry: Registry, module, plugin: PluginInfo) -> None:
    """Register one plugin module and run its hooks against a registrar bound to ``plugin``.

    pluggy checks the hooks' arguments against the hookspecs; a ``vsynth_*`` hook that no
    hookspec declares (a typo) is refused here too. The module is unregistered afterwards, as
    its hooks have run. On failure none of its specs stay behind, even those registered before
    the failure.
    """
    pm.register(module, name=plugin.name)
    try:
        for caller in pm.get_hookcallers(module) or []:
            if caller.spec is None:
                raise PluginError(f"unknown hook '{caller.name}': vsynth's hooks are {', '.join(HOOKS)}")
        arguments = {"registrar": Registrar(registry, plugin)}
        for hook in HOOKS:
            for impl in getattr(pm.hook, hook).get_hookimpls():
                if impl.plugin_name == plugin.name:
                    impl.function(**{name: arguments[name] for name in impl.argnames})
    except BaseException:
        for table in (registry.models, registry.bridges, registry.metrics, registry.worlds):
            for key in [k for k, spec in table.items() if spec.plugin == plugin.name]:
                del table[key]
        raise
    finally:
        pm.unregister(name=plugin.name)


class NameTakenError(PluginError):
    """A plugin whose name another distribution (or the built-ins) already loaded under."""


def _load_entry_point(pm: pluggy.PluginManager, registry: Registry, ep: metadata.EntryPoint, info: PluginInfo) -> None:
    holder = next((p for p in registry.plugins if p.name == ep.name and not p.disabled_by), None)
    if holder is not None:
        by = "the built-ins" if holder.builtin else f"{holder.dist} (plugins load sorted by distribution name)"
        fix = "" if holder.builtin else ", or uninstall one of the two"  # the built-ins cannot be uninstalled
        raise NameTakenError(f"the plugin name '{ep.name}' is taken by {by}; rename the entry point in the group '{ENTRY_POINT_GROUP}'{fix}")
    with _plugin_interrupts("being imported"):
        module = _import_plugin(ep, info)
    with _plugin_interrupts("registering"):
        _register_module(pm, registry, module, info)


def _import_plugin(ep: metadata.EntryPoint, info: PluginInfo):
    """Import an entry point's module, warning about a slow import or one that pulls in torch."""
    heavy_before = {m for m in HEAVY_MODULES if m in sys.modules}
    start = time.perf_counter()
    module = ep.load()
    seconds = time.perf_counter() - start
    if seconds > SLOW_IMPORT_SECONDS:
        warning = f"took {seconds:.1f} s to import, which delays every vsynth command: import heavy modules in the implementation module"
        info.warnings.append(warning)
        logging.getLogger("vsynth").warning("plugin '%s' %s", ep.name, warning)
    for heavy in sorted(m for m in HEAVY_MODULES if m in sys.modules and m not in heavy_before):
        info.warnings.append(f"imports {heavy} when loaded, which slows every command: import it in the implementation module")
    return module


def _clashed_specs(pm: pluggy.PluginManager, ep: metadata.EntryPoint, info: PluginInfo) -> list:
    """What a plugin that lost its name would have registered, so that a run asking for it hears why
    it is missing; nothing when it does not load on its own either."""
    scratch = Registry()
    try:
        with _plugin_interrupts("loading"):
            _register_module(pm, scratch, _import_plugin(ep, PluginInfo(ep.name, info.version)), PluginInfo(ep.name, info.version))
    except KeyboardInterrupt:
        raise
    except BaseException:
        return []
    return [*scratch.models.values(), *scratch.bridges.values(), *scratch.metrics.values(), *scratch.worlds.values()]


@contextmanager
def _plugin_interrupts(doing: str) -> Iterator[None]:
    """A KeyboardInterrupt the plugin's own code raises (at import or in a hook) is a broken plugin; the user's
    Ctrl-C meanwhile stops the command, as everywhere else."""
    with _user_interrupts() as interrupted:
        try:
            yield
        except KeyboardInterrupt:
            if interrupted():
                raise
            raise PluginError(f"raised KeyboardInterrupt while {doing}") from None


@contextmanager
def _user_interrupts() -> Iterator[Callable[[], bool]]:
    """Yield a check: did a real SIGINT (the user's Ctrl-C) arrive, as opposed to a plugin raising KeyboardInterrupt?"""
    handler = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if handler is signal.SIG_IGN:
        yield lambda: False  # started with SIGINT ignored (nohup, `cmd &` in a script): no Ctrl-C can arrive
        return
    if handler is interrupts.interrupt:  # the CLI's: it remembers a real one
        yield interrupts.pending
        return
    if handler is not signal.default_int_handler:
        yield lambda: True  # no handler of ours to tell them apart: treat it as the user's
        return
    received = []

    def on_sigint(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield lambda: bool(received)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def build_registry(entry_points: Iterable[metadata.EntryPoint] | None = None, strict: bool | None = None) -> Registry:
    """Load the built-in plugins, then every installed plugin (or ``entry_points``), each one in isolation,
    sorted by (plugin name, distribution name). ``strict`` (default: ``VSYNTH_STRICT_PLUGINS``) raises
    on the first plugin that fails instead of reporting it."""
    registry = Registry()
    pm = _plugin_manager()
    builtin = PluginInfo(BUILTIN, __version__, dist="vsynth", builtin=True)
    for module_name in BUILTIN_MODULES:
        _register_module(pm, registry, importlib.import_module(module_name), builtin)
    registry.plugins.append(builtin)

    if entry_points is None:
        entry_points = metadata.entry_points(group=ENTRY_POINT_GROUP)
    entry_points = sorted(entry_points, key=lambda ep: (ep.name, ep.dist.name if ep.dist is not None else ""))
    _warn_unmatched_filter(entry_points)
    strict = _strict() if strict is None else strict
    for ep in entry_points:
        dist = ep.dist.name if ep.dist is not None else ""
        info = PluginInfo(ep.name, ep.dist.version if ep.dist is not None else "?", dist=dist, disabled_by=_disabled_by(ep))
        if not info.disabled_by:
            try:
                _load_entry_point(pm, registry, ep, info)
            except KeyboardInterrupt:
                raise  # the user's Ctrl-C (a plugin's own KeyboardInterrupt became a PluginError)
            except BaseException as exc:  # a broken plugin must not break the others, even one calling sys.exit()
                plain = isinstance(exc, (NameTakenError, SpecError))  # already one line in plain words
                if strict:
                    raise PluginError(f"plugin '{ep.name}' failed to load: {str(exc) if plain else _one_line(exc)}") from exc
                info.error = str(exc) if plain else _one_line(exc)
                info.warnings.clear()
                if isinstance(exc, NameTakenError):
                    registry.clashed += [(spec, info) for spec in _clashed_specs(pm, ep, info)]
        registry.plugins.append(info)
    return registry


@cache
def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    return build_registry()


@contextmanager
def plugin_errors(spec: ModelSpec | BridgeSpec, registry: Registry | None = None) -> Iterator[None]:
    """Around a third-party plugin's code: what it raises, other than vsynth's own errors, becomes one line
    naming its distribution and version (:class:`~vsynth.errors.PluginRunError`, whose ``__cause__`` keeps the
    traceback for its authors). A built-in's error stays a traceback: that is vsynth's bug."""
    if spec.plugin == BUILTIN:
        yield
        return
    try:
        yield
    except VsynthError:
        raise
    except Exception as exc:
        provider = (registry or get_registry()).provider(spec)
        who = f"{provider['dist']} {provider['version']}" if provider["dist"] else spec.plugin
        reason = (str(exc).strip().splitlines() or [""])[0][:300]
        raise PluginRunError(
            f"plugin {who}: {spec.kind} '{spec.name}' failed: {type(exc).__name__}: {reason}".rstrip(": ")
            + f"; report it to the plugin's authors, update the plugin, or choose another {spec.kind}"
        ) from exc
