"""``vsynth install`` and ``vsynth uninstall``: pip in vsynth's own interpreter, and what that
changed among the installed plugins.

Nothing here imports a plugin: the entry points are read as metadata only, so a broken plugin
cannot stop the command that removes it.
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


def describe_changes(before: set[InstalledPlugin], after: set[InstalledPlugin]) -> list[str]:
    """One line per plugin that was added, removed or changed version."""
    old = {(p.name, p.dist): p for p in before}
    new = {(p.name, p.dist): p for p in after}
    lines = [f"added plugin '{p.name}' ({p.dist} {p.version})" for key, p in sorted(new.items()) if key not in old]
    lines += [f"removed plugin '{p.name}' ({p.dist} {p.version})" for key, p in sorted(old.items()) if key not in new]
    lines += [
        f"updated plugin '{p.name}' ({p.dist} {old[key].version} -> {p.version})"
        for key, p in sorted(new.items())
        if key in old and old[key].version != p.version
    ]
    return lines or ["no vsynth plugin was added or removed"]


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
