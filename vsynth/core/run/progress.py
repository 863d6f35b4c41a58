"""Stages of a run: each is timed, and shown as a progress bar when a display is attached.

The display is anything with rich's ``Progress`` interface (``add_task``, ``update``); the
library runs silently without one.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

Advance = Callable[[int], None]


class Stages:
    def __init__(self, display=None):
        self.display = display
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Advance]:
        """Time the block under ``name``; the yielded ``advance(n)`` moves its bar by n units."""
        task = self.display.add_task(name, total=total) if self.display is not None else None

        def advance(n: int = 1) -> None:
            if task is not None:
                self.display.update(task, advance=n)

        start = time.perf_counter()
        try:
            yield advance
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 3)
            if task is not None:
                self.display.update(task, completed=total if total is not None else 1, total=total or 1)
