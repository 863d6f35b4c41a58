"""vsynth: training-free video synthesis by bridging image and video diffusion models.

This module stays import-light: ``vsynth --help`` and ``vsynth models`` must never import torch.
Plugin authors mark their hook functions with :data:`hookimpl`. The Python API (``vsynth.run``,
``vsynth.Session``, ``vsynth.RunResult``, from :mod:`vsynth.api`) is imported on first use.
"""

from vsynth import torchvision_guard
from vsynth.core.host.markers import hookimpl
from vsynth.version import __version__

torchvision_guard.install()  # a CUDA torchvision beside a CPU torch: see vsynth.torchvision_guard

_API = ("run", "Session", "RunResult")

__all__ = ["__version__", "hookimpl", *_API]


def __getattr__(name: str):
    if name in _API:
        from vsynth import api

        return getattr(api, name)
    raise AttributeError(f"module 'vsynth' has no attribute {name!r}")
