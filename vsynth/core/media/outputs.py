"""The output folder of a run appears whole or not at all, and concurrent runs never share one.

A run claims its folder before any work with a lock file beside it (``.NAME.vsynth-lock``,
created exclusively, holding a small JSON record with the run's PID and host), writes into a
hidden sibling ``.NAME.vsynth-partial-PID`` that holds a ``.vsynth-partial`` marker naming the
same PID, and renames that into place at the end. A second run with the same ``--out`` is
refused at once; a run with a default name takes the next free one. Any error or interruption
removes the partial folder.

What a killed process left behind is removed by the next run that writes in the same parent
folder, but only what vsynth can prove it made: a lock whose content is vsynth's record, or a
partial folder whose marker names the PID in its name, and only when that PID is dead on this
host. Anything else, whatever its name, is never touched (a user's ``.notes.partial-999999``
included).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import vsynth.interrupts as interrupts
from vsynth.errors import OutputExistsError, OutputWriteError

DEFAULT_ROOT = Path("outputs")
PARTIAL_MARKER = ".vsynth-partial"
_DEBRIS = re.compile(r"^\.(?P<name>.+)\.(vsynth-partial-(?P<pid>\d+)|vsynth-lock)$")


def choose_out_dir(out: Path | None, label: str) -> Path:
    """``out`` if given (it must not hold files), else ``outputs/<time>-<label>`` (made unique when claimed)."""
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise OutputExistsError(f"--out {out} is a file, not a folder: choose another --out")
        if out.exists() and any(out.iterdir()):
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
    rename it into place on success; on any error or interruption nothing is left behind.

    A ``final`` that is a symbolic link (to an empty folder, or dangling) is written where it points.
    """
    final = _follow_link(Path(final))
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_debris(final.parent)
    final, lock = _claim(final, exact)
    partial = partial_path(final)
    try:
        create_partial(partial)
        yield OutputFolder(final, partial)
        interrupts.check()  # a Ctrl-C swallowed on the way (a library's finalizer) stops the run before it is put in place
        (partial / PARTIAL_MARKER).unlink()
        try:
            os.rename(partial, final)  # atomic; replaces only a missing or empty folder
        except OSError as exc:
            empty = final.is_dir() and not final.is_symlink() and not any(final.iterdir())
            if not empty and exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise _filled_meanwhile(final) from None
            if not empty:
                raise
            # an empty folder the rename cannot replace: a mount point (a container's volume; EBUSY), an immutable
            # folder (EPERM), any existing folder on Windows (EEXIST)
            _fill(final, partial)
            partial.rmdir()
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        lock.unlink(missing_ok=True)


def _fill(final: Path, partial: Path) -> None:
    """Move what ``partial`` holds into the empty folder ``final``, which the rename could not replace (EBUSY for a
    mount point, EPERM for an immutable folder); on failure, take out what was moved, so that ``final`` stays empty."""
    moved = []
    try:
        if any(final.iterdir()):
            raise _filled_meanwhile(final)
        for item in sorted(partial.iterdir()):
            moved.append(final / item.name)
            shutil.move(item, final / item.name)
    except BaseException as exc:  # a failure, or Ctrl-C meanwhile: what was moved goes, so that the folder stays empty
        for item in moved:
            shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)
        if not isinstance(exc, OSError):
            raise
        raise OutputWriteError(f"cannot write the output folder {final}: {exc.strerror or exc}; nothing was left in it: choose another --out") from None


def _filled_meanwhile(final: Path) -> OutputExistsError:
    return OutputExistsError(f"output folder {final} was filled by someone else meanwhile: choose another --out")


def _follow_link(path: Path) -> Path:
    """Where a symbolic link ``path`` points (followed to the end, dangling or not); ``path`` itself otherwise."""
    if not path.is_symlink():
        return path
    target = Path(os.path.realpath(path))
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise OutputExistsError(f"output folder {path} links to {target}, which already exists and is not empty: choose another --out")
    return target


