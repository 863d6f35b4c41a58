"""The core's contract with any model: solvers by name checked against the noise process, latent spaces
that pass latents or transcode them, refusals before loading, and what run.json says of it."""

import copy
import json
import warnings

import pytest
from click.testing import CliRunner

import vsynth
from tests.conftest import SAMPLE_VIDEO
from vsynth.cli import cli
from vsynth.core.host.registry import get_registry
from vsynth.core.host.specs import LatentSpace
from vsynth.core.run.config import RunConfig
from vsynth.core.run.pipeline import execute, plan_run
from vsynth.errors import InvalidParamsError, PluginError, VsynthInputError, VsynthWarning

TINY = dict(tiny=True, frames=2, height=64, width=64, steps=4, vdm_steps=4, prompt="a ball", seed=3)
VIDEO = dict(video=SAMPLE_VIDEO, **TINY)


def registry_with(**variants):
    """The registry plus copies of built-in specs under new names: ``name=(base, {field: value})``."""
    registry = copy.copy(get_registry())
    registry.models = dict(registry.models)
    for name, (base, update) in variants.items():
        spec = registry.model(base).model_copy(update={"name": name, **update})
        registry.models[spec.qualified_name] = spec
    return registry


def run_with(registry, **settings):
    return execute(plan_run(RunConfig(**settings), registry), write=False)


BRIDGES = ["mixed-inversion", "encapsulated", "idm-only", "idm-then-vdm", "vdm-then-idm"]


@pytest.mark.parametrize("bridge", BRIDGES)
def test_every_bridge_runs_with_multistep_solvers_on_both_models(bridge):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VsynthWarning)  # idm-only: "--vdm zeroscope ... not used"
        result = vsynth.run(idm="controlnet-canny", vdm="zeroscope", bridge=bridge, idm_scheduler="dpm++", vdm_scheduler="unipc", **VIDEO)
    sampling = {role: m["sampling"]["scheduler"] for role, m in result.record["models"].items()}
    expected = {"idm": "DPMSolverMultistepScheduler", "vdm": "UniPCMultistepScheduler"}
    assert sampling == (expected if bridge != "idm-only" else {"idm": expected["idm"]})  # idm-only loads no VDM
    assert result.latents.isfinite().all() and result.frames.std() > 0


def test_mixed_inversion_with_heun_on_two_flow_models_inverts_by_flow():
    """Two flow schedulers of one config (Heun's has few keys) share a schedule, but BIVDiff's own inversion is VP's:
    the flow inversion runs (it crashed)."""
    result = vsynth.run(idm="flux-schnell", vdm="wan2.1-t2v-1.3b", idm_scheduler="heun", vdm_scheduler="heun", **{**VIDEO, "frames": 5})
    assert result.latents.isfinite().all() and result.record["nfe"]["vdm"] > 0


def test_a_solver_that_would_drop_the_models_schedule_is_refused():
    """FlowMatchHeun has a static shift only: with FLUX dev's family (resolution-dependent shift) and LTX-Video (and its
    terminal sigma) it sampled an unshifted schedule, recorded but unsaid; their diffusers pipelines refuse it too."""
    with pytest.raises(VsynthInputError, match=r"^--idm-scheduler heun: its scheduler \(FlowMatchHeunDiscreteScheduler\) cannot keep "
                       r"flux-canny's schedule \(use_dynamic_shifting\); these keep it: euler, dpm\+\+, unipc, lcm$"):
        vsynth.run(idm="flux-canny", vdm="wan2.1-t2v-1.3b", idm_scheduler="heun", **{**VIDEO, "frames": 5})
    from diffusers import FlowMatchEulerDiscreteScheduler

    from vsynth.core.diffusion import solvers
    from vsynth.plugins.vdm.ltx import calculate_shift

    ltx = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05, base_image_seq_len=1024,
                                          max_image_seq_len=4096, shift_terminal=0.1)  # fmt: skip
    assert solvers.dropped_settings("dpm++", ltx) == ["shift_terminal"] and not solvers.dropped_settings("unipc", ltx)
    # UniPC takes no shift anchors of its own: LTX-Video's are carried, or its shift at 4096 tokens read FLUX's 1.15
    assert calculate_shift(4096, solvers.build("unipc", ltx).config) == calculate_shift(4096, ltx.config) == pytest.approx(2.05)


@pytest.mark.parametrize("solver", ["euler-a", "heun", "lcm"])
def test_stochastic_and_second_order_solvers_run_with_lightning_and_repeat_per_seed(solver):
    settings = dict(idm="controlnet-canny", vdm="animatediff-lightning", idm_scheduler=solver, vdm_scheduler=solver, **VIDEO)
    settings["vdm_steps"] = 4
    first, again = vsynth.run(**settings), vsynth.run(**settings)
    assert first.latents.isfinite().all()
    assert (first.latents == again.latents).all()  # euler-a and lcm draw from the run's generator
    record = first.record
    assert record["models"]["vdm"]["sampling"]["process"] == "vp-eps"
    if solver == "heun":  # 2N - 1 evaluations for N steps, DDIM inversion is first order: N
        assert record["nfe"]["vdm"] == 2 * 4 - 1


