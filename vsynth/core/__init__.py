"""vsynth's core, in four rooms that import no further than the one after them:

- :mod:`vsynth.core.host`: the plugin host (hookspecs, registry, specs, installer); no torch.
- :mod:`vsynth.core.media`: reading sources, masks, writing results atomically.
- :mod:`vsynth.core.diffusion`: the denoiser interface, sampling math, attention control,
  components, weights and the bridge base: what model and bridge plugins build on.
- :mod:`vsynth.core.run`: one run from a validated config to its folder.

This package re-exports nothing; it only keeps the 0.1 import paths working (with a warning).
"""

from vsynth import deprecations

deprecations.install()
