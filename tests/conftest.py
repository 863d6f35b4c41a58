"""Shared fixtures: tiny models built once per session into a private cache, loaded exactly as
``vsynth run --tiny`` loads them (registry spec -> tiny weights folder -> from_pretrained)."""

from pathlib import Path

import pytest

SAMPLE_VIDEO = Path(__file__).parents[1] / "examples" / "shapes.mp4"


@pytest.fixture(scope="session", autouse=True)
def tiny_cache(tmp_path_factory):
    """Keep tests off the user's cache; every test in the session shares one build of each tiny model."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("vsynth-cache")
        mp.setenv("VSYNTH_CACHE", str(path))
        yield path


def load_tiny(name: str, **params):
    """Load a registered model on its tiny weights, on the CPU in float32."""
    import torch

    from vsynth.core.models import Runtime
    from vsynth.core.registry import get_registry
    from vsynth.core.weights import resolve_sources

    registry = get_registry()
    spec = registry.models[name]
    validated = spec.params.model_validate(params)
    sources = resolve_sources(spec, None, validated.model_dump(), tiny=True)
    return spec.load_impl().load(spec, validated, sources, Runtime(torch.device("cpu"), torch.float32))


@pytest.fixture(scope="session")
def canny():
    return load_tiny("controlnet-canny")


@pytest.fixture(scope="session")
def zeroscope():
    return load_tiny("zeroscope")


@pytest.fixture(scope="session")
def source_frames():
    from vsynth.core.video import read_video

    return read_video(SAMPLE_VIDEO, frames=3, stride=4, size=(64, 64)).frames
