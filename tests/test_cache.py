"""Step caches (--cache, --idm-cache, --vdm-cache): refused before loading where they do not apply, counted in
run.json, one state per call of a step (conditional, unconditional, window, batch chunk), reset wherever a bridge
begins a new sequence of steps, and gone after the run (a Session's next run is uncached)."""

import json

import pytest
import torch
from click.testing import CliRunner

import vsynth
from tests.conftest import SAMPLE_VIDEO
from vsynth.cli import cli
from vsynth.core.diffusion import caches
from vsynth.core.host.registry import get_registry
from vsynth.errors import InvalidParamsError, UnknownNameError, VsynthInputError

TINY = dict(tiny=True, frames=5, height=64, width=64, steps=6, prompt="a red ball", seed=3)


def specs(**roles):
    registry = get_registry()
    return {role: registry.model(name, role) for role, name in roles.items()}


def test_a_cache_that_does_not_apply_is_refused_with_the_ones_that_do():
    wan, sd = specs(vdm="wan2.1-t2v-1.3b"), specs(idm="sd15", vdm="zeroscope")
    with pytest.raises(VsynthInputError, match="--vdm-cache deepcache applies to unet models.*wan2.1-t2v-1.3b is a transformer, its caches: first-block, taylorseer, pab, fastercache"):
        caches.plan(None, None, "deepcache", wan, {})
    with pytest.raises(VsynthInputError, match="--cache first-block applies to transformer models.*sd15 is a unet, its caches: deepcache, tome"):
        caches.plan("first-block", None, None, sd, {})
    with pytest.raises(VsynthInputError, match="magcache applies to FLUX.1 transformers"):
        caches.plan(None, None, "magcache", wan, {})
    with pytest.raises(UnknownNameError, match="--cache fast: unknown cache; known: first-block"):
        caches.plan("fast", None, None, wan, {})
    with pytest.raises(VsynthInputError, match="--idm-cache caches the image model, and this run has none"):
        caches.plan(None, "deepcache", None, wan, {})


def test_cache_params_are_options_of_both_models_or_of_one():
    both = specs(idm="sd15", vdm="zeroscope")
    choices, left, notices = caches.plan("deepcache", None, None, both, {"cache.interval": 4, "vdm.cache.depth": 2, "idm.batch_size": 2})
    assert left == {"idm.batch_size": 2} and not notices
    assert choices["idm"].params.model_dump() == {"interval": 4, "depth": 1}
    assert choices["vdm"].params.model_dump() == {"interval": 4, "depth": 2}
    with pytest.raises(InvalidParamsError, match="-o vdm.cache.threshold: deepcache has no such param; its params: interval, depth"):
        caches.plan("deepcache", None, None, both, {"vdm.cache.threshold": 1})
    with pytest.raises(InvalidParamsError, match="-o cache.threshold: no cache of this run has that param"):
        caches.plan("deepcache", None, None, both, {"cache.threshold": 1})
    with pytest.raises(InvalidParamsError, match=r"^-o cache.interval=0: must be at least 1 \(deepcache\)$"):
        caches.plan("deepcache", None, None, both, {"cache.interval": 0})
    with pytest.raises(InvalidParamsError, match=r"^-o vdm.cache.interval=2.5: must be a whole number \(deepcache\)$"):
        caches.plan("deepcache", None, None, both, {"vdm.cache.interval": 2.5})  # pydantic's "Input should be a valid integer..."
    mixed = specs(idm="controlnet-canny", vdm="wan2.1-t2v-1.3b")
    choices, _, notices = caches.plan("taylorseer", None, None, mixed, {})
    assert set(choices) == {"vdm"} and notices == ["--cache taylorseer does not apply to controlnet-canny, which runs uncached (its caches: deepcache, tome)"]
    choices, _, notices = caches.plan("taylorseer", "deepcache", None, mixed, {})
    assert {r: c.name for r, c in choices.items()} == {"idm": "deepcache", "vdm": "taylorseer"} and not notices


def test_the_cli_refuses_before_loading_in_one_line():
    result = CliRunner().invoke(cli, ["run", "--tiny", "--vdm", "wan2.1-t2v-1.3b", "--bridge", "none", "--prompt", "a", "--cache", "deepcache"])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "deepcache applies to unet models" in result.output


def test_wan_first_block_cache_reuses_steps_with_one_state_per_pass_and_leaves_the_models_uncached():
    session = vsynth.Session()
    plain = session.run(vdm="wan2.1-t2v-1.3b", bridge="none", **TINY)
    cached = session.run(vdm="wan2.1-t2v-1.3b", bridge="none", cache="first-block", options={"cache.threshold": 1e9}, **TINY)
    record = cached.record["caches"]["vdm"]
    assert record["forwards"] == plain.record["nfe"]["vdm"] == 12 and plain.record["caches"] == {}
    # the conditional and the unconditional pass each compute their first step; every later step reuses
    assert record["full_forwards"] == 2 and record["cached_forwards"] == 10
    assert not torch.equal(cached.latents, plain.latents)
    again = session.run(vdm="wan2.1-t2v-1.3b", bridge="none", **TINY)  # the same loaded models, hooks gone
    assert torch.equal(again.latents, plain.latents) and again.record["caches"] == {}


