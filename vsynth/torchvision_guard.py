"""Lets torchvision import beside a CPU-only torch whose version matches but whose build does not.

PyPI's torchvision wheels are built against PyPI's (CUDA) torch. Beside a CPU-only torch of the same
version their C++ ops (nms, roi_align, ...) cannot load, and torchvision 0.2x then fails at import
("operator torchvision::nms does not exist") while registering fake kernels for two of them. That
breaks more than torchvision: transformers imports it for its image processors (CLIP's, DPT's) as
soon as it is installed. RAFT and the image transforms use none of those ops, so the guard declares
the two schemas and lets the import complete; calling nms would still fail, loudly.

:func:`install` puts a finder first on ``sys.meta_path`` (no torch import until torchvision is
imported); ``import vsynth`` installs it.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

_OPS = None  # the schemas declared, kept alive for the process


def import_torchvision():
    """torchvision, or None when it is not installed; declares the two op schemas if its C++ ops cannot load."""
    global _OPS
    try:
        import torchvision

        return torchvision
    except ModuleNotFoundError:
        return None
    except RuntimeError as exc:
        if "torchvision::" not in str(exc) or _OPS is not None:
            raise
    import torch

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    _OPS = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        _OPS.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision

    return torchvision


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """On the first ``import torchvision``, import it through :func:`import_torchvision`, then step aside."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "torchvision":
            return None
        sys.meta_path.remove(self)
        if import_torchvision() is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return sys.modules["torchvision"]

    def exec_module(self, module):
        pass


def install() -> None:
    if "torchvision" not in sys.modules and not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
