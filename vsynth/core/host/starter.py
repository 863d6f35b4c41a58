"""``vsynth new-plugin NAME --kind idm|vdm|bridge``: a starter plugin package whose tests pass as written.

The package has the layout of ``examples/vsynth-example-plugin`` (docs/plugins.md): a ``pyproject.toml``
with the ``vsynth`` entry point, a spec module that imports no torch, an implementation module,
a README, and tests built on :mod:`vsynth.testing`. The implementations build on vsynth's own
(SD1.5, ZeroScope, a frame-wise bridge), so that the starter runs on the ``--tiny`` models at once.

Imports no torch: templates are text, filled by plain replacement of ``%KEY%`` markers.
"""

from __future__ import annotations

import re
from pathlib import Path

from vsynth.core.host.specs import NAME_PATTERN
from vsynth.errors import VsynthInputError
from vsynth.version import __version__

KIND_WORDS = {"idm": "image model (IDM)", "vdm": "video model (VDM)", "bridge": "bridge"}

PYPROJECT = """\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "%DIST%"
version = "0.1.0"
description = "A vsynth plugin: the %KIND_WORDS% '%NAME%'"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["vsynth>=%VSYNTH%"]

[project.optional-dependencies]
test = ["pytest>=8"]

# What makes this a vsynth plugin: `%NAME%` is the plugin's name (the `%NAME%/` of qualified names),
# the value the module whose hooks register its specs.
[project.entry-points.vsynth]
%ENTRY% = "%MODULE%"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = "-ra"
filterwarnings = ["ignore::FutureWarning", "ignore::DeprecationWarning"]
"""

README = """\
# %DIST%

A vsynth plugin: the %KIND_WORDS% `%NAME%`, written by `vsynth new-plugin`.

```bash
pip install -e ".[test]"   # or: vsynth install -e .
vsynth plugins             # lists %NAME% as ok
vsynth models %NAME%
python -m pytest           # its tests, on vsynth's offline tiny models
%RUN%
```

Layout:

- `pyproject.toml`: the `vsynth` entry point, `%ENTRY% = "%MODULE%"`;
- `src/%MODULE%/__init__.py`: the spec and its params (metadata only: never import torch here);
- `src/%MODULE%/impl.py`: the implementation, imported when a run selects `%NAME%`;
- `tests/`: tests with `vsynth.testing`: the plugin loads, listing it imports no torch, it runs.

%WHAT%

Next: docs/plugins.md in vsynth's repository (specs, params, the denoiser and bridge interfaces,
the sampling helpers, testing).
"""

RUNS = {
    "idm": "vsynth run --tiny --idm %NAME% --vdm zeroscope --prompt \"a red ball\" --frames 2 --steps 2 --height 64 --width 64",
    "vdm": "vsynth run --tiny --vdm %NAME% --prompt \"a red ball\" --frames 2 --steps 2 --height 64 --width 64",
    "bridge": "vsynth run --tiny --idm sd15 --vdm zeroscope --bridge %NAME% --prompt \"a red ball\" --frames 2 --steps 2 --height 64 --width 64",
}

WHAT = {
    "idm": "As written, `%NAME%` is Stable Diffusion 1.5 whose frames share part of their initial noise\n"
    "(`-o shared_noise`): replace `SharedNoiseDenoiser` and `%CLASS%` in `impl.py` with your model.",
    "vdm": "As written, `%NAME%` is ZeroScope whose frames share part of their initial noise (`-o shared_noise`):\n"
    "replace `SharedNoiseDenoiser` and `%CLASS%` in `impl.py` with your model.",
    "bridge": "As written, `%NAME%` generates the frames with the IDM and blends each frame's latents with the\n"
    "previous frame's (`-o smoothing`); the VDM is loaded but not used: write your composition of the\n"
    "two models in `%CLASS%.run` in `impl.py`.",
}

