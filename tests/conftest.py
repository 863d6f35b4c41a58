"""Shared fixtures: tiny models built once per session into a private cache (the autouse
``tiny_cache`` of :mod:`vsynth.testing.fixtures`), loaded exactly as ``vsynth run --tiny`` loads
them (registry spec -> tiny weights folder -> from_pretrained)."""

import signal
import warnings
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


@pytest.fixture(autouse=True)
def sigint_handler_kept():
    """A test that leaves another SIGINT handler behind (a library it started may install one) gets it
    put back, with a warning naming it: the plugin registry's Ctrl-C handling depends on the handler."""
    before = signal.getsignal(signal.SIGINT)
    yield
    after = signal.getsignal(signal.SIGINT)
    if after is not before:
        signal.signal(signal.SIGINT, before)
        warnings.warn(f"this test left SIGINT handled by {after!r}; put back", stacklevel=1)
