"""Control maps the ControlNet IDMs compute from source frames."""

import numpy as np
import pytest

from tests.conftest import load_tiny
from vsynth.core.diffusion.inputs import Sources


def test_canny_maps_are_binary_edges_of_each_frame(canny, source_frames):
    inputs = canny.prepare(Sources(video=source_frames))
    maps = inputs.condition_frames
    assert maps.shape == source_frames.shape and maps.dtype == np.uint8
    assert set(np.unique(maps)) == {0, 255}
    assert not np.array_equal(maps[0], maps[1])  # the shapes move
    assert inputs.extras["control"].shape == (3, 3, 64, 64) and float(inputs.extras["control"].max()) == 1.0


def test_canny_thresholds_are_params(source_frames):
    strict = load_tiny("controlnet-canny", low_threshold=250, high_threshold=255).prepare(Sources(video=source_frames)).condition_frames
    loose = load_tiny("controlnet-canny", low_threshold=10, high_threshold=20).prepare(Sources(video=source_frames)).condition_frames
    assert (loose > 0).sum() >= (strict > 0).sum()


def test_depth_maps_are_normalised_per_frame(source_frames):
    depth = load_tiny("controlnet-depth")
    maps = depth.prepare(Sources(video=source_frames)).condition_frames
    assert maps.shape == source_frames.shape
    for frame in maps:
        assert frame.min() == 0 and frame.max() == 255
        assert np.array_equal(frame[..., 0], frame[..., 2])


@pytest.mark.parametrize("value", [-1, 256])
def test_threshold_range_is_validated(value):
    from vsynth.plugins.idm import CannyParams

    with pytest.raises(ValueError):
        CannyParams(low_threshold=value)