SPEC = {
    "idm": '''\
"""%DIST%: a vsynth plugin that adds the image model (IDM) '%NAME%'.

The entry point names this module. It registers specs only, metadata without torch, so that
`vsynth --help`, `vsynth models` and `vsynth plugins` stay fast; the class that `impl` names is
imported when a run selects the model.
"""

from __future__ import annotations

from pydantic import Field

from vsynth import hookimpl
from vsynth.core.host.specs import ModelSpec
from vsynth.plugins.idm import SD15, SD15Params


class %CLASS%Params(SD15Params):
    """What users set with `-o KEY=VALUE`: SD1.5's batch_size and strength, and this model's own."""

    shared_noise: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Share of every frame's initial noise common to all frames: 0 draws SD1.5's noise, 1 the same noise for every frame.",
    )


@hookimpl
def vsynth_register_models(registrar):
    registrar.register_model(
        ModelSpec(
            name="%NAME%",
            kind="idm",
            task="generation",
            description="Stable Diffusion 1.5 whose frames share part of their initial noise (-o shared_noise).",
            weights=(SD15,),  # its first weights are what --idm-weights replaces; SD15.tiny makes --tiny work
            params=%CLASS%Params,
            impl="%MODULE%.impl:%CLASS%",
            accepts=("video",),  # with a source video, SDEdit from it (-o strength), as the built-in sd15
        )
    )
''',
    "vdm": '''\
"""%DIST%: a vsynth plugin that adds the video model (VDM) '%NAME%'.

The entry point names this module. It registers specs only, metadata without torch, so that
`vsynth --help`, `vsynth models` and `vsynth plugins` stay fast; the class that `impl` names is
imported when a run selects the model.
"""

from __future__ import annotations

from pydantic import Field

from vsynth import hookimpl
from vsynth.core.host.specs import ModelSpec, WeightsSpec
from vsynth.plugins.vdm import ZeroScopeParams

ZEROSCOPE = WeightsSpec(role="vdm", id="cerspense/zeroscope_v2_576w", size_gb=3.7, tiny="zeroscope")


class %CLASS%Params(ZeroScopeParams):
    """What users set with `-o KEY=VALUE`: ZeroScope's (window, overlap, ...) and this model's own."""

    shared_noise: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="Share of every frame's initial noise common to all frames: 0 draws ZeroScope's noise.",
    )


@hookimpl
def vsynth_register_models(registrar):
    registrar.register_model(
        ModelSpec(
            name="%NAME%",
            kind="vdm",
            description="ZeroScope whose frames share part of their initial noise (-o shared_noise).",
            weights=(ZEROSCOPE,),  # what --vdm-weights replaces; tiny="zeroscope" makes --tiny work
            params=%CLASS%Params,
            impl="%MODULE%.impl:%CLASS%",
            native_size=(320, 576),
        )
    )
''',
    "bridge": '''\
"""%DIST%: a vsynth plugin that adds the bridge '%NAME%'.

The entry point names this module. It registers specs only, metadata without torch, so that
`vsynth --help`, `vsynth models` and `vsynth plugins` stay fast; the class that `impl` names is
imported when a run selects the bridge.
"""

from __future__ import annotations

from pydantic import Field

from vsynth import hookimpl
from vsynth.core.host.specs import BridgeSpec, Params


class %CLASS%Params(Params):
    """What users set with `-o KEY=VALUE`; unknown keys are refused, bounds checked before any model loads."""

    smoothing: float = Field(
        0.5,
        ge=0.0,
        lt=1.0,
        description="Weight of the previous frame's latents in each frame's: 0 keeps the IDM frames as they are.",
    )


@hookimpl
def vsynth_register_bridges(registrar):
    registrar.register_bridge(
        BridgeSpec(
            name="%NAME%",
            description="Frame-wise IDM generation, each frame's latents blended with the previous frame's (-o smoothing).",
            params=%CLASS%Params,
            impl="%MODULE%.impl:%CLASS%",
            video="optional",  # the IDM decides whether it needs a source video
            image_inversion=False,  # it never inverts with the IDM: weights only inversion needs are not loaded
        )
    )
''',
}

