"""The output folder of a run appears whole or not at all.

Files are written into a hidden sibling folder that is renamed into place at the end; any error
or interruption removes it.
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from vsynth.errors import OutputExistsError

DEFAULT_ROOT = Path("outputs")


def choose_out_dir(out: Path | None, label: str) -> Path:
    """``out`` if given (it must not hold files), else a new ``outputs/<time>-<label>`` folder."""
    if out is not None:
        out = Path(out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise OutputExistsError(f"output folder {out} already exists and is not empty: choose another --out")
        return out
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = DEFAULT_ROOT / f"{stamp}-{label}"
    n = 2
    while candidate.exists():
        candidate = DEFAULT_ROOT / f"{stamp}-{label}-{n}"
        n += 1
    return candidate


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it becomes ``final``, on any error it is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if final.is_dir() and not any(final.iterdir()):
            final.rmdir()
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
