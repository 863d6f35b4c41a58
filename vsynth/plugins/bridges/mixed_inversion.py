"""BIVDiff's Mixed Inversion bridge (CVPR 2024), as the official code runs it (REFERENCE.md).

1. Frame-wise generation: the IDM samples every frame from noise, all frames batched.
2. Mixed Inversion: the IDM frames are DDIM-inverted twice from the same clean latent, by the
   SD1.5 UNet frame-wise and by the VDM UNet over the clip; the two are mixed once,
   ``z = r * z_image + (1 - r) * z_video``. An inversion whose weight is 0 is skipped.
3. Temporal smoothing: full denoising of the mixed latent with the VDM.

A mix is a latent only if both sides are at one noise level. Where the VDM samples with SD1.5's
own DDIM schedule (ZeroScope, ModelScope), both inversions run exactly as the official code runs
them (to abar(998) on the shared schedule). Where its schedule differs (AnimateDiff's linear betas,
Lightning's few Euler steps), the official loop would leave the two sides at different levels and
neither at the VDM's start, so both are inverted to abar*, the level of the VDM's first smoothing
step: the image side by the official loop whose last step re-noises to abar*, the video side by
DDIM inversion along the VDM's own smoothing timesteps (:func:`~vsynth.core.diffusion.sampling.invert`).

Like the official code, it uses the image side's VAE throughout where the VDM shares its latent
space (ZeroScope, ModelScope, AnimateDiff: SD's). With a VDM of another space the two inversions
cannot be mixed: only the video side runs (``mixing_ratio=0``), on the IDM frames encoded by the
VDM's VAE, which also decodes the result.

The prompts are the user's as given; ``prompt_preset=bivdiff`` gives every stage the official
code's instead (:func:`with_prompt_preset`).
"""

from __future__ import annotations

import dataclasses

import torch

from vsynth.core.diffusion import sampling
from vsynth.core.diffusion.bridge import Bridge, BridgeResult
from vsynth.core.diffusion.inputs import BridgeInputs
from vsynth.plugins.bridges.composition import video_codec

# The official code's prompts: each IDM module returns a suffix that the IDM and VDM prompts get, and a
# negative prompt for every guided stage (MCG-NJU/BIVDiff, POS_PROMPT and NEG_PROMPT in
# models/ControlNet/infer.py and models/InstructPix2Pix/infer.py, typos kept). Its T2I-Adapter,
# Prompt2Prompt and StableDiffusionInpainting modules set both to "".
BIVDIFF_QUALITY_SUFFIX = " ,best quality, extremely detailed, HD, ultra-realistic, 8K, HQ, masterpiece, trending on artstation, art, smooth"
BIVDIFF_NEGATIVE_PROMPT = (
    "longbody, lowres, bad anatomy, bad hands, missing fingers, extra digit, fewer difits, cropped, worst quality, "
    "low quality, deformed body, bloated, ugly, unrealistic"
)
BIVDIFF_PLAIN_PROMPT_IDMS = frozenset({"t2i-adapter-canny", "t2i-adapter-depth", "prompt2prompt", "sd-inpaint"})


def with_prompt_preset(inputs: BridgeInputs, preset: str, idm_name: str) -> BridgeInputs:
    """``inputs`` with the preset's prompts: for 'bivdiff', the official suffix on the IDM and VDM prompts
    and the official negative prompt where none was given, except for the IDMs the official code leaves plain."""
    if preset == "none" or idm_name in BIVDIFF_PLAIN_PROMPT_IDMS:
        return inputs
    return dataclasses.replace(
        inputs,
        prompt=inputs.prompt + BIVDIFF_QUALITY_SUFFIX,
        image_prompt=inputs.image_prompt + BIVDIFF_QUALITY_SUFFIX,
        negative_prompt=inputs.negative_prompt or BIVDIFF_NEGATIVE_PROMPT,
    )


def mix(z_image: torch.Tensor | None, z_video: torch.Tensor | None, ratio: float) -> torch.Tensor:
    """r * z_image + (1 - r) * z_video, where a side with weight 0 may be absent."""
    if z_video is None:
        return z_image
    if z_image is None:
        return z_video
    return ratio * z_image + (1 - ratio) * z_video


class MixedInversion(Bridge):
    def run(self, idm, vdm, inputs, generator, stages):
        params, steps, vdm_steps = self.params, inputs.steps, inputs.vdm_steps
        inputs = with_prompt_preset(inputs, params.prompt_preset, idm.spec.name)

        with stages.stage("frame-wise generation", total=steps) as advance:
            z_idm = idm.generate(inputs, generator, advance)
        with stages.stage("decoding IDM frames", total=inputs.frames) as advance:
            idm_frames = idm.codec.decode(z_idm, advance)
        z0 = idm.codec.encode(idm_frames) if params.reencode else z_idm
        vdm.condition_on_frames(idm_frames)  # a VDM that follows given frames (Wan 2.2 TI2V with -o first_frame=idm)

        inverter, video = idm.inversion_denoiser, vdm.denoiser
        smoothing = sampling.Schedule(video, vdm_steps)
        official = inverter.process.family == "vp" and sampling.shares_schedule(inverter, video)  # BIVDiff's own inversion is VP's
        start = None if official else smoothing.level(0)

        negative = params.inversion_prompt == "negative"
        z_image = z_video = None
        if params.mixing_ratio > 0:
            with stages.stage("image inversion", total=steps) as advance:
                text = inverter.condition(inputs.negative_prompt if negative else inputs.image_prompt)
                z_image = sampling.bivdiff_invert(inverter, z0, text, steps=steps, final_level=start, advance=advance)
                if start is not None:  # at the VDM's first level, written in the VDM's process
                    z_image = sampling.to_process(z_image, start, inverter, video)
        if params.mixing_ratio < 1:
            with stages.stage("video inversion", total=vdm_steps) as advance:
                text = video.condition(inputs.negative_prompt if negative else inputs.prompt)
                codec = video_codec(idm, vdm)
                x0 = (z0 if codec is idm.codec else codec.encode(idm_frames)).to(video.dtype)
                if official:
                    z_video = sampling.bivdiff_invert(video, x0, text, steps=vdm_steps, advance=advance)
                else:
                    z_video = sampling.invert(smoothing, x0, text, 0, advance=advance)
        z = mix(z_image, z_video, params.mixing_ratio)

        with stages.stage("temporal smoothing", total=vdm_steps) as advance:
            cond = video.condition(inputs.prompt, inputs.negative_prompt)
            z = sampling.denoise(smoothing, z.to(video.dtype), cond, 0, guidance=inputs.vdm_guidance, advance=advance, generator=generator)
        return BridgeResult(latents=z, codec=video_codec(idm, vdm), intermediates={"idm_frames": idm_frames})