IMPL = {
    "idm": '''\
"""The implementation of '%NAME%': imported only when a run selects it, so torch is welcome here."""

from __future__ import annotations

import torch

from vsynth.core.diffusion.denoiser import DelegatingDenoiser, Denoiser
from vsynth.plugins.idm.sd15 import SD15Model


class SharedNoiseDenoiser(DelegatingDenoiser):
    """SD1.5's frame denoiser, whose initial noise is partly common to all frames:
    ``sqrt(s) * shared + sqrt(1 - s) * own``, still unit Gaussian per frame. Everything else passes
    through to the wrapped denoiser; override more of it the same way."""

    def __init__(self, inner: Denoiser, shared: float):
        super().__init__(inner)
        self.shared = shared

    def initial_noise(self, shape, generator: torch.Generator) -> torch.Tensor:
        own = self.inner.initial_noise(shape, generator)  # drawn first, so that shared=0 is SD1.5's noise exactly
        if not self.shared:
            return own
        b, c, _, h, w = shape
        shared = self.inner.initial_noise((b, c, 1, h, w), generator)
        return self.shared**0.5 * shared + (1 - self.shared) ** 0.5 * own


class %CLASS%(SD15Model):
    """vsynth's SD1.5 model with the denoiser above: `load` builds it from `sources["base"]`."""

    @classmethod
    def load(cls, spec, params, sources, runtime):
        model = super().load(spec, params, sources, runtime)
        model.denoiser = SharedNoiseDenoiser(model.denoiser, params.shared_noise)
        return model
''',
    "vdm": '''\
"""The implementation of '%NAME%': imported only when a run selects it, so torch is welcome here."""

from __future__ import annotations

import torch

from vsynth.core.diffusion.denoiser import DelegatingDenoiser, Denoiser
from vsynth.plugins.vdm.unet3d import UNet3DVideoModel


class SharedNoiseDenoiser(DelegatingDenoiser):
    """ZeroScope's denoiser, whose initial noise is partly common to all frames:
    ``sqrt(s) * shared + sqrt(1 - s) * own``, still unit Gaussian per frame. Everything else passes
    through to the wrapped denoiser; override more of it the same way."""

    def __init__(self, inner: Denoiser, shared: float):
        super().__init__(inner)
        self.shared = shared

    def initial_noise(self, shape, generator: torch.Generator) -> torch.Tensor:
        own = self.inner.initial_noise(shape, generator)  # drawn first, so that shared=0 is ZeroScope's noise exactly
        if not self.shared:
            return own
        b, c, _, h, w = shape
        shared = self.inner.initial_noise((b, c, 1, h, w), generator)
        return self.shared**0.5 * shared + (1 - self.shared) ** 0.5 * own


class %CLASS%(UNet3DVideoModel):
    """vsynth's ZeroScope with the denoiser above: `load` builds it from `sources["vdm"]`."""

    @classmethod
    def load(cls, spec, params, sources, runtime):
        model = super().load(spec, params, sources, runtime)
        model.denoiser = SharedNoiseDenoiser(model.denoiser, params.shared_noise)
        return model
''',
    "bridge": '''\
"""The implementation of '%NAME%': imported only when a run selects it, so torch is welcome here."""

from __future__ import annotations

import torch

from vsynth.core.diffusion.bridge import Bridge, BridgeResult


def smooth(latents: torch.Tensor, weight: float) -> torch.Tensor:
    """Each frame of ``latents`` (B, C, F, H, W) blended with the blended frame before it."""
    frames = [latents[:, :, 0]]
    for f in range(1, latents.shape[2]):
        frames.append(weight * frames[-1] + (1 - weight) * latents[:, :, f])
    return torch.stack(frames, dim=2)


class %CLASS%(Bridge):
    """`run` receives both models, the prepared inputs, a seeded generator and the stages that time and
    show progress; it returns the final latent video and the codec that decodes it."""

    def run(self, idm, vdm, inputs, generator, stages):
        with stages.stage("frame-wise generation", total=inputs.steps) as advance:
            latents = idm.generate(inputs, generator, advance)
        with stages.stage("decoding IDM frames", total=inputs.frames) as advance:
            idm_frames = idm.codec.decode(latents, advance)  # written as idm_frames.mp4, and the grid's IDM row
        return BridgeResult(latents=smooth(latents, self.params.smoothing), codec=idm.codec, intermediates={"idm_frames": idm_frames})
''',
}

