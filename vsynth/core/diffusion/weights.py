"""Where each model's weights come from: a local directory, the hub cache, the hub, or ``--tiny``.

Weights are located before anything heavy is loaded, so that a run whose weights cannot be had
fails in a second with one line (which weights, how large, how to pass a local copy, that
``--tiny`` exists) instead of after huggingface_hub's retries.
"""

from __future__ import annotations

import os
import re
import socket
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

from vsynth.core.host.specs import ModelSpec, WeightsSpec
from vsynth.errors import VsynthInputError, WeightsUnavailableError


def weight_flags(spec: ModelSpec) -> dict[str, str]:
    """How a user replaces each set of weights: the first with --idm/--vdm-weights, the others with -o ROLE=..."""
    return {w.role: (f"--{spec.kind}-weights DIR" if i == 0 else f"-o {w.role}=DIR") for i, w in enumerate(spec.weights)}


def resolve_sources(spec: ModelSpec, primary: str | None, options: dict[str, object], tiny: bool) -> dict[str, str]:
    """Pick the source of every weights role: an explicit override, else the tiny model or the hub id."""
    from vsynth.tiny import tiny_weights

    sources = {}
    for i, weights in enumerate(spec.weights):
        override = primary if i == 0 else options.get(weights.role)
        if override:
            sources[weights.role] = str(override)
        elif tiny:
            if weights.tiny is None:
                raise VsynthInputError(f"{spec.name} has no tiny form for its {weights.role} weights")
            sources[weights.role] = str(tiny_weights(weights.tiny))
        else:
            sources[weights.role] = weights.id
    return sources


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _looks_like_path(source: str) -> bool:
    """Hub ids are ``name`` or ``namespace/name``; anything else is meant as a directory."""
    return not _HUB_ID.match(source)


@cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connection to the hub endpoint: cheap, and no retries."""
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot_download(repo_id, local_files_only=True)
        return True
    except (LocalEntryNotFoundError, ValueError, OSError):
        return False


def locate(weights: WeightsSpec, source: str, flag: str) -> str:
    """Return a source that ``from_pretrained`` can load, or raise a one-line error saying what to do."""
    path = Path(source).expanduser()
    if path.exists():  # a folder, or a single checkpoint file for models that load one
        return str(path)
    if _looks_like_path(source):
        raise VsynthInputError(f"{weights.role} weights directory not found: {source}")
    if _in_hub_cache(source) or hub_reachable():
        return source
    raise WeightsUnavailableError(
        f"cannot get {weights.role} weights '{source}' (about {weights.size_gb:g} GB): not in the local cache and the hub "
        f"is unreachable; download them elsewhere and pass the folder with {flag}, or add --tiny to run on offline tiny models"
    )
