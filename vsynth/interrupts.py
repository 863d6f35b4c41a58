"""Ctrl-C that is not lost.

Python raises KeyboardInterrupt wherever the main thread happens to be when SIGINT arrives. Where that is a
finalizer or a library's ``except BaseException`` (logging's lock release, a generator's close), the exception
is printed as "Exception ignored" or swallowed, and the run went on to finish with exit 0. The CLI's handler
therefore also remembers the signal, and :func:`check`, called at safe points (every progress step, every stage,
before an output folder is put in place), raises it again.
"""

from __future__ import annotations

_pending = False


def interrupt(signum=None, frame=None) -> None:
    """The SIGINT handler: remember the interrupt, then raise it as Python's default handler does."""
    global _pending
    _pending = True
    raise KeyboardInterrupt


def pending() -> bool:
    """Whether a Ctrl-C arrived (through :func:`interrupt`), as opposed to code raising KeyboardInterrupt itself."""
    return _pending


def check() -> None:
    """Raise KeyboardInterrupt if one arrived and was swallowed on its way up."""
    if _pending:
        raise KeyboardInterrupt


def reset() -> None:
    global _pending
    _pending = False
