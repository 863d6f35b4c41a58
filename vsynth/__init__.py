"""vsynth: training-free video synthesis by bridging image and video diffusion models.

This module stays import-light: ``vsynth --help`` and ``vsynth models`` must never import torch.
Plugin authors mark their hook functions with :data:`hookimpl`.
"""

__version__ = "0.1.0"

from vsynth.core.hookspecs import hookimpl  # noqa: E402

__all__ = ["__version__", "hookimpl"]
