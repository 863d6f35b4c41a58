"""The output folder of a run appears whole or not at all, and concurrent runs never share one.

A run claims its folder before any work with a lock file beside it (``.NAME.lock``, created
exclusively, holding the run's PID), writes into a hidden sibling ``.NAME.partial-PID`` and
renames that into place at the end. A second run with the same ``--out`` is refused at once; a
run with a default name takes the next free one. Any error or interruption removes the partial
folder; what a killed process left behind (its PID is dead) is removed by the next run that
writes in the same parent folder.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from vsynth.errors import OutputExistsError

DEFAULT_ROOT = Path("outputs")
_DEBRIS = re.compile(r"^\.(?P<name>.+)\.(partial-(?P<pid>\d+)|lock)$")


def choose_out_dir(out: Path | None, label: str) -> Path:
    """``out`` if given (it must not hold files), else ``outputs/<time>-<label>`` (made unique when claimed)."""
    if out is not None:
        out = Path(out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise OutputExistsError(f"output folder {out} already exists and is not empty: choose another --out")
        return out
    return DEFAULT_ROOT / f"{time.strftime('%Y%m%d-%H%M%S')}-{label}"


@dataclass
class OutputFolder:
    final: Path  # where the files appear at the end
    partial: Path  # where they are written meanwhile


@contextmanager
def output_folder(final: Path, *, exact: bool) -> Iterator[OutputFolder]:
    """Claim ``final`` (or, unless ``exact``, the next free ``final-N``), yield where to write, and
    rename it into place on success; on any error or interruption nothing is left behind."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_debris(final.parent)
    final, lock = _claim(final, exact)
    partial = final.parent / f".{final.name}.partial-{os.getpid()}"
    try:
        partial.mkdir()
        yield OutputFolder(final, partial)
        try:
            os.rename(partial, final)  # atomic; replaces only a missing or empty folder
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise OutputExistsError(f"output folder {final} was filled by someone else meanwhile: choose another --out") from None
            raise
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        lock.unlink(missing_ok=True)


def _claim(final: Path, exact: bool) -> tuple[Path, Path]:
    """Create ``.NAME.lock`` exclusively for ``final`` or, unless exact, its first free variant."""
    candidate, n = final, 2
    while True:
        lock = candidate.parent / f".{candidate.name}.lock"
        taken = candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir()))
        if not taken:
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                taken = True
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                return candidate, lock
        if exact:
            owner = _lock_owner(lock)
            who = f"another run (pid {owner}) is writing it" if owner else "it already holds files"
            raise OutputExistsError(f"output folder {candidate}: {who}; choose another --out")
        candidate, n = final.with_name(f"{final.name}-{n}"), n + 1


def _lock_owner(lock: Path) -> int | None:
    try:
        return int(lock.read_text())
    except (OSError, ValueError):
        return None


def remove_debris(parent: Path) -> None:
    """Remove partial folders and locks in ``parent`` whose process is gone (killed, or the machine rebooted)."""
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for entry in entries:
        match = _DEBRIS.match(entry.name)
        if match is None:
            continue
        pid = int(match["pid"]) if match["pid"] else _lock_owner(entry)
        if pid is None or _alive(pid):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
