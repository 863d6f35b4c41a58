"""Old import paths that still work, with a DeprecationWarning, for one release.

``vsynth.core`` was split into the sub-packages host, media, diffusion and run in 0.2; plugins
written against 0.1 import e.g. ``vsynth.core.specs``. A meta-path finder maps each old module
name to its new home, so those imports keep working and tell their author where to go.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

REMOVED_IN = "0.3"

# old module -> the new module(s) that hold its names (the first is where most of them went)
MOVED: dict[str, tuple[str, ...]] = {
    "vsynth.core.hookspecs": ("vsynth.core.host.hookspecs", "vsynth.core.host.markers"),
    "vsynth.core.registry": ("vsynth.core.host.registry", "vsynth.core.host.registrar"),
    "vsynth.core.specs": ("vsynth.core.host.specs",),
    "vsynth.core.installer": ("vsynth.core.host.installer",),
    "vsynth.core.video": ("vsynth.core.media.video",),
    "vsynth.core.masks": ("vsynth.core.media.masks",),
    "vsynth.core.outputs": ("vsynth.core.media.outputs",),
    "vsynth.core.models": (
        "vsynth.core.diffusion.models",
        "vsynth.core.diffusion.denoiser",
        "vsynth.core.diffusion.inputs",
        "vsynth.core.run.evals",
    ),
    "vsynth.core.sampling": ("vsynth.core.diffusion.sampling",),
    "vsynth.core.attention": ("vsynth.core.diffusion.attention",),
    "vsynth.core.components": ("vsynth.core.diffusion.components",),
    "vsynth.core.weights": ("vsynth.core.diffusion.weights",),
    "vsynth.core.bridge": ("vsynth.core.diffusion.bridge", "vsynth.core.diffusion.inputs"),
    "vsynth.core.config": ("vsynth.core.run.config",),
    "vsynth.core.pipeline": ("vsynth.core.run.pipeline",),
    "vsynth.core.progress": ("vsynth.core.run.progress",),
    "vsynth.core.tiny": ("vsynth.tiny", "vsynth.tiny.build"),
}


def _importer_stacklevel() -> int:
    """The stacklevel of the first frame outside importlib and this module: the importing plugin."""
    frame, level = sys._getframe(1), 1
    while frame is not None and (frame.f_code.co_filename == __file__ or "importlib" in frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level


class _MovedLoader(importlib.abc.Loader):
    def __init__(self, targets: tuple[str, ...]):
        self.targets = targets

    def create_module(self, spec):
        warnings.warn(
            f"{spec.name} moved to {self.targets[0]}; the old path stops working in vsynth {REMOVED_IN}",
            DeprecationWarning,
            stacklevel=_importer_stacklevel(),
        )
        modules = [importlib.import_module(target) for target in self.targets]
        if len(modules) == 1:
            return modules[0]  # the very module, so that monkeypatching the old path still works
        merged = types.ModuleType(spec.name, modules[0].__doc__)
        for module in reversed(modules):  # the first target wins a name they share
            merged.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
        return merged

    def exec_module(self, module):
        pass


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, _MovedLoader(MOVED[fullname]))
        return None


def install() -> None:
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
