"""vsynth: training-free video synthesis by bridging image and video diffusion models.

This module stays import-light: ``vsynth --help`` and ``vsynth models`` must never import torch.
Plugin authors mark their hook functions with :data:`hookimpl`.
"""

__version__ = "0.2.0.dev0"

from vsynth.core.host.markers import hookimpl  # noqa: E402

__all__ = ["__version__", "hookimpl"]
