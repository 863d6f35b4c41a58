"""Prompt-to-Prompt editing of the source frames with SD1.5, as BIVDiff runs it (REFERENCE.md).

The source frames are encoded (the VAE's mean) and DDIM-inverted with the source prompt by
BIVDiff's own inversion (Mixed Inversion at r = 1; the official code ends up with the empty
prompt's embedding there, the first half of its guidance batch, where its authors meant the
prompt). Then a pair of branches is denoised from the inverted latents with guidance:
the source branch with the source prompt, which reconstructs the frames, and the edited branch
with the target prompt, whose attention maps are taken from the source branch early on (the
official ``Prompt2PromptPipeline``'s replace and refine controllers, without local blending):

- cross-attention, for the first ``cross_replace`` of the steps: *replace* (prompts of one token
  count) copies the source's token maps one to one; *refine* (words added or removed) gives every
  target token aligned with a source token that token's map, and lets new tokens keep their own;
- self-attention, for the first ``self_replace`` of the steps, at layers of at most 16x16 queries:
  the source's maps.

Only the text-conditioned half of the guidance batch is edited, as in the official controller.
"""

from __future__ import annotations

from contextlib import contextmanager
from difflib import SequenceMatcher

import torch

from vsynth.core.diffusion import sampling
from vsynth.core.diffusion.attention import attention_processors
from vsynth.core.diffusion.inputs import Conditioning
from vsynth.core.diffusion.models import ImageModel
from vsynth.errors import InvalidParamsError
from vsynth.plugins.idm.stable_diffusion import SD15, FrameDenoiser, fold, unfold

# The official controller replaces self-attention only where there are at most 16x16 queries
# (the 16x16 and 8x8 layers of a 512-pixel image): finer layers keep the edited branch's own.
SELF_REPLACE_MAX_QUERIES = 16**2


class AttentionEdit:
    """What the edited branch's attention takes from the source branch's, and at which steps.

    ``mapper[j]`` is the source token whose cross-attention map target token ``j`` takes where
    ``alphas[j]`` is 1; where it is 0 the token keeps its own map. The step counts follow the
    official code: cross-attention over ``int(cross_replace * (steps + 1))`` steps (its per-step
    weights have steps + 1 entries), self-attention over ``int(self_replace * steps)``.
    """

    def __init__(self, mapper: torch.Tensor, alphas: torch.Tensor, timesteps: list[int], cross_replace: float, self_replace: float):
        steps = len(timesteps)
        self.mapper = mapper  # (L,) long, L = the tokenizer's max length
        self.alphas = alphas  # (L,) float
        self.timesteps = timesteps  # the sampling timesteps, descending: step i runs timesteps[i]
        self.cross_steps = int(cross_replace * (steps + 1))
        self.self_steps = int(self_replace * steps)
        self.step = 0
        self.groups = 1

    def begin_step(self, t, guided: bool) -> None:
        """Called before the UNet calls of timestep ``t``; with guidance the batch holds an unconditional group first."""
        self.step = self.timesteps.index(int(t))
        self.groups = 2 if guided else 1

    def __call__(self, probs: torch.Tensor, is_cross: bool) -> torch.Tensor:
        """Edit attention probabilities (B*heads, queries, keys) of a batch B = groups x [source, edit] x frames."""
        if is_cross:
            active = self.step < self.cross_steps
        else:
            active = self.step < self.self_steps and probs.shape[1] <= SELF_REPLACE_MAX_QUERIES
        if not active:
            return probs
        pairs = probs.unflatten(0, (self.groups, 2, -1))  # a view: edited in place
        source, edit = pairs[-1, 0], pairs[-1, 1]  # the text-conditioned group
        if is_cross:
            alphas = self.alphas.to(probs.dtype)
            pairs[-1, 1] = alphas * source[..., self.mapper] + (1 - alphas) * edit
        else:
            pairs[-1, 1] = source
        return probs


class ControlledAttention:
    """The attention of SD's transformer blocks (diffusers' ``AttnProcessor``: explicit probabilities,
    no norms, no residual), with the probabilities passed through an :class:`AttentionEdit`."""

    def __init__(self, edit: AttentionEdit):
        self.edit = edit

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None):
        is_cross = encoder_hidden_states is not None
        context = encoder_hidden_states if is_cross else hidden_states
        attention_mask = attn.prepare_attention_mask(attention_mask, context.shape[1], context.shape[0])
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = self.edit(attn.get_attention_scores(query, key, attention_mask), is_cross)
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        return attn.to_out[1](attn.to_out[0](out))


@contextmanager
def attention_control(unet, edit: AttentionEdit):
    """Route every transformer-block attention of ``unet`` through ``edit`` inside the block; restore the processors after."""
    processor = ControlledAttention(edit)
    with attention_processors({m: processor for name, m in unet.named_modules() if name.endswith((".attn1", ".attn2"))}):
        yield


def token_ids(tokenizer, prompt: str) -> list[int]:
    """The prompt's token ids with start and end tokens, as they sit at the front of the padded sequence."""
    return tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids


