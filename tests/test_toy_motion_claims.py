"""The papers' claims on the moving toy world, with the flow-matching Wan toy (``--toy --vdm wan2.1-t2v-1.3b``).

Each claim is a check on the records of real runs of the shipped trained weights; each has a
planted-bug counterpart that runs the same check on a deliberately broken pipeline and must see it
fail, so that a check which cannot fail is caught here. Margins sit inside what
benchmarks/quality.py --motion measures (docs/toy-world.md).
"""

import pytest

import vsynth
from vsynth.toy import shipped
from vsynth.toy.truth import save_clip

pytestmark = pytest.mark.skipif("wan2.1-t2v" not in shipped.toy_models(), reason="the Wan toy weights are not installed")


def _held_out_direction_agreement() -> float:
    """What the shipped Wan toy's training measured last on held-out seeds (manifest.json), 0 when not recorded."""
    history = shipped.manifest().get("models", {}).get("wan2.1-t2v", {}).get("metrics", {}).get("t2v", {}).get("history", [])
    return float(history[-1].get("direction_agreement", 0.0)) if history else 0.0


# The claims hold only for a Wan toy that learned motion: the shipped one's manifest records a held-out direction
# agreement of 8/8 at guidance 5 (run 15, docs/toy-world.md). Weights whose manifest records less than 0.75 (a retraining that failed)
# turn the claims into expected failures, not run, and skip the planted bugs, which could not be told from them.
MOVES = _held_out_direction_agreement() >= 0.75
NOT_YET = "the shipped Wan toy has not learned motion yet (held-out direction agreement in manifest.json below 0.75)"
claim = pytest.mark.xfail(not MOVES, reason=NOT_YET, strict=True, run=False)
planted = pytest.mark.skipif(not MOVES, reason=NOT_YET + ": a planted bug cannot be told from it")

WAN = "wan2.1-t2v-1.3b"
STEPS = 20
SMALL = dict(toy=True, frames=9, steps=STEPS, seed=42)
WARP_RATIO = 0.6
FLICKER_RATIO = 0.6
EDGE_KEPT = 0.3
EVS_COST = 1 / 3


def prompt(motion, colour="red", shape="circle"):
    return f"a {colour} {shape} moving {motion} on a white background"


def check_moves(record, motion):
    metrics = record["metrics"]
    assert metrics["direction_agreement"]["final"] == 1.0, (motion, metrics["direction_agreement"])


@pytest.fixture(scope="module")
def motion_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("toy") / "clip.mp4"
    return path, save_clip(path, 7, generator="make_motion_clip", frames=9, motion="right", background="white", colour="red", shape="circle")


@pytest.fixture(scope="module")
def mixed(motion_clip):
    path, truth = motion_clip
    return vsynth.run(idm="controlnet-canny", vdm=WAN, video=path, prompt=truth.caption, stride=1, **SMALL).record


def check_mixed_inversion(record):
    m = record["metrics"]
    assert m["warping_error"]["final"] < WARP_RATIO * m["warping_error"]["idm"], m["warping_error"]
    assert m["background_flicker"]["final"] < FLICKER_RATIO * m["background_flicker"]["idm"], m["background_flicker"]
    assert m["edge_f1"]["final"] > EDGE_KEPT * m["edge_f1"]["idm"], m["edge_f1"]


def check_evs(record):
    m = record["metrics"]
    assert m["direction_agreement"]["final"] == 1.0, m["direction_agreement"]  # the T2V's motion
    assert m["detected_colour_adherence"]["final"] >= 0.5, m["detected_colour_adherence"]  # the prompted colour


def check_evs_cost(record, bivdiff):
    assert sum(record["frame_evals"].values()) <= EVS_COST * sum(bivdiff["frame_evals"].values()), (record["frame_evals"], bivdiff["frame_evals"])


@claim
@pytest.mark.parametrize("motion", ["right", "left"])
def test_the_wan_toy_moves_the_prompted_way(motion):
    check_moves(vsynth.run(vdm=WAN, bridge="none", prompt=prompt(motion), **SMALL).record, motion)


@planted
def test_planted_bug_frames_played_backwards_fail_the_motion_check(monkeypatch):
    from vsynth.plugins.vdm.wan import WanCodec

    decode = WanCodec.decode
    monkeypatch.setattr(WanCodec, "decode", lambda self, latents, advance=None: decode(self, latents, advance)[::-1].copy())
    with pytest.raises(AssertionError):
        check_moves(vsynth.run(vdm=WAN, bridge="none", prompt=prompt("right"), **SMALL).record, "right")


