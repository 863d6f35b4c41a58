"""Helpers for testing vsynth plugins (and vsynth itself) on the offline tiny models.

Plugin packages import these directly; :mod:`vsynth.testing.fixtures` adds pytest fixtures.
Importing this package imports no torch; the helpers that need it import it when called.
"""

from __future__ import annotations

import numpy as np

from vsynth.core.media.samples import sample_frames, write_sample_video

__all__ = ["SAMPLE_PROMPT", "bridge_inputs", "load_bridge", "load_tiny_model", "run_cli", "sample_frames", "tiny_runtime", "write_sample_video"]

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
    (``idm`` may be None for bridges without an image model)."""
    from vsynth.core.diffusion.inputs import BridgeInputs
    from vsynth.core.diffusion.inputs import FrameInputs, Sources

    sources = Sources(video=source_frames)
    frames, height, width, _ = source_frames.shape
    return BridgeInputs(
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


def run_cli(*args):
    """``vsynth ARGS`` through click's CliRunner; returns its Result (exit_code, stdout, stderr)."""
    from click.testing import CliRunner

    from vsynth.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])
