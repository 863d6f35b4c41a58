"""pytest fixtures for vsynth plugins; a plugin's ``conftest.py`` enables them with::

    pytest_plugins = ["vsynth.testing.fixtures"]

``tiny_cache`` is autouse: the session builds each tiny model once, in a private
``VSYNTH_CACHE``, never in the user's cache.
"""

import pytest

from vsynth.testing import sample_frames, write_sample_video


@pytest.fixture(scope="session", autouse=True)
def tiny_cache(tmp_path_factory):
    """Keep tests off the user's cache; every test in the session shares one build of each tiny model."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("vsynth-cache")
        mp.setenv("VSYNTH_CACHE", str(path))
        yield path


@pytest.fixture(scope="session")
def source_frames():
    """uint8 (3, 64, 64, 3) frames of :func:`vsynth.testing.sample_frames`."""
    return sample_frames()


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory):
    """Path of a 16-frame 64x64 mp4 of :func:`vsynth.testing.sample_frames`."""
    return write_sample_video(tmp_path_factory.mktemp("vsynth-video") / "sample.mp4")