@pytest.mark.xfail(strict=True, reason="measured (docs/toy-world.md): across processes the Wan toy keeps the ControlNet's edges "
                   "(edge F1 0.64 to 0.78) but cuts its flicker only to 0.90x and its warping error to 0.86x, not to 0.6x")
def test_mixed_inversion_smooths_the_framewise_controlnet_across_processes(mixed):
    """BIVDiff with a VP / eps ControlNet and a flow-matching Wan (video-side inversion: their latent spaces differ): the
    claim does not hold on this toy. Strict: the day it holds, this fails and says so."""
    check_mixed_inversion(mixed)


@pytest.fixture(scope="module")
def t2v_video(tmp_path_factory):
    """The Wan toy's own generation of a red circle moving right: what EVS enhances in its paper's setting."""
    from vsynth.toy.world import write_video

    path = tmp_path_factory.mktemp("t2v") / "t2v.mp4"
    write_video(path, vsynth.run(vdm=WAN, bridge="none", prompt=prompt("right"), **SMALL).frames)
    return path


@pytest.fixture(scope="module")
def enhanced(t2v_video):
    """BIVDiff (Mixed Inversion with the toy ControlNet) and EVS (with the toy SD1.5) on the same T2V generation."""
    bivdiff = vsynth.run(idm="controlnet-canny", vdm=WAN, video=t2v_video, prompt=prompt("right"), stride=1, **SMALL).record
    evs = vsynth.run(idm="sd15", vdm=WAN, bridge="encapsulated", video=t2v_video, prompt=prompt("right"), stride=1, **SMALL).record
    return bivdiff, evs


def test_evs_costs_at_most_a_third_of_bivdiffs_frame_evaluations_on_flow_models(enhanced):
    """EVS's cost claim, which holds whatever the models learned: SDEdit at 0.4 of the T2I schedule and a short [T2V] block
    against BIVDiff's frame-wise ControlNet generation, its inversion and the VDM's smoothing."""
    bivdiff, evs = enhanced
    check_evs_cost(evs, bivdiff)


def test_planted_bug_evs_running_the_whole_t2v_schedule_fails_the_cost_check(t2v_video, enhanced):
    """An EVS whose [T2V] block regenerates the video over the VDM's whole schedule costs as much as BIVDiff."""
    record = vsynth.run(idm="sd15", vdm=WAN, bridge="encapsulated", video=t2v_video, prompt=prompt("right"), stride=1,
                        options={"t2v_strength": 1.0, "t2v_steps": STEPS, "bridge.strength": 1.0}, **SMALL).record  # fmt: skip
    with pytest.raises(AssertionError):
        check_evs_cost(record, enhanced[0])


@claim
def test_evs_keeps_the_t2i_look_and_the_t2v_motion(enhanced):
    """EVS enhancing the T2V's generation keeps the prompted colour and the T2V's direction."""
    check_evs(enhanced[1])


@claim
def test_evs_with_the_flux_toy_keeps_its_look_and_the_t2v_motion(t2v_video):
    """Issue 28's third Done-when: --toy --idm flux-dev --vdm wan2.1-t2v-1.3b --bridge encapsulated, on the Wan toy's
    own generation, keeps the prompted colour and the prompted direction: both models flow-matching."""
    check_evs(vsynth.run(idm="flux-dev", vdm=WAN, bridge="encapsulated", video=t2v_video, prompt=prompt("right"), stride=1, **SMALL).record)


@planted
def test_planted_bug_evs_returning_its_frames_backwards_fails_the_look_and_motion_check(t2v_video, monkeypatch):
    """An EVS whose result has its frames in reverse order keeps the look, not the T2V's direction."""
    from vsynth.plugins.bridges.encapsulated import Encapsulated

    run = Encapsulated.run

    def backwards(self, *args, **kwargs):
        result = run(self, *args, **kwargs)
        result.latents = result.latents.flip(2)
        return result

    monkeypatch.setattr(Encapsulated, "run", backwards)
    record = vsynth.run(idm="sd15", vdm=WAN, bridge="encapsulated", video=t2v_video, prompt=prompt("right"), stride=1, **SMALL).record
    with pytest.raises(AssertionError):
        check_evs(record)
