"""vsynth's test helpers: ``tiny_cache`` and ``plugin_under_test`` (autouse), ``source_frames`` and ``sample_video``."""

import pytest

from vsynth.testing import load_tiny_model

pytest_plugins = ["vsynth.testing.fixtures"]


@pytest.fixture(scope="session")
def vsynth_plugin():
    """This suite loads only this plugin (and the built-ins), whatever else is installed."""
    return "example"


@pytest.fixture(scope="session")
def canny():
    return load_tiny_model("controlnet-canny")


@pytest.fixture(scope="session")
def crossframe():
    return load_tiny_model("canny-crossframe")


@pytest.fixture(scope="session")
def zeroscope():
    return load_tiny_model("zeroscope")
