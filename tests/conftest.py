"""Shared fixtures: tiny models built once per session into a private cache (the autouse
``tiny_cache`` of :mod:`vsynth.testing.fixtures`), loaded exactly as ``vsynth run --tiny`` loads
them (registry spec -> tiny weights folder -> from_pretrained)."""

from pathlib import Path

import pytest

from vsynth.testing import load_tiny_model as load_tiny

pytest_plugins = ["vsynth.testing.fixtures"]

SAMPLE_VIDEO = Path(__file__).parents[1] / "examples" / "shapes.mp4"


@pytest.fixture(scope="session")
def canny():
    return load_tiny("controlnet-canny")


@pytest.fixture(scope="session")
def zeroscope():
    return load_tiny("zeroscope")


@pytest.fixture(scope="session")
def source_frames():
    from vsynth.core.media.video import read_video

    return read_video(SAMPLE_VIDEO, frames=3, stride=4, size=(64, 64)).frames
