"""Full-size smoke runs: the real architectures (random weights) through every bridge, on CPU.

SD1.5 + ControlNet (canny) + ZeroScope through each bridge, and an SD1.5 ControlNet with AnimateDiff
and with AnimateDiff-Lightning, at their real sizes from an offline fake hub cache with the real
layouts (:mod:`vsynth.testing.fake_hub`, ``scale="full"``); 2 frames at 64x64, 2 steps, one step of
each SDEdit. Marked ``slow`` and skipped by default (see the "Tests" section of docs/reference.md for their cost):

    VSYNTH_FULL_HUB=/path/to/full-size-cache python -m pytest -m slow tests/test_full_size.py

``VSYNTH_FULL_HUB`` names a full-size cache holding these repos (``build_fake_hub(dir, REPOS,
scale="full")`` writes one); without it, one is built in a temporary folder first.
"""

import gc
import os
from pathlib import Path

import numpy as np
import pytest

from vsynth.testing import write_sample_video
from vsynth.testing.fake_hub import build_fake_hub, offline_hub, snapshot_dir

pytestmark = pytest.mark.slow

REPOS = [
    "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "lllyasviel/control_v11p_sd15_canny",
    "cerspense/zeroscope_v2_576w",
    "guoyww/animatediff-motion-adapter-v1-5-2",
    "ByteDance/AnimateDiff-Lightning",
]
IDM = "controlnet-canny"
# One step of each SDEdit out of 2: the bridges' default strengths would leave none.
BRIDGE_OPTIONS = {
    "mixed-inversion": {},
    "encapsulated": {"bridge.strength": 0.5, "bridge.t2v_strength": 0.5},
    "idm-only": {"bridge.strength": 0.5},
    "idm-then-vdm": {"bridge.strength": 0.5, "bridge.t2v_strength": 0.5},
    "vdm-then-idm": {"bridge.strength": 0.5, "bridge.t2v_strength": 0.5},
}
SETTINGS = {"prompt": "a ball", "frames": 2, "stride": 1, "height": 64, "width": 64, "steps": 2, "vdm_steps": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def full_hub(tmp_path_factory) -> Path:
    given = os.environ.get("VSYNTH_FULL_HUB")
    if not given:
        return build_fake_hub(tmp_path_factory.mktemp("full-hub"), REPOS, scale="full")
    missing = [repo for repo in REPOS if not snapshot_dir(given, repo, "full").is_dir()]
    if missing:
        pytest.fail(f"VSYNTH_FULL_HUB={given} has no full-size snapshot of {', '.join(missing)}")
    return Path(given)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_sample_video(tmp_path_factory.mktemp("video") / "in.mp4", frames=2)


@pytest.fixture(scope="module")
def session(full_hub):
    """One session for the module: runs on one model set load it once."""
    import vsynth

    with offline_hub(full_hub), vsynth.Session() as session:
        yield session
    gc.collect()


def _check(result, *roles: str) -> None:
    """Two 64x64 frames from finite latents, with every model of ``roles`` evaluated."""
    assert result.frames.shape == (2, 64, 64, 3)
    assert np.isfinite(result.latents.numpy()).all()
    assert all(result.record["nfe"].get(role, 0) >= 1 for role in roles), result.record["nfe"]


@pytest.mark.parametrize("bridge", list(BRIDGE_OPTIONS))
def test_controlnet_and_zeroscope_through_each_bridge(session, video, bridge):
    result = session.run(idm=IDM, vdm="zeroscope", bridge=bridge, video=video, options=BRIDGE_OPTIONS[bridge], **SETTINGS)
    weights = {source for model in result.record["models"].values() for source in model["weights"].values()}
    assert {"lllyasviel/control_v11p_sd15_canny", "cerspense/zeroscope_v2_576w"} <= weights
    _check(result, "idm", "idm.controlnet", *(("vdm",) if bridge != "idm-only" else ()))


def test_zeroscope_alone_through_vdm_only(session, video):
    result = session.run(vdm="zeroscope", bridge="vdm-only", video=video, options={"bridge.t2v_strength": 0.5}, **SETTINGS)
    _check(result, "vdm")


@pytest.mark.parametrize("vdm, options", [("animatediff", {}), ("animatediff-lightning", {"vdm.checkpoint_steps": 2})])
def test_controlnet_with_animatediff(session, video, vdm, options):
    """Mixed inversion: frame-wise generation, both inversions and the VDM's smoothing, 2 steps each."""
    result = session.run(idm=IDM, vdm=vdm, video=video, options=options, **SETTINGS)
    _check(result, "idm", "idm.controlnet", "vdm")


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory) -> Path:
    """Wan 2.1 T2V 1.3B as a local folder: its real transformer and VAE (random weights), UMT5 cut to 2 layers."""
    from vsynth.testing.fake_hub import write_wan_folder

    folder = write_wan_folder(tmp_path_factory.mktemp("wan") / "Wan2.1-T2V-1.3B")
    gc.collect()
    return folder


def test_wan_1_3b_at_full_size_through_text_to_video_and_vdm_only(wan_folder, video):
    """The real 1.3B transformer (1.42 B parameters) and Wan VAE load from a folder and sample 5 frames at 64x64."""
    import vsynth

    common = dict(vdm="wan2.1-t2v-1.3b", vdm_weights=str(wan_folder), prompt="a ball", frames=5, height=64, width=64, steps=2, device="cpu")
    result = vsynth.run(bridge="none", **common)
    assert result.latents.shape == (1, 16, 2, 8, 8) and np.isfinite(result.latents.float().numpy()).all()
    assert result.record["models"]["vdm"]["sampling"]["process"] == "flow" and result.record["nfe"]["vdm"] == 4
    edit = vsynth.run(bridge="vdm-only", video=video, stride=1, options={"t2v_strength": 1.0}, **{**common, "frames": 2})
    assert edit.frames.shape == (1, 64, 64, 3)  # 2 frames fit 1 + 4k as 1
