"""Prompt-to-Prompt on tiny models: inversion-based reconstruction, and what the attention control edits when."""

from dataclasses import dataclass

import pytest
import torch

from tests.conftest import load_tiny
from tests.test_equivalence import TOL
from vsynth.core.diffusion import sampling
from vsynth.core.diffusion.inputs import BridgeInputs
from vsynth.core.diffusion.inputs import Sources
from vsynth.errors import InvalidParamsError
from vsynth.plugins.idm import prompt2prompt
from vsynth.plugins.idm.prompt2prompt import SELF_REPLACE_MAX_QUERIES, AttentionEdit, refine_mapping, token_ids

STEPS, GUIDANCE = 5, 7.5
SOURCE = "a red ball"
SAME_LENGTH = "a tan ball"  # as many tokens as SOURCE (the tiny tokenizer is character-level): replace
LONGER = "a red ball on grass"  # words added: refine


@dataclass
class Call:
    """One edit call: probabilities before and after, as (groups, [source, edit], frames*heads, queries, keys)."""

    step: int
    is_cross: bool
    before: torch.Tensor
    after: torch.Tensor


@pytest.fixture
def calls(monkeypatch):
    """Record every AttentionEdit call of a run."""
    records = []
    edit = AttentionEdit.__call__

    def recording(self, probs, is_cross):
        before = probs.clone().unflatten(0, (self.groups, 2, -1))
        after = edit(self, probs, is_cross)
        records.append(Call(self.step, is_cross, before, after.clone().unflatten(0, (self.groups, 2, -1))))
        return after

    monkeypatch.setattr(AttentionEdit, "__call__", recording)
    return records


@pytest.fixture
def pairs(monkeypatch):
    """Record the [source, edit] latents every run denoises to."""
    records = []
    sample = sampling.sample

    def recording(denoiser, *args, **kwargs):
        out = sample(denoiser, *args, **kwargs)
        records.append(out)
        return out

    monkeypatch.setattr(sampling, "sample", recording)
    return records


def edit(p2p, frames, source_prompt, target_prompt):
    f, h, w, _ = frames.shape
    sources = Sources(video=frames, source_prompt=source_prompt)
    inputs = BridgeInputs(
        frames=f, height=h, width=w, steps=STEPS, guidance=GUIDANCE, vdm_steps=STEPS, vdm_guidance=GUIDANCE,
        prompt=target_prompt, image_prompt=target_prompt, negative_prompt="", sources=sources, frame_inputs=p2p.prepare(sources),
    )  # fmt: skip
    return p2p.generate(inputs, torch.Generator().manual_seed(0))