CONFTEST = {
    "idm": '''\
"""vsynth's test helpers (vsynth.testing.fixtures): the tiny models are built once per session, in a
private cache, and the session loads only this plugin besides the built-ins."""

import pytest

from vsynth.testing import load_tiny_model

pytest_plugins = ["vsynth.testing.fixtures"]


@pytest.fixture(scope="session")
def vsynth_plugin():
    return "%NAME%"


@pytest.fixture(scope="session")
def model():
    return load_tiny_model("%NAME%")
''',
    "vdm": None,  # as idm
    "bridge": '''\
"""vsynth's test helpers (vsynth.testing.fixtures): the tiny models are built once per session, in a
private cache, and the session loads only this plugin besides the built-ins."""

import pytest

from vsynth.testing import load_tiny_model

pytest_plugins = ["vsynth.testing.fixtures"]


@pytest.fixture(scope="session")
def vsynth_plugin():
    return "%NAME%"


@pytest.fixture(scope="session")
def sd15():
    return load_tiny_model("sd15")


@pytest.fixture(scope="session")
def zeroscope():
    return load_tiny_model("zeroscope")
''',
}

TEST_PLUGIN = '''\
"""The plugin loads with no error or warning, its implementation imports, and listing it imports no torch."""

from vsynth.testing import assert_listing_imports_no_torch, assert_plugin_ok


def test_the_plugin_loads_with_its_implementation():
    assert_plugin_ok("%NAME%")


def test_listing_the_plugin_imports_no_torch():
    assert_listing_imports_no_torch("%MODULE%")
'''

TEST_KIND = {
    "idm": '''\
"""What '%NAME%' promises, on the tiny weights, and a whole run through the command line."""

import json

import torch

from vsynth.testing import bridge_inputs, run_cli

from %MODULE%.impl import SharedNoiseDenoiser


def noise(denoiser, seed=0):
    return denoiser.initial_noise((1, 4, 3, 8, 8), torch.Generator().manual_seed(seed))


def test_shared_noise_zero_is_the_base_models_noise(model):
    assert torch.equal(noise(SharedNoiseDenoiser(model.denoiser.inner, 0.0)), noise(model.denoiser.inner))


def test_shared_noise_one_gives_every_frame_the_same_noise(model):
    frames = noise(SharedNoiseDenoiser(model.denoiser.inner, 1.0))
    assert torch.equal(frames[:, :, 0], frames[:, :, 1]) and torch.equal(frames[:, :, 1], frames[:, :, 2])


def test_generate_returns_a_latent_per_frame(model, source_frames):
    latents = model.generate(bridge_inputs(model, source_frames, steps=2), torch.Generator().manual_seed(0))
    assert latents.shape == (1, 4, len(source_frames), 8, 8) and torch.isfinite(latents).all()


def test_a_tiny_run(tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "run", "--tiny", "--idm", "%NAME%", "--vdm", "zeroscope", "--prompt", "a red ball", "--frames", 2, "--steps", 1,
        "--height", 64, "--width", 64, "--quiet", "--out", out,
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "run.json").read_text())["models"]["idm"]["plugin"] == "%NAME%"
''',
    "vdm": '''\
"""What '%NAME%' promises, on the tiny weights, and a whole run through the command line."""

import json

import torch

from vsynth.testing import run_cli

from %MODULE%.impl import SharedNoiseDenoiser


def noise(denoiser, seed=0):
    return denoiser.initial_noise((1, 4, 3, 8, 8), torch.Generator().manual_seed(seed))


def test_shared_noise_zero_is_the_base_models_noise(model):
    assert torch.equal(noise(SharedNoiseDenoiser(model.denoiser.inner, 0.0)), noise(model.denoiser.inner))


def test_shared_noise_one_gives_every_frame_the_same_noise(model):
    frames = noise(SharedNoiseDenoiser(model.denoiser.inner, 1.0))
    assert torch.equal(frames[:, :, 0], frames[:, :, 1]) and torch.equal(frames[:, :, 1], frames[:, :, 2])


def test_a_tiny_run(tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "run", "--tiny", "--vdm", "%NAME%", "--prompt", "a red ball", "--frames", 2, "--steps", 1,
        "--height", 64, "--width", 64, "--quiet", "--out", out,
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "run.json").read_text())["models"]["vdm"]["plugin"] == "%NAME%"
''',
    "bridge": '''\
"""What '%NAME%' promises, on the tiny weights, and a whole run through the command line."""

import json

import pytest
import torch

from vsynth.core.run.progress import Stages
from vsynth.testing import bridge_inputs, load_bridge, run_cli


def run(idm, vdm, source_frames, smoothing):
    bridge = load_bridge("%NAME%", smoothing=smoothing)
    return bridge.run(idm, vdm, bridge_inputs(idm, source_frames, steps=2), torch.Generator().manual_seed(0), Stages())


def flicker(latents):
    return (latents[:, :, 1:] - latents[:, :, :-1]).abs().mean()


def test_smoothing_zero_keeps_the_idm_frames(sd15, zeroscope, source_frames):
    result = run(sd15, zeroscope, source_frames, 0.0)
    assert result.latents.shape == (1, 4, len(source_frames), 8, 8)
    difference = result.codec.decode(result.latents).astype(int) - result.intermediates["idm_frames"]
    assert abs(difference).max() <= 1  # the same latents, decoded apart: at most a rounding apart


@pytest.mark.parametrize("smoothing", [0.5, 0.9])
def test_smoothing_makes_neighbouring_frames_closer(sd15, zeroscope, source_frames, smoothing):
    assert flicker(run(sd15, zeroscope, source_frames, smoothing).latents) < flicker(run(sd15, zeroscope, source_frames, 0.0).latents)


def test_a_tiny_run(tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "run", "--tiny", "--idm", "sd15", "--vdm", "zeroscope", "--bridge", "%NAME%", "-o", "smoothing=0.5",
        "--prompt", "a red ball", "--frames", 2, "--steps", 1, "--height", 64, "--width", 64, "--quiet", "--out", out,
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert (record["bridge"]["plugin"], record["bridge"]["params"]["smoothing"]) == ("%NAME%", 0.5)
''',
}


