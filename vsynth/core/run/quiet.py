"""What a Python caller of ``vsynth.run`` sees of a run: vsynth's own warnings, each pointing at the caller's line,
and none of the libraries' chatter (the CLI silences the same for good, before it imports them).

diffusers and transformers log notices a caller cannot act on (``There are modules in MotionAdapter that should be
kept in float32: []`` on every AnimateDiff run); their verbosity is lowered to errors for the run and put back
after, unless ``DIFFUSERS_VERBOSITY`` / ``TRANSFORMERS_VERBOSITY`` says what the caller wants.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

from vsynth.errors import VsynthWarning

PACKAGE = Path(__file__).resolve().parents[2]  # vsynth/
CONTEXTLIB = Path(contextlib.__file__).resolve()


@contextmanager
def library_verbosity(name: str) -> Iterator[None]:
    """``name``'s logging (diffusers or transformers) at errors only for the block, unless its environment variable
    chose a level."""
    if f"{name.upper()}_VERBOSITY" in os.environ:
        yield
        return
    module = __import__(f"{name}.utils.logging", fromlist=["logging"])
    previous = module.get_verbosity()
    module.set_verbosity_error()
    try:
        yield
    finally:
        module.set_verbosity(previous)


def caller_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning raised by the calling frame point at the first frame outside vsynth
    (and contextlib, whose ``__exit__`` runs a context manager's end)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and _inside(Path(frame.f_code.co_filename)):
        frame, level = frame.f_back, level + 1
    return level


def _inside(path: Path) -> bool:
    path = path.resolve()
    return path == CONTEXTLIB or path.is_relative_to(PACKAGE)


@contextmanager
def as_library() -> Iterator[None]:
    """A run for a library caller: the backends' and libraries' notices quiet; vsynth's warnings raised inside the
    run warned again at the caller's line (they pointed at vsynth's own), any other warning as it was raised."""
    from vsynth.core.diffusion.quantize import quiet_imports

    with ExitStack() as stack:
        stack.enter_context(quiet_imports())
        for name in ("diffusers", "transformers"):
            stack.enter_context(library_verbosity(name))
        caught = stack.enter_context(warnings.catch_warnings(record=True))
        warnings.simplefilter("always")
        try:
            yield
        finally:
            stack.close()
            shown: dict = {}  # once per message and place, as Python's default filter shows them
            for w in caught:
                if issubclass(w.category, VsynthWarning):
                    warnings.warn(w.message, w.category, stacklevel=caller_stacklevel())
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, registry=shown, source=w.source)
