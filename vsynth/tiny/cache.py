"""Where the tiny models are cached, and how a cached copy is known to be intact.

The cache is ``$VSYNTH_CACHE``, else ``~/.cache/vsynth``; when the home folder is unset, empty or
read-only, a per-user folder in the system's temporary directory. Each cached model carries a
manifest of its files' SHA-256 hashes, so that a truncated or edited copy is found and rebuilt
instead of failing somewhere inside from_pretrained.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path

from vsynth.errors import CacheError, VsynthInputError

MANIFEST = "vsynth-manifest.json"
_log = logging.getLogger("vsynth")


def cache_base() -> Path:
    """A writable cache folder: the one VSYNTH_CACHE names (or an error saying so), else home's, else a temporary one."""
    configured = os.environ.get("VSYNTH_CACHE", "").strip()
    if configured:
        base = Path(configured).expanduser()
        if not _writable(base):
            raise VsynthInputError(f"VSYNTH_CACHE={configured} cannot be written: set VSYNTH_CACHE to a writable folder")
        return base
    home = os.environ.get("HOME", "").strip()
    if home and _writable(Path(home) / ".cache" / "vsynth"):
        return Path(home) / ".cache" / "vsynth"
    fallback = Path(tempfile.gettempdir()) / f"vsynth-cache-{os.getuid()}"
    if not _writable(fallback):
        raise VsynthInputError("no writable cache folder (HOME is unset or read-only): set VSYNTH_CACHE to a writable folder")
    _log.warning("HOME is unset or read-only: caching tiny models in %s (set VSYNTH_CACHE to choose)", fallback)
    return fallback


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        Path(tempfile.mkdtemp(prefix=".probe-", dir=folder)).rmdir()
    except OSError:
        return False
    return True


def write_manifest(folder: Path) -> None:
    """Record the hash of every file of ``folder`` (a freshly built model)."""
    (folder / MANIFEST).write_text(json.dumps(_hashes(folder), indent=1, sort_keys=True) + "\n")


def intact(folder: Path) -> bool:
    """Whether ``folder`` holds exactly the files its manifest lists, with their hashes."""
    try:
        return json.loads((folder / MANIFEST).read_text()) == _hashes(folder)
    except (OSError, ValueError):
        return False


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def cache_errors(build):
    """Decorates a function that writes the cache: an OSError from it (a full disk, a file where the cache
    keeps a folder) becomes one :class:`~vsynth.errors.CacheError` line saying what to do."""

    @functools.wraps(build)
    def wrapper(*args, **kwargs):
        try:
            return build(*args, **kwargs)
        except Exception as exc:
            error = _os_error(exc)
            if error is None:
                raise
            raise CacheError(_cache_message(error, *args)) from exc

    return wrapper


def _os_error(exc: Exception) -> OSError | None:
    """``exc`` as an OSError: itself, or safetensors' SafetensorError, which reports a failed write as '(os error N)'."""
    if isinstance(exc, OSError):
        return exc
    match = re.search(r"\(os error (\d+)\)", str(exc)) if type(exc).__name__ == "SafetensorError" else None
    return OSError(int(match[1]), os.strerror(int(match[1]))) if match else None


def _cache_message(exc: OSError, name: str = "", *_) -> str:
    what = f"cannot build the tiny model {name} in the cache" if name else "cannot write the tiny-model cache"
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{what}: {exc.strerror}{where}; free some space, or set VSYNTH_CACHE to a folder on another disk"
    blocker = _file_in_the_way(exc)
    if blocker is not None:
        return f"{what}: {blocker} is a file where the cache keeps a folder; move it away, or set VSYNTH_CACHE to another folder"
    return f"{what}: {exc.strerror or exc}{where}; set VSYNTH_CACHE to a writable folder"


def _file_in_the_way(exc: OSError) -> Path | None:
    """The file (not a folder) at or above the paths of ``exc``, if one is why a folder could not be made."""
    if exc.errno not in (errno.EEXIST, errno.ENOTDIR):
        return None
    for name in (exc.filename2, exc.filename):
        path = Path(name) if name else None
        while path is not None and path != path.parent:
            if path.exists() and not path.is_dir():
                return path
            path = path.parent
    return None