def test_a_solver_that_does_not_exist_is_one_line_and_exit_2():
    args = ["run", "--tiny", "--vdm", "zeroscope", "--prompt", "a", "--vdm-scheduler", "dpm2"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line == "Error: --vdm-scheduler dpm2: no such solver; zeroscope takes ddim, euler, euler-a, dpm++, unipc, lcm, heun"


def test_a_solver_that_does_not_fit_the_process_is_refused_before_loading():
    registry = registry_with(**{"flow-vdm": ("zeroscope", {"process": "flow", "solver": "euler"})})
    with pytest.raises(VsynthInputError, match="--vdm-scheduler ddim: ddim does not solve flow-vdm's flow process; it takes euler, dpm\\+\\+, unipc, lcm, heun$"):
        plan_run(RunConfig(vdm="flow-vdm", vdm_scheduler="ddim", **TINY), registry)


def test_a_spec_whose_denoiser_runs_another_process_is_a_plugin_error():
    registry = registry_with(**{"v-vdm": ("zeroscope", {"process": "vp-v"})})
    with pytest.raises(PluginError, match="declares the vp-v process, but its denoiser runs vp-eps"):
        run_with(registry, vdm="v-vdm", **TINY)


def test_feature_injection_into_a_transformer_is_refused_before_loading():
    registry = registry_with(**{"dit-vdm": ("zeroscope", {"architecture": "transformer"})})
    with pytest.raises(InvalidParamsError, match="injection=sfi injects into a UNet decoder's spatial self-attention, and dit-vdm is a transformer"):
        plan_run(RunConfig(idm="sd15", vdm="dit-vdm", bridge="encapsulated", options={"injection": "sfi"}, **TINY), registry)


CAUSAL = LatentSpace(name="sd-vae", temporal=4, causal=True, size_multiple=16)


def test_frames_and_sizes_a_latent_space_cannot_hold_are_rounded_with_a_notice_or_refused():
    registry = registry_with(**{"causal-vdm": ("zeroscope", {"latent_space": CAUSAL})})
    settings = dict(TINY, vdm="causal-vdm", frames=8, height=72, width=64)
    with pytest.warns(UserWarning) as notices:
        plan = plan_run(RunConfig(**settings), registry)
    assert (plan.config.frames, plan.height, plan.width) == (5, 64, 64)
    assert [str(n.message) for n in notices] == [
        "--frames 8: causal-vdm's latent space holds 1 + 4k frames; running 5",
        "--height 72 --width 64: causal-vdm needs multiples of 16 pixels; running 64x64",
    ]
    with pytest.raises(VsynthInputError, match="^--frames 8: causal-vdm's latent space holds 1 \\+ 4k frames: choose such values, or --fit round"):
        plan_run(RunConfig(**settings, fit="strict"), registry)


def test_models_of_two_latent_spaces_meet_through_pixels_and_run_json_counts_it():
    registry = registry_with(**{"other-vdm": ("zeroscope", {"latent_space": LatentSpace(name="other-vae")})})
    shared = run_with(registry, idm="controlnet-canny", vdm="zeroscope", bridge="idm-then-vdm", **VIDEO).record
    other = run_with(registry, idm="controlnet-canny", vdm="other-vdm", bridge="idm-then-vdm", **VIDEO).record
    assert shared["codecs"]["vdm"] == {"latent_space": "sd-vae", "encoded_frames": 0, "decoded_frames": 0}
    # the IDM's clean latents decoded once more and encoded by the VDM's codec, which decodes the result
    # (shared: the IDM's codec decodes the IDM frames and the result)
    assert other["codecs"]["vdm"] == {"latent_space": "other-vae", "encoded_frames": 2, "decoded_frames": 2}
    assert shared["codecs"]["idm"]["decoded_frames"] == other["codecs"]["idm"]["decoded_frames"] == 4
    json.dumps(other)  # run.json stays valid JSON (no infinities from scheduler configs)


def test_across_latent_spaces_mixed_inversion_inverts_the_video_side_only():
    """The IDM's default ratio becomes 0 with a notice; a ratio the user sets above 0 is refused before loading."""
    registry = registry_with(**{"other-vdm": ("zeroscope", {"latent_space": LatentSpace(name="other-vae")})})
    settings = dict(idm="controlnet-canny", vdm="other-vdm", bridge="mixed-inversion", **VIDEO)
    with pytest.raises(InvalidParamsError, match="-o mixing_ratio=0.5 mixes an inversion in controlnet-canny's latent space .* use -o mixing_ratio=0"):
        plan_run(RunConfig(**settings, options={"mixing_ratio": 0.5}), registry)
    with pytest.warns(UserWarning, match="only the video-side inversion runs \\(mixing_ratio 0 instead of 1\\)"):
        record = run_with(registry, **settings).record
    assert record["bridge"]["params"]["mixing_ratio"] == 0
    assert record["codecs"]["vdm"]["encoded_frames"] == 2 and record["codecs"]["vdm"]["decoded_frames"] == 2


def test_a_bridge_default_the_bridge_has_no_param_of_names_the_model():
    """A spec's typo in bridge_defaults read as the user's: "unknown setting 'mixng_ratio'", naming neither."""
    registry = registry_with(typo=("controlnet-canny", {"bridge_defaults": {"mixed-inversion": {"mixng_ratio": 1.0}}}))
    with pytest.raises(InvalidParamsError, match=r"^typo \(built-in\) sets bridge_defaults mixed-inversion.mixng_ratio, which bridge"):
        plan_run(RunConfig(idm="typo", vdm="zeroscope", **VIDEO), registry)


def test_a_tiny_name_vsynth_does_not_build_is_one_line_naming_the_model():
    """A plugin spec's WeightsSpec(tiny="sd15-typo") was a KeyError traceback from the tiny builder (and stopped a batch)."""
    base = get_registry().model("controlnet-canny")
    weights = tuple(w.model_copy(update={"tiny": "sd15-typo"}) if w.role == "base" else w for w in base.weights)
    registry = registry_with(typo=("controlnet-canny", {"weights": weights}))
    with pytest.raises(VsynthInputError, match=r"^typo \(vsynth\) names tiny model 'sd15-typo' for its base weights, which vsynth does not build"):
        plan_run(RunConfig(idm="typo", vdm="zeroscope", **VIDEO), registry)