def replace_mapping(length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every target token takes the map of the source token at its position."""
    return torch.arange(length), torch.ones(length)


def refine_mapping(source: list[int], target: list[int], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Target tokens aligned with source tokens take their maps; the others keep their own.

    Aligned by the longest matching blocks of token ids (the official code aligns globally; both
    match the common words of an added-words edit). Padding past the target prompt maps to itself,
    as in the official mapper.
    """
    mapper, alphas = torch.arange(length), torch.ones(length)
    mapper[: len(target)] = 0
    alphas[: len(target)] = 0
    for i, j, size in SequenceMatcher(a=source, b=target, autojunk=False).get_matching_blocks():
        mapper[j : j + size] = torch.arange(i, i + size)
        alphas[j : j + size] = 1
    return mapper, alphas


class EditDenoiser(FrameDenoiser):
    """Denoises the pair [source, edit] (2, C, F, h, w) with prompts (2, L, D) under an :class:`AttentionEdit`.

    A frame's two branches share each UNet call, so that the edit can hand the source's maps to the
    edited branch: ``batch_size`` frames per call, the batch being [source frames, edited frames],
    after an unconditional copy of it with guidance.
    """

    def __init__(self, base: FrameDenoiser, edit: AttentionEdit):
        super().__init__(base.unet, base.scheduler, base.tokenizer, base.text_encoder, base.batch_size)
        self.edit = edit

    @torch.no_grad()
    def predict(self, latents: torch.Tensor, t, cond: Conditioning, guidance: float) -> torch.Tensor:
        guided = guidance > 1.0
        self.edit.begin_step(t, guided)
        frames = latents.shape[2]
        size = self.batch_size or frames
        out = []
        for start in range(0, frames, size):
            x = fold(latents[:, :, start : start + size])  # (2n, C, h, w)
            text = cond.text.repeat_interleave(x.shape[0] // 2, dim=0)
            if guided:
                x = torch.cat([x, x])
                text = torch.cat([cond.negative.expand(text.shape[0], -1, -1), text])
            eps = self.unet(x, t, encoder_hidden_states=text, return_dict=False)[0]
            if guided:
                uncond, cond_eps = eps.chunk(2)
                eps = uncond + guidance * (cond_eps - uncond)
            out.append(unfold(eps, 2))
        return torch.cat(out, dim=2)


class Prompt2Prompt(ImageModel):
    """SD1.5 under attention control; its plain UNet also serves the image-side inversion."""

    @classmethod
    def load(cls, spec, params, sources, runtime):
        sd = SD15.load(sources["base"], runtime)
        model = cls(spec, params)
        model.denoiser = FrameDenoiser(sd.unet, sd.scheduler, sd.tokenizer, sd.text_encoder, params.batch_size)
        model.inversion_denoiser = model.denoiser  # attention control is set only while generate() runs
        model.codec = sd.codec()
        return model

    def attention_edit(self, source_prompt: str, target_prompt: str, steps: int) -> AttentionEdit:
        """Replace when the prompts have one token count (``edit=auto``), else refine."""
        tokenizer = self.denoiser.tokenizer
        source, target = token_ids(tokenizer, source_prompt), token_ids(tokenizer, target_prompt)
        kind = self.params.edit
        if kind == "auto":
            kind = "replace" if len(source) == len(target) else "refine"
        if kind == "replace" and len(source) != len(target):
            raise InvalidParamsError(
                f"edit=replace needs prompts of one token count ({len(source)} and {len(target)} tokens here): "
                "use -o edit=refine or auto"
            )
        length = tokenizer.model_max_length
        mapper, alphas = replace_mapping(length) if kind == "replace" else refine_mapping(source, target, length)
        device, params = self.denoiser.device, self.params
        timesteps = sampling.timesteps(self.denoiser, steps).tolist()
        return AttentionEdit(mapper.to(device), alphas.to(device), timesteps, params.cross_replace, params.self_replace)

    def generate(self, inputs, generator, advance=None) -> torch.Tensor:
        """Invert the source frames with the source prompt, then denoise [source, edit] from there; returns the edit."""
        denoiser, source_prompt = self.denoiser, inputs.sources.source_prompt
        edit = self.attention_edit(source_prompt, inputs.image_prompt, inputs.steps)
        z0 = self.codec.encode(inputs.sources.video)  # (1, C, F, h, w), the latent distribution's mean
        noise = sampling.bivdiff_invert(denoiser, z0, denoiser.condition(source_prompt), steps=inputs.steps)
        prompts = torch.cat([denoiser.encode_prompt(source_prompt), denoiser.encode_prompt(inputs.image_prompt)])
        cond = Conditioning(text=prompts, negative=denoiser.encode_prompt(inputs.negative_prompt))
        with attention_control(denoiser.unet, edit):
            pair = sampling.sample(
                EditDenoiser(denoiser, edit), torch.cat([noise, noise]), cond, steps=inputs.steps, guidance=inputs.guidance,
                advance=advance,
            )  # fmt: skip
        return pair[1:]