def names(name: str) -> dict[str, str]:
    """The names a plugin called ``name`` goes by: its distribution, module, class and entry point."""
    words = [w for w in re.split(r"[^0-9A-Za-z]+", name) if w]
    cls = "".join(w[:1].upper() + w[1:] for w in words)
    return {
        "NAME": name,
        "DIST": "vsynth-" + re.sub(r"[-_.]+", "-", name).lower(),
        "MODULE": "vsynth_" + "_".join(words).lower(),
        "CLASS": cls if cls[:1].isalpha() else f"My{cls}",
        "ENTRY": f'"{name}"' if "." in name else name,  # a TOML bare key takes letters, digits, '-' and '_'
        "VSYNTH": __version__,
    }


def check_name(name: str, kind: str, builtin_names: dict[str, set[str]]) -> None:
    """NAME is a spec name (letters, digits, '-', '_', '.') that no built-in of its kind has."""
    if not re.match(NAME_PATTERN, name):
        raise VsynthInputError(f"NAME '{name}': use letters, digits, '-', '_' and '.', starting with a letter or digit")
    if name == "vsynth":
        raise VsynthInputError("NAME 'vsynth' is the built-ins' plugin name: choose another NAME")
    if name in builtin_names.get(kind, set()):
        raise VsynthInputError(f"'{name}' is a built-in {kind}'s name, which a plugin cannot take: choose another NAME")


def files(name: str, kind: str) -> dict[str, str]:
    """Relative path -> text of every file of the starter package."""
    values = {**names(name), "KIND_WORDS": KIND_WORDS[kind]}
    module = values["MODULE"]
    texts = {
        "pyproject.toml": PYPROJECT,
        "README.md": README.replace("%RUN%", RUNS[kind]).replace("%WHAT%", WHAT[kind]),
        f"src/{module}/__init__.py": SPEC[kind],
        f"src/{module}/impl.py": IMPL[kind],
        "tests/conftest.py": CONFTEST[kind] or CONFTEST["idm"],
        "tests/test_plugin.py": TEST_PLUGIN,
        f"tests/test_{kind}.py": TEST_KIND[kind],
    }
    for key, value in values.items():
        texts = {path: text.replace(f"%{key}%", value) for path, text in texts.items()}
    return texts


def write_starter(name: str, kind: str, folder: Path, builtin_names: dict[str, set[str]]) -> list[Path]:
    """Write the starter package into ``folder`` (new, or empty); returns the files written."""
    check_name(name, kind, builtin_names)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise VsynthInputError(f"--out {folder}: {folder} is not empty; choose a new folder")
    written = []
    for relative, text in files(name, kind).items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
