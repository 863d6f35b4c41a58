"""Helpers for testing vsynth plugins (and vsynth itself) on the offline tiny models.

Plugin packages import these directly; :mod:`vsynth.testing.fixtures` adds pytest fixtures.
Importing this package imports no torch; the helpers that need it import it when called.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from typing import Iterator

import numpy as np

from vsynth.core.media.samples import sample_frames, write_sample_video  # noqa: F401 - part of this module's API

SAMPLE_PROMPT = "a red ball bouncing on a table"


def tiny_runtime():
    """CPU, float32: where tests run models."""
    import torch

    from vsynth.core.diffusion.inputs import Runtime

    return Runtime(torch.device("cpu"), torch.float32)


def load_tiny_model(name: str, **params):
    """Load a registered model (``name`` or ``plugin/name``) on its tiny weights, as ``vsynth run --tiny`` does."""
    from vsynth.core.host.registry import get_registry
    from vsynth.core.diffusion.weights import resolve_sources

    spec = get_registry().model(name)
    validated = spec.params.model_validate(params)
    sources = resolve_sources(spec, None, validated.model_dump(), tiny=True)
    return spec.load_impl().load(spec, validated, sources, tiny_runtime())


def load_bridge(name: str, **params):
    """Instantiate a registered bridge with ``params`` validated by its params model."""
    from vsynth.core.host.registry import get_registry

    spec = get_registry().bridge(name)
    return spec.load_impl()(spec, spec.params.model_validate(params))


def bridge_inputs(idm, source_frames: np.ndarray, *, steps: int = 2, guidance: float = 7.5, prompt: str = SAMPLE_PROMPT):
    """What the pipeline would hand a bridge for this source video, with ``idm``'s prepared inputs
    (``idm`` may be None for bridges without an image model), and ``idm`` configured with them as the
    pipeline configures it (a FLUX model's schedule depends on the frame size)."""
    from vsynth.core.diffusion.inputs import BridgeInputs
    from vsynth.core.diffusion.inputs import FrameInputs, Sources

    sources = Sources(video=source_frames)
    frames, height, width, _ = source_frames.shape
    inputs = BridgeInputs(
        frames=frames,
        height=height,
        width=width,
        steps=steps,
        guidance=guidance,
        vdm_steps=steps,
        vdm_guidance=guidance,
        prompt=prompt,
        image_prompt=prompt,
        negative_prompt="",
        sources=sources,
        frame_inputs=idm.prepare(sources) if idm is not None else FrameInputs(),
    )
    if idm is not None:
        idm.configure(inputs)
    return inputs


def run_cli(*args):
    """``vsynth ARGS`` through click's CliRunner; returns its Result (exit_code, stdout, stderr)."""
    from click.testing import CliRunner

    from vsynth.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


@contextmanager
def only_plugins(*names: str) -> Iterator[None]:
    """Load only these plugins (entry-point or distribution names) besides the built-ins, as
    ``VSYNTH_LOAD_PLUGINS`` does, with the registry rebuilt on entry and on exit: a plugin's tests
    then pass whatever else is installed next to it (another plugin with one of its short names)."""
    from vsynth.core.host.registry import LOAD_ENV, get_registry

    previous = os.environ.get(LOAD_ENV)
    os.environ[LOAD_ENV] = ",".join(names)
    get_registry.cache_clear()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(LOAD_ENV, None)
        else:
            os.environ[LOAD_ENV] = previous
        get_registry.cache_clear()


def assert_plugin_ok(name: str) -> None:
    """The plugin ``name`` loaded with no error or warning, and every spec it registered names an
    implementation that imports and subclasses its kind's base (as a run checks before loading)."""
    from vsynth.core.host.registry import get_registry
    from vsynth.core.run.validate import check_impls

    registry = get_registry()
    info = next((p for p in registry.plugins if p.name == name or p.dist == name), None)
    assert info is not None, f"plugin '{name}' is not installed: found {', '.join(p.name for p in registry.plugins)}"
    assert info.status == "ok", f"plugin '{name}' is {info.status}: {info.error or info.disabled_by or '; '.join(info.warnings)}"
    tables = (registry.models, registry.bridges, registry.metrics, registry.worlds)
    specs = [s for table in tables for s in table.values() if s.plugin == info.name]
    assert specs, f"plugin '{name}' registered no model, bridge or metric"
    check_impls(specs)


def assert_listing_imports_no_torch(module: str) -> None:
    """Importing ``module`` (a plugin's hook module), then ``vsynth models`` and ``vsynth plugins``,
    import no torch: checked in a fresh interpreter with this one's path and environment (so under
    :func:`only_plugins`, or the ``plugin_under_test`` fixture, the listings load that plugin alone)."""
    code = (
        "import importlib, sys; from vsynth.cli import cli; "
        f"importlib.import_module({module!r}); "
        "[cli(args, standalone_mode=False) for args in (['models'], ['plugins'])]; "
        "print('torch' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "False", f"importing {module} or listing the models imports torch"