def _claim(final: Path, exact: bool) -> tuple[Path, Path]:
    """Create ``.NAME.vsynth-lock`` exclusively for ``final`` or, unless exact, its first free variant."""
    candidate, n = final, 2
    while True:
        lock = lock_path(candidate)
        taken = candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir()))
        if not taken:
            try:
                create_lock(lock)
            except FileExistsError:
                taken = True
            else:
                return candidate, lock
        if exact:
            owner = lock_owner(lock)
            who = f"another run (pid {owner}) is writing it" if owner else "it already holds files"
            raise OutputExistsError(f"output folder {candidate}: {who}; choose another --out")
        candidate, n = final.with_name(f"{final.name}-{n}"), n + 1


def partial_path(final: Path) -> Path:
    """Where this process writes what becomes ``final``: ``.NAME.vsynth-partial-PID`` beside it."""
    return final.parent / f".{final.name}.vsynth-partial-{os.getpid()}"


def create_partial(partial: Path) -> None:
    """Create the folder ``partial`` (see :func:`partial_path`) holding vsynth's marker, so that
    :func:`remove_debris` can prove it is vsynth's when a killed process leaves it; remove the marker
    before renaming the folder into place.

    One already there, marked with this PID and host, is an earlier process's (PIDs are reused: in a container, at every
    start), which remove_debris keeps as this process is alive: it is replaced, as the caller holds the name
    (a lock, or one build at a time). Anything else there raises FileExistsError."""
    record = _read_record(partial / PARTIAL_MARKER)
    if record is not None and (record["pid"], record.get("host")) == (os.getpid(), socket.gethostname()) and not partial.is_symlink():
        shutil.rmtree(partial)
    partial.mkdir()
    (partial / PARTIAL_MARKER).write_text(_record())


def lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.vsynth-lock"


def create_lock(lock: Path) -> None:
    """Create ``lock`` exclusively with vsynth's record in it; FileExistsError if it exists."""
    fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        os.write(fd, _record().encode())
    finally:
        os.close(fd)


def _record() -> str:
    """What proves that vsynth made a lock or partial folder, and whose process it was."""
    return json.dumps({"vsynth": 1, "pid": os.getpid(), "host": socket.gethostname()})


def _read_record(path: Path) -> dict | None:
    """vsynth's record in ``path``, or None when it is not one (anything a user wrote)."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 4096:
            return None
        record = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or record.get("vsynth") != 1 or not isinstance(record.get("pid"), int):
        return None
    return record


def lock_owner(lock: Path) -> int | None:
    record = _read_record(lock)
    return None if record is None else record["pid"]


def remove_debris(parent: Path) -> None:
    """Remove the partial folders and locks in ``parent`` that vsynth made and whose process is gone
    (killed, or the machine rebooted); everything else stays, whatever its name."""
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for entry in entries:
        match = _DEBRIS.match(entry.name)
        if match is None or entry.is_symlink():
            continue
        if match["pid"]:
            record = _read_record(entry / PARTIAL_MARKER) if entry.is_dir() else None
            if record is None or record["pid"] != int(match["pid"]):
                continue
        else:
            record = _read_record(entry)
            if record is None:
                continue
        if is_stale(record):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def is_stale(record: dict) -> bool:
    """Whether the process of a vsynth record is gone; a record of another host is never stale here."""
    return record.get("host") == socket.gethostname() and not _alive(record["pid"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def batch_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder`` for one batch: a second batch writing the same folder at once is refused
    (its summary would overwrite this one's). A lock left by a dead batch is taken over."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".batch.vsynth-lock"
    while True:
        try:
            create_lock(lock)
            break
        except FileExistsError:
            record = _read_record(lock)
            if record is not None and is_stale(record):
                lock.unlink(missing_ok=True)
                continue
            who = f"another batch (pid {record['pid']}) is writing it" if record else f"{lock.name} is in the way"
            raise OutputExistsError(f"batch folder {folder}: {who}; wait for it to finish or choose another --out") from None
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