def test_mixed_inversion_with_taylorseer_writes_every_output_and_resets_between_inversion_and_smoothing(tmp_path):
    settings = dict(TINY, idm="controlnet-canny", vdm="wan2.1-t2v-1.3b", bridge="mixed-inversion", video=SAMPLE_VIDEO)
    with pytest.warns(vsynth.errors.VsynthWarning):
        result = vsynth.run(cache="taylorseer", options={"cache.interval": 100, "cache.warmup": 1}, out=tmp_path / "out", **settings)
    files = {p.name for p in result.out_dir.iterdir()}
    assert {"video.mp4", "video.gif", "grid.png", "idm_frames.mp4", "condition.mp4", "run.json"} <= files
    record = json.loads((result.out_dir / "run.json").read_text())
    vdm = record["caches"]["vdm"]
    assert "idm" not in record["caches"] and vdm["forwards"] == record["nfe"]["vdm"] == 6 + 12
    # TaylorSeer computes the warmup step (0) and the first after it (2) of each sequence and pass (inversion: 1 pass;
    # smoothing: 2), then extrapolates; without the reset at the start of smoothing, its conditional pass would have
    # gone on extrapolating the inversion's features (4 full forwards)
    assert vdm["full_forwards"] == 2 * (1 + 2) and vdm["cached_forwards"] == 12


def test_encapsulated_deepcache_on_the_idm_computes_the_first_step_of_each_sequence():
    session = vsynth.Session()
    settings = dict(TINY, frames=4, idm="sd15", vdm="zeroscope", bridge="encapsulated", video=SAMPLE_VIDEO)
    plain = session.run(**settings)
    exact = session.run(idm_cache="deepcache", options={"cache.interval": 1}, **settings)
    assert torch.equal(exact.latents, plain.latents)  # every step in full: DeepCache's wrapping changes nothing
    cached = session.run(idm_cache="deepcache", options={"cache.interval": 100}, **settings)
    idm = cached.record["caches"]["idm"]
    assert idm["forwards"] == plain.record["nfe"]["idm"] == cached.record["nfe"]["idm"]
    # two T2I sequences (before and after the [T2V] block): each begins with a full step, the rest reuse
    assert idm["full_forwards"] == 2 and idm["cached_forwards"] == idm["forwards"] - 2 > 0
    assert 0 < idm["layer_calls_run"] < 1 and not torch.equal(cached.latents, plain.latents)
    assert "vdm" not in cached.record["caches"]
    # token merging: fewer tokens, every forward full (the tiny UNet's first block has no attention: merge at the second's)
    merged = session.run(idm_cache="tome", options={"cache.max_downsample": 2}, **settings)
    assert merged.record["caches"]["idm"]["cached_forwards"] == 0 and not torch.equal(merged.latents, plain.latents)
    assert torch.equal(session.run(**settings).latents, plain.latents)  # DeepCache's and ToMe's patches are gone


def test_windows_and_frame_batches_keep_their_own_states():
    """A window (or a batch chunk) of a step is a call of its own: with a reuse-everything cache, each computes once."""
    result = vsynth.run(vdm="zeroscope", bridge="none", vdm_cache="deepcache", options={"cache.interval": 100, "window": 2, "overlap": 1},
                        **{**TINY, "frames": 4, "steps": 3, "vdm_guidance": 1.0})  # fmt: skip
    record = result.record["caches"]["vdm"]
    assert record["forwards"] == 3 * 3 and record["full_forwards"] == 3  # three windows, each full at the first step only


def test_cache_options_that_would_do_nothing_are_refused():
    both = specs(idm="flux-dev", vdm="wan2.1-t2v-1.3b")
    with pytest.raises(InvalidParamsError, match="-o vdm.cache.skip: the video model runs no cache: add --vdm-cache"):
        caches.plan(None, "pab", None, both, {"vdm.cache.skip": 2})
    with pytest.raises(InvalidParamsError, match=r"-o cache.high=100: must be above low \(900\)"):
        caches.plan("pab", None, None, both, {"cache.low": 900, "cache.high": 100})


def test_fastercache_on_a_sequence_that_begins_inside_its_range():
    """idm-only's SDEdit starts FLUX at t 400, inside FasterCache's range: its hook skipped with nothing cached (a crash)."""
    result = vsynth.run(idm="flux-dev", bridge="idm-only", video=SAMPLE_VIDEO, idm_cache="fastercache", **{**TINY, "steps": 10})
    record = result.record["caches"]["idm"]
    assert record["cached_forwards"] > 0 and result.latents.isfinite().all()
