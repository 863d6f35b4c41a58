"""Lets torchvision import beside a CPU-only torch whose version matches but whose build does not.

PyPI's torchvision wheels are built against PyPI's (CUDA) torch. Beside a CPU-only torch of the same
version their C++ ops (nms, roi_align, ...) cannot load, and torchvision 0.2x then fails at import
("operator torchvision::nms does not exist") while registering fake kernels for two of them. That
breaks more than torchvision: transformers imports it for its image processors (CLIP's, DPT's) as
soon as it is installed. RAFT and the image transforms use none of those ops, so when that import
fails the guard declares the two schemas and runs it again; calling nms would still fail, loudly.

:func:`install` puts a finder first on ``sys.meta_path`` that only wraps torchvision's loader: finding
the package (an availability probe) imports nothing. ``import vsynth`` installs it.
"""

from __future__ import annotations

import importlib.abc
import sys

_OPS = None  # the schemas declared, kept alive for the process


def import_torchvision():
    """torchvision, or None when it is not installed."""
    try:
        import torchvision
    except ModuleNotFoundError:
        return None
    return torchvision


def _declare_schemas() -> None:
    global _OPS
    import torch

    _OPS = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        _OPS.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


class _GuardedLoader(importlib.abc.Loader):
    """torchvision's own loader; when its package fails on the missing C++ ops, the schemas are declared and it runs again."""

    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):  # resource readers, get_filename, ...: the real loader's
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        try:
            self.loader.exec_module(module)
        except RuntimeError as exc:
            if "torchvision::" not in str(exc) or _OPS is not None:
                raise
            for name in [m for m in sys.modules if m.startswith("torchvision.")]:  # what the failed attempt left
                del sys.modules[name]
            _declare_schemas()
            self.loader.exec_module(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "torchvision":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and not isinstance(spec.loader, _GuardedLoader):
                    spec.loader = _GuardedLoader(spec.loader)
                return spec
        return None


def install() -> None:
    if "torchvision" not in sys.modules and not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
