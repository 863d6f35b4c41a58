"""``vsynth install`` and ``vsynth uninstall``: pip in vsynth's own interpreter, and what that
changed among the installed plugins.

Nothing here imports a plugin into vsynth's process: the entry points are read as metadata only,
so a broken plugin cannot stop the command that removes it. After an install, the new plugins are
loaded and checked in a fresh interpreter (:func:`check_plugins`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

from vsynth.core.host.registry import BUILTIN, ENTRY_POINT_GROUP

# Read in a fresh interpreter: after pip, this process's sys.path and metadata caches are stale
# (an editable install adds a path entry at start-up; an uninstalled one leaves its path behind).
_LIST_ENTRY_POINTS = f"""
import json
from importlib import metadata
eps = metadata.entry_points(group={ENTRY_POINT_GROUP!r})
print(json.dumps([[ep.name, ep.dist.name, ep.dist.version] if ep.dist else [ep.name, "?", "?"] for ep in eps]))
"""


# Also in a fresh interpreter: it loads the plugins as the next vsynth command will.
_CHECK_PLUGINS = "import json, sys; from vsynth.core.host.installer import plugin_checks; print(json.dumps(plugin_checks(json.loads(sys.argv[1]))))"


@dataclass(frozen=True, order=True)
class InstalledPlugin:
    name: str  # entry-point name
    dist: str
    version: str


def installed_plugins() -> set[InstalledPlugin]:
    """The entry points of the group ``vsynth`` that a new vsynth process would find."""
    listing = subprocess.run([sys.executable, "-c", _LIST_ENTRY_POINTS], capture_output=True, text=True, check=True)
    return {InstalledPlugin(*row) for row in json.loads(listing.stdout)}


def run_pip(args: list[str]) -> int:
    """``python -m pip ARGS`` with this interpreter, so packages land where vsynth finds them."""
    return subprocess.run([sys.executable, "-m", "pip", *args]).returncode


def new_plugins(before: set[InstalledPlugin], after: set[InstalledPlugin]) -> list[InstalledPlugin]:
    """The plugins that pip added, or changed the version of."""
    return sorted(after - before)


def check_plugins(plugins: list[InstalledPlugin]) -> dict[InstalledPlugin, dict]:
    """Load every plugin as the next vsynth command will, and say of each of ``plugins`` what stops
    it working (``problems``) and what users should know (``warnings``); see :func:`plugin_checks`."""
    if not plugins:
        return {}
    names = json.dumps([[p.name, p.dist] for p in plugins])
    check = subprocess.run([sys.executable, "-c", _CHECK_PLUGINS, names], capture_output=True, text=True)
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["no output"])[-1]
        return {p: {"problems": [], "warnings": [f"could not check plugin '{p.name}' ({last})"]} for p in plugins}
    by_key = {(r["name"], r["dist"]): r for r in json.loads(check.stdout.strip().splitlines()[-1])}
    return {p: by_key.get((p.name, p.dist), {"problems": [], "warnings": []}) for p in plugins}


def plugin_checks(names: list[list[str]]) -> list[dict]:
    """For each (entry-point name, distribution) in ``names``: whether it loads, registers something,
    whose every implementation imports, and whose short names no other plugin registers.

    A plugin that lost its name to another distribution is left to :func:`describe_clashes`.
    """
    from vsynth.core.host.registry import build_registry
    from vsynth.core.run.validate import impl_problem

    registry = build_registry(strict=False)
    specs = [*registry.models.values(), *registry.bridges.values(), *registry.metrics.values(), *registry.worlds.values()]
    records = []
    for info in registry.plugins:
        if [info.name, info.dist] not in names:
            continue
        problems, warnings = [], [f"plugin '{info.name}': {w}" for w in info.warnings]
        if info.disabled_by:
            warnings.append(f"plugin '{info.name}' is disabled by {info.disabled_by}")
        elif info.error:
            lost_its_name = any(p.name == info.name and p is not info and not p.error and not p.builtin for p in registry.plugins)
            problems += [] if lost_its_name else [info.error]
        else:
            own = [s for s in specs if s.plugin == info.name]
            problems += [] if own else ["registers no model, bridge or metric (its hooks vsynth_register_models, vsynth_register_bridges and vsynth_register_metrics registered nothing: are they decorated with @hookimpl, from vsynth import hookimpl?)"]
            problems += [problem for problem in map(impl_problem, own) if problem]
            for spec in own:
                for other in sorted(s.plugin for s in specs if (s.name, s.kind) == (spec.name, spec.kind) and s.plugin != info.name):
                    warnings.append(
                        f"plugin '{info.name}' registers {spec.kind} '{spec.name}', which plugin '{other}' registers too: "
                        f"users must type '{spec.qualified_name}'"
                    )
        records.append({"name": info.name, "dist": info.dist, "problems": problems, "warnings": warnings})
    return records


def describe_changes(before: set[InstalledPlugin], after: set[InstalledPlugin], broken: set[InstalledPlugin] = frozenset()) -> list[str]:
    """One line per plugin that was added, removed or changed version; none for those in ``broken``
    (installed, but not working: the caller says why)."""
    old = {(p.name, p.dist): p for p in before}
    new = {(p.name, p.dist): p for p in after}
    lines = [f"added plugin '{p.name}' ({p.dist} {p.version})" for key, p in sorted(new.items()) if key not in old and p not in broken]
    lines += [f"removed plugin '{p.name}' ({p.dist} {p.version})" for key, p in sorted(old.items()) if key not in new]
    lines += [
        f"updated plugin '{p.name}' ({p.dist} {old[key].version} -> {p.version})"
        for key, p in sorted(new.items())
        if key in old and old[key].version != p.version and p not in broken
    ]
    return lines or ([] if broken else ["no vsynth plugin was added or removed"])


def describe_clashes(before: set[InstalledPlugin], after: set[InstalledPlugin]) -> list[str]:
    """One line per newly installed plugin whose name another distribution (or the built-ins) has.

    The rule is the registry's: the built-ins keep ``vsynth``; otherwise the distribution whose
    name sorts first keeps the plugin name, and the other does not load.
    """
    old = {(p.name, p.dist) for p in before}
    lines = []
    for new in sorted(p for p in after if (p.name, p.dist) not in old):
        rivals = sorted(p.dist for p in after if p.name == new.name and p.dist != new.dist)
        if new.name == BUILTIN:
            lines.append(f"plugin '{new.name}' ({new.dist}) will not load: the name '{BUILTIN}' belongs to the built-ins")
        elif rivals:
            winner = min([new.dist, *rivals])
            losers = ", ".join(d for d in sorted([new.dist, *rivals]) if d != winner)
            lines.append(
                f"plugin name '{new.name}' is also used by {', '.join(rivals)}: {winner} keeps it (distribution names "
                f"sort first) and {losers} will not load; uninstall one, or ask its author to rename the entry point"
            )
    return lines
