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


# ---------------------------------------------------------------------------- poses (vsynth.plugins.idm.openpose)

# One person's 18 OpenPose body parts (x, y) on the network's output grid (a stride-8 map of the 184x184 input).
PERSON = [(11, 3), (11, 6), (8, 6), (6, 9), (5, 12), (14, 6), (16, 9), (17, 12), (9, 12), (9, 16), (9, 20), (13, 12), (13, 16),
          (13, 20), (10, 2), (12, 2), (9, 3), (13, 3)]  # fmt: skip


class CraftedBodyNetwork:
    """Stands in for the body network: heatmaps peaking at :data:`PERSON`'s parts and part affinity fields
    along its limbs, whatever the image; records the device of every input."""

    def __new__(cls):
        import torch

        from vsynth.plugins.idm.openpose import LIMB_PAFS, LIMBS

        class Network(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.anchor = torch.nn.Parameter(torch.zeros(1))
                self.input_devices = []

            def forward(self, x):
                self.input_devices.append(x.device)
                h, w = x.shape[2] // 8, x.shape[3] // 8
                yy, xx = np.mgrid[0:h, 0:w]
                heatmaps = np.zeros((19, h, w), np.float32)
                for part, (px, py) in enumerate(PERSON):
                    heatmaps[part] = np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / 2.0)
                pafs = np.zeros((38, h, w), np.float32)
                for (a, b), channels in zip(LIMBS, LIMB_PAFS):
                    start, end = np.array(PERSON[a - 1], float), np.array(PERSON[b - 1], float)
                    direction = (end - start) / np.linalg.norm(end - start)
                    for t in np.linspace(0, 1, 50):
                        px, py = np.round(start + t * (end - start)).astype(int)
                        pafs[[c - 19 for c in channels], max(py - 1, 0) : py + 2, max(px - 1, 0) : px + 2] = direction[:, None, None]
                return torch.from_numpy(pafs)[None], torch.from_numpy(heatmaps)[None]

        return Network()


@pytest.fixture
def crafted_network(monkeypatch):
    from vsynth.plugins.idm import openpose

    network = CraftedBodyNetwork()
    monkeypatch.setattr(openpose, "load_body_model", lambda source: network)
    return network


def test_pose_maps_draw_every_limb_and_joint_of_a_detected_person(crafted_network, source_frames):
    from vsynth.plugins.idm.openpose import COLORS, OpenposeMaps

    maps = load_tiny("controlnet-openpose").prepare(Sources(video=source_frames)).condition_frames
    assert maps.shape == source_frames.shape and maps.dtype == np.uint8 and maps.any()
    drawn = {tuple(c) for c in OpenposeMaps("-", "cpu")(np.zeros((1, 512, 512, 3), np.uint8))[0].reshape(-1, 3)}
    assert set(map(tuple, COLORS)) <= drawn  # all 18 joints
    assert {tuple(int(v * 0.6) for v in c) for c in COLORS[:17]} <= drawn  # all 17 limbs, at 60%


def test_poses_are_detected_on_the_runs_device(crafted_network):
    """The body network is moved to the run's device (a GPU run's), not left on the CPU; its weights load on
    first use only, so runs given --condition-video never need them."""
    import torch

    from vsynth.plugins.idm import OpenposeParams
    from vsynth.plugins.idm.detectors import map_maker

    device = torch.device("meta")  # a device other than the CPU that every machine has
    maker = map_maker("openpose", OpenposeParams(), {}, device)
    assert crafted_network.input_devices == []
    maker(np.zeros((2, 64, 64, 3), np.uint8))
    assert crafted_network.anchor.device == device and crafted_network.input_devices == [device, device]


def test_body_weights_load_from_a_folder_a_file_or_a_cached_repo(tmp_path):
    """lllyasviel/Annotators' body_pose_model.pth names its tensors without the stage prefix of the module."""
    import torch

    from vsynth.plugins.idm.openpose import BodyPoseModel, load_body_model
    from vsynth.testing.fake_hub import offline_hub

    torch.manual_seed(0)
    state = BodyPoseModel().state_dict()
    snapshot = tmp_path / "hub" / "models--lllyasviel--Annotators" / "snapshots" / "0"
    snapshot.mkdir(parents=True)
    torch.save({key.split(".", 1)[1]: value for key, value in state.items()}, snapshot / "body_pose_model.pth")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0")
    with offline_hub(tmp_path / "hub"):
        loaded = [load_body_model(str(s)) for s in (snapshot, snapshot / "body_pose_model.pth")] + [load_body_model("lllyasviel/Annotators")]
    for model in loaded:
        assert all(torch.equal(model.state_dict()[key], value) for key, value in state.items())


def test_pose_weights_missing_offline_are_one_line(tmp_path):
    from vsynth.errors import WeightsUnavailableError
    from vsynth.plugins.idm.openpose import load_body_model
    from vsynth.testing.fake_hub import offline_hub

    with offline_hub(tmp_path), pytest.raises(WeightsUnavailableError, match=r"body_pose_model.pth from lllyasviel/Annotators is not in the hub cache .*-o detector="):
        load_body_model("lllyasviel/Annotators")


def test_pose_weights_are_not_fetched_when_the_hub_cannot_be_reached(tmp_path, monkeypatch):
    """Offline without HF_HUB_OFFLINE, huggingface_hub retried for half a minute (6 lookups, 5 retries) before failing."""
    import huggingface_hub

    from vsynth.core.diffusion import weights
    from vsynth.errors import WeightsUnavailableError
    from vsynth.plugins.idm.openpose import load_body_model

    def download(repo, filename, local_files_only=False, **kwargs):
        assert local_files_only, "tried the hub"
        raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(weights, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(WeightsUnavailableError, match="not in the hub cache and the hub cannot be reached"):
        load_body_model("lllyasviel/Annotators")
