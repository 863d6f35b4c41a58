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


def soft_edges(frames: np.ndarray) -> np.ndarray:
    """A new condition type for the test: blurred gradient magnitude, as uint8 (F, H, W, 3)."""
    gray = frames.astype(np.float32).mean(axis=-1)
    magnitude = np.hypot(*np.gradient(gray, axis=(1, 2)))
    maps = (255 * magnitude / max(float(magnitude.max()), 1e-8)).astype(np.uint8)
    return np.repeat(maps[..., None], 3, axis=-1)


@pytest.mark.parametrize("family", ["controlnet-canny", "t2i-adapter-canny"])
def test_a_new_condition_type_overrides_make_control_maps(family, source_frames):
    """A plugin's condition type is a classmethod on the family: its maps reach the network and condition.mp4."""
    from vsynth.core.diffusion.weights import resolve_sources
    from vsynth.core.host.registry import get_registry
    from vsynth.plugins.idm.controlnet import ControlNet
    from vsynth.plugins.idm.t2i_adapter import T2IAdapter
    from vsynth.testing import tiny_runtime

    family_class = ControlNet if family.startswith("controlnet") else T2IAdapter

    class SoftEdge(family_class):
        @classmethod
        def make_control_maps(cls, params, sources, device):
            return soft_edges

    spec = get_registry().model(family)
    params = spec.params()
    model = SoftEdge.load(spec, params, resolve_sources(spec, None, params.model_dump(), tiny=True), tiny_runtime())
    inputs = model.prepare(Sources(video=source_frames))
    assert np.array_equal(inputs.condition_frames, soft_edges(source_frames))
