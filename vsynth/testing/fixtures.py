"""pytest fixtures for vsynth plugins; a plugin's ``conftest.py`` enables them with::

    pytest_plugins = ["vsynth.testing.fixtures"]

``tiny_cache`` is autouse: the session builds each tiny model once, in a private
``VSYNTH_CACHE`` (or the one ``VSYNTH_TEST_CACHE`` names, shared by several suites), never in the
user's cache. ``vsynth_plugin``, overridden in a conftest with the plugin's name, makes the session
load only that plugin besides the built-ins.
"""

import os
from pathlib import Path

import pytest

from vsynth.testing import only_plugins, sample_frames, write_sample_video

TEST_CACHE_ENV = "VSYNTH_TEST_CACHE"


@pytest.fixture(scope="session", autouse=True)
def tiny_cache(tmp_path_factory):
    """Keep tests off the user's cache; every test in the session shares one build of each tiny model.

    With ``VSYNTH_TEST_CACHE=DIR``, suites share ``DIR`` too (the tiny models are deterministic, and
    each copy is checked against its manifest), so that a CI job testing several plugins builds them once.
    """
    shared = os.environ.get(TEST_CACHE_ENV, "").strip()
    with pytest.MonkeyPatch.context() as mp:
        path = Path(shared) if shared else tmp_path_factory.mktemp("vsynth-cache")
        mp.setenv("VSYNTH_CACHE", str(path))
        yield path


@pytest.fixture(scope="session")
def vsynth_plugin():
    """Override in your conftest.py to return your plugin's name: the session then loads only it."""
    return None


@pytest.fixture(scope="session", autouse=True)
def plugin_under_test(vsynth_plugin):
    """Load only ``vsynth_plugin`` (and the built-ins) for the whole session, as pytester isolates a
    plugin under test; every plugin when ``vsynth_plugin`` is None."""
    if vsynth_plugin is None:
        yield None
        return
    with only_plugins(vsynth_plugin):
        yield vsynth_plugin


@pytest.fixture(scope="session")
def source_frames():
    """uint8 (3, 64, 64, 3) frames of :func:`vsynth.testing.sample_frames`."""
    return sample_frames()


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory):
    """Path of a 16-frame 64x64 mp4 of :func:`vsynth.testing.sample_frames`."""
    return write_sample_video(tmp_path_factory.mktemp("vsynth-video") / "sample.mp4")