def text_conditioned(call: Call, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(source, edit) probabilities of the text-conditioned group, ``which`` = before or after the edit."""
    probs = getattr(call, which)
    return probs[-1, 0], probs[-1, 1]


def test_identical_prompts_without_edit_reconstruct_from_the_inverted_latents(source_frames, pairs):
    """Both branches are plain DDIM sampling, with the source prompt, from the source frames inverted with it."""
    p2p = load_tiny("prompt2prompt", cross_replace=0.0, self_replace=0.0)
    edited = edit(p2p, source_frames, SOURCE, SOURCE)
    (pair,) = pairs
    d = p2p.denoiser
    inverted = sampling.bivdiff_invert(d, p2p.codec.encode(source_frames), d.condition(SOURCE), steps=STEPS)
    reconstruction = sampling.sample(d, inverted, d.condition(SOURCE, ""), steps=STEPS, guidance=GUIDANCE)
    assert edited.shape == (1, 4, 3, 8, 8)
    torch.testing.assert_close(edited, pair[1:])
    torch.testing.assert_close(pair[1:], pair[:1], **TOL)
    torch.testing.assert_close(pair[:1], reconstruction, **TOL)


def test_replace_copies_the_source_cross_attention_for_the_replaced_steps(source_frames, calls, pairs):
    p2p = load_tiny("prompt2prompt", cross_replace=0.4, self_replace=0.0)
    edit(p2p, source_frames, SOURCE, SAME_LENGTH)
    cross = [c for c in calls if c.is_cross]
    replaced = int(0.4 * (STEPS + 1))  # the official count: 2 of 5 steps
    assert {c.step for c in cross} == set(range(STEPS)) and replaced == 2
    for call in cross:
        source, edited = text_conditioned(call, "after")
        if call.step < replaced:
            assert torch.equal(edited, source)
            assert not torch.allclose(*text_conditioned(call, "before"))  # the target prompt's own maps differ
        else:
            assert torch.equal(call.after, call.before) and not torch.allclose(edited, source)
        assert torch.equal(call.after[0], call.before[0])  # the unconditional group is never edited
    # the source branch is untouched by the edit: it still reconstructs
    (pair,) = pairs
    plain = load_tiny("prompt2prompt", cross_replace=0.0, self_replace=0.0)
    d = plain.denoiser
    inverted = sampling.bivdiff_invert(d, plain.codec.encode(source_frames), d.condition(SOURCE), steps=STEPS)
    torch.testing.assert_close(pair[:1], sampling.sample(d, inverted, d.condition(SOURCE, ""), steps=STEPS, guidance=GUIDANCE), **TOL)


def test_refine_gives_shared_tokens_the_source_maps_and_new_tokens_their_own(source_frames, calls):
    p2p = load_tiny("prompt2prompt", cross_replace=0.4, self_replace=0.0)
    control = p2p.attention_edit(SOURCE, LONGER, STEPS)
    tokenizer = p2p.denoiser.tokenizer
    n_source, n_target = len(token_ids(tokenizer, SOURCE)), len(token_ids(tokenizer, LONGER))
    # "a red ball" keeps its positions, " on grass" is new, the end token moves to the end
    assert control.mapper[:n_source - 1].tolist() == list(range(n_source - 1)) and control.mapper[n_target - 1] == n_source - 1
    assert control.alphas[: n_target].tolist() == [1.0] * (n_source - 1) + [0.0] * (n_target - n_source) + [1.0]
    edit(p2p, source_frames, SOURCE, LONGER)
    shared, new = control.alphas.bool(), ~control.alphas.bool()
    for call in (c for c in calls if c.is_cross and c.step < control.cross_steps):
        source, edited = text_conditioned(call, "after")
        torch.testing.assert_close(edited[..., shared], source[..., control.mapper[shared]], rtol=0, atol=0)
        torch.testing.assert_close(edited[..., new], text_conditioned(call, "before")[1][..., new], rtol=0, atol=0)
        assert not torch.allclose(edited[..., new], source[..., new])


def test_self_attention_comes_from_the_source_for_the_first_steps(source_frames, calls):
    p2p = load_tiny("prompt2prompt", cross_replace=0.0, self_replace=0.4)
    edit(p2p, source_frames, SOURCE, SAME_LENGTH)
    own = [c for c in calls if not c.is_cross]
    replaced = int(0.4 * STEPS)
    assert replaced == 2 and {c.step for c in own} == set(range(STEPS))
    for call in own:
        source, edited = text_conditioned(call, "after")
        if call.step < replaced:
            assert torch.equal(edited, source)
        else:
            assert torch.equal(call.after, call.before)
    # once the branches' latents differ, so do their self-attention maps
    assert not torch.allclose(*text_conditioned(own[-1], "after"))


def test_self_attention_is_replaced_only_at_coarse_layers():
    control = AttentionEdit(torch.arange(4), torch.ones(4), [11, 1], cross_replace=0.0, self_replace=1.0)
    control.begin_step(11, guided=False)
    for queries, replaced in ((SELF_REPLACE_MAX_QUERIES, True), (SELF_REPLACE_MAX_QUERIES + 1, False)):
        probs = torch.rand(2 * 3, queries, 5)  # [source, edit] x 3 heads
        out = control(probs.clone(), is_cross=False)
        assert torch.equal(out[3:], probs[:3] if replaced else probs[3:])


def test_refine_mapping_aligns_common_tokens():
    mapper, alphas = refine_mapping([0, 1, 2, 3, 9], [0, 1, 5, 6, 2, 3, 9], length=10)
    assert mapper[[0, 1, 4, 5, 6]].tolist() == [0, 1, 2, 3, 4] and alphas[:7].tolist() == [1, 1, 0, 0, 1, 1, 1]
    assert mapper[7:].tolist() == [7, 8, 9] and alphas[7:].tolist() == [1, 1, 1]  # padding keeps its place


def test_auto_picks_replace_for_one_token_count_and_refine_otherwise():
    p2p = load_tiny("prompt2prompt")
    replace = p2p.attention_edit(SOURCE, SAME_LENGTH, STEPS)
    assert torch.equal(replace.mapper, torch.arange(77)) and bool(replace.alphas.all())
    assert not p2p.attention_edit(SOURCE, LONGER, STEPS).alphas.all()
    with pytest.raises(InvalidParamsError, match="edit=replace"):
        load_tiny("prompt2prompt", edit="replace").attention_edit(SOURCE, LONGER, STEPS)


def test_attention_control_is_removed_after_generation(source_frames):
    """The image-side inversion of Mixed Inversion runs the same UNet, without attention control."""
    p2p = load_tiny("prompt2prompt")
    processors = lambda: [type(p) for p in p2p.denoiser.unet.attn_processors.values()]  # noqa: E731
    before = processors()
    with prompt2prompt.attention_control(p2p.denoiser.unet, p2p.attention_edit(SOURCE, SAME_LENGTH, STEPS)):
        assert set(processors()) == {prompt2prompt.ControlledAttention}
    assert processors() == before
    edit(p2p, source_frames[:1], SOURCE, SAME_LENGTH)
    assert processors() == before and p2p.inversion_denoiser is p2p.denoiser


@pytest.mark.parametrize("bridge", ["encapsulated", "idm-only", "idm-then-vdm"])
def test_a_bridge_that_refines_by_sdedit_is_refused(tmp_path, bridge):
    """Its edit is its own frame-wise generation (inversion with the source prompt, attention control), which the SDEdit
    bridges never run: --source-prompt and -o cross_replace would do nothing there, silently."""
    from vsynth.core.run.config import RunConfig
    from vsynth.core.run.pipeline import plan_run
    from vsynth.testing import write_sample_video

    video = write_sample_video(tmp_path / "in.mp4", frames=2)
    config = RunConfig(idm="prompt2prompt", vdm="zeroscope", bridge=bridge, video=video, source_prompt=SOURCE, prompt=LONGER, tiny=True)
    with pytest.raises(InvalidParamsError, match=f"bridge '{bridge}' does not run .*use --bridge mixed-inversion"):
        plan_run(config)
