"""Stages of a run: each is timed, and shown as a progress bar when a display is attached.

The display is anything with rich's ``Progress`` interface (``add_task``, ``update``); the
library runs silently without one.
"""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from typing import Callable, Iterator

import vsynth.interrupts as interrupts
from vsynth.errors import InvalidArgumentError, NonFiniteError

Advance = Callable[[int], None]


def check_display(display) -> None:
    """A display is what :func:`shown` takes (None, True, False, or anything with rich Progress's ``add_task``
    and ``update``); anything else is refused by name, before a run starts rather than when its first stage
    begins (after loading)."""
    if display is None or isinstance(display, bool):
        return
    if all(callable(getattr(display, method, None)) for method in ("add_task", "update")):
        return
    given = repr(display) if len(repr(display)) <= 60 else f"a {type(display).__name__}"
    raise InvalidArgumentError(
        f"display={given}: must be None (progress bars where a terminal or notebook shows them), True (always), "
        "False (never) or a rich.progress.Progress (anything with add_task and update)"
    )


class Stages:
    def __init__(self, display=None):
        self.display = display
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Advance]:
        """Time the block under ``name``; the yielded ``advance(n)`` moves its bar by n units."""
        interrupts.check()
        task = self.display.add_task(name, total=total) if self.display is not None else None

        def advance(n: int = 1) -> None:
            interrupts.check()
            if task is not None:
                self.display.update(task, advance=n)

        start = time.perf_counter()
        try:
            yield advance
        except NonFiniteError as exc:
            raise NonFiniteError(
                f"stage '{name}': {exc}; the run stopped (lower --guidance, or check the weights for NaN values)"
            ) from None
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 3)
            if task is not None:
                self.display.update(task, completed=total if total is not None else 1, total=total or 1)


COMPILING = "compiling (torch.compile)"


@contextmanager
def compiling(stages: Stages, enabled: bool) -> Iterator[None]:
    """Within the block, torch.compile's compilations (during the first steps of each compiled UNet, minutes
    on a CPU) show as one bar counting the graphs compiled, so that a long first step shows its reason.

    Not timed as a stage: it happens inside the stages that run the UNets."""
    if not enabled:
        yield
        return
    with warnings.catch_warnings():  # torchao's quantized tensors tell torch.compile's cache they cannot be hashed, per graph
        warnings.filterwarnings("ignore", message=".*does not implement _stable_hash_for_caching", category=UserWarning)
        if stages.display is None:
            yield
            return
        yield from _compile_bar(stages)


def _compile_bar(stages: Stages) -> Iterator[None]:
    from torch._dynamo.callback import callback_handler

    task, compiled = None, 0

    def started(args) -> None:
        nonlocal task
        if task is None:
            task = stages.display.add_task(COMPILING, total=None)

    def ended(args) -> None:
        nonlocal compiled
        compiled += 1
        stages.display.update(task, advance=1)

    callback_handler.register_start_callback(started)
    callback_handler.register_end_callback(ended)
    try:
        yield
    finally:
        callback_handler.remove_start_callback(started)
        callback_handler.remove_end_callback(ended)
        if task is not None:
            stages.display.update(task, total=compiled, completed=compiled)


@contextmanager
def library_progress_bars(show: bool) -> Iterator[None]:
    """Hide diffusers' and transformers' per-model loading bars unless ``show``; restore them after.

    The hub's download bars stay on: a 5 GB download deserves one.
    """
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as transformers_logging

    switches = {  # is it on, turn it on, turn it off
        "diffusers": (diffusers_logging.is_progress_bar_enabled, diffusers_logging.enable_progress_bar, diffusers_logging.disable_progress_bar),
        "transformers": (transformers_logging.is_progress_bar_enabled, transformers_logging.enable_progress_bar, transformers_logging.disable_progress_bar),
        "hub": (lambda: not are_progress_bars_disabled(), enable_progress_bars, disable_progress_bars),
    }  # fmt: skip
    before = {name: is_on() for name, (is_on, _, _) in switches.items()}
    if not show:
        switches["diffusers"][2]()
        switches["transformers"][2]()  # also turns off the hub's bars...
        switches["hub"][1]()  # ...which downloads need
    try:
        yield
    finally:
        for name, (_, turn_on, turn_off) in switches.items():
            (turn_on if before[name] else turn_off)()


# (logger, message start) of what the libraries say while falling back on the cache, which they do
# and then load fine: an unreachable hub, a repo without safetensors. A real failure still raises.
FALLBACK_MESSAGES = (
    ("huggingface_hub.hf_api", "Could not reach the Hub"),
    ("diffusers.models.modeling_utils", "An error occurred while trying to fetch"),
)
FALLBACK_WARNINGS = r"The `local_dir_use_symlinks` argument is deprecated"  # diffusers passes it to huggingface_hub


@contextmanager
def quiet_library_fallbacks() -> Iterator[None]:
    """Keep the libraries' cache-fallback lines out of a run's output (download bars stay)."""
    import logging
    import warnings

    def keep(record: logging.LogRecord) -> bool:
        return not any(record.name == name and record.getMessage().startswith(start) for name, start in FALLBACK_MESSAGES)

    loggers = [logging.getLogger(name) for name, _ in FALLBACK_MESSAGES]
    for logger in loggers:
        logger.addFilter(keep)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=FALLBACK_WARNINGS, category=UserWarning)
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(keep)


def can_show_progress() -> bool:
    """Whether progress bars can be seen: stderr is a terminal, or this runs in a Jupyter notebook
    that has ipywidgets (rich draws its live bars there with them, and only warns without them)."""
    from importlib.util import find_spec

    from rich.console import Console

    console = Console(stderr=True)
    return console.is_terminal or (console.is_jupyter and find_spec("ipywidgets") is not None)


@contextmanager
def shown(display) -> Iterator[object | None]:
    """The display a library run reports its stages to.

    ``None`` (the default): rich progress bars on stderr where :func:`can_show_progress`, else none;
    ``True``: the bars anywhere; ``False``: none; anything else is the caller's own Progress, used as is.
    """
    if display is None:
        display = can_show_progress()
    if display is True:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=Console(stderr=True)) as progress:
            yield progress
    else:
        yield display if display is not False else None
