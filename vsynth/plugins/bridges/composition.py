"""SDEdit with either model, and the composition baselines of EVS (CVPR 2025, §3.2 and Table 2).

Each baseline refines a source video by SDEdit: the clean latent is noised to a fraction of one
model's schedule and that model denoises it to the end.

- ``idm-only`` (T2I): frame-wise, with the IDM and its own conditions.
- ``vdm-only`` (T2V): with the VDM over the whole clip.
- ``idm-then-vdm`` (T2I+T2V, BIVDiff-like): full T2I SDEdit, then full T2V SDEdit of its result.
- ``vdm-then-idm`` (T2V+T2I): the reverse.

Models meet only through clean latents, never through noisy ones: the two noise schedules
differ (REFERENCE.md). The source is encoded to the latent distribution's mean. Where the two
models share a latent space, the IDM's VAE encodes and decodes, as in Mixed Inversion; between
two spaces the clean latents are transcoded through pixels (:mod:`vsynth.core.diffusion.latents`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vsynth.core.diffusion import sampling
from vsynth.core.diffusion.bridge import Bridge, BridgeResult
from vsynth.core.diffusion.inputs import BridgeInputs
from vsynth.core.diffusion.components import VaeCodec
from vsynth.core.diffusion.denoiser import Denoiser
from vsynth.core.diffusion.latents import shares_latents, to_space
from vsynth.core.diffusion.inputs import Conditioning
from vsynth.core.diffusion.models import ImageModel, VideoModel
from vsynth.core.run.progress import Stages
from vsynth.errors import InvalidParamsError


@dataclass
class SDEdit:
    """One model's SDEdit: its conditioning and guidance, its schedule, and the step it starts at
    (it runs the steps ``start``..the end of the schedule)."""

    name: str  # "T2I" or "T2V", for stages and messages
    cond: Conditioning
    guidance: float
    schedule: sampling.Schedule
    start: int

    @classmethod
    def image(cls, idm: ImageModel, inputs: BridgeInputs, strength: float) -> SDEdit:
        """The IDM with its own conditions (control maps, source image latents), ``inputs.steps`` and guidance."""
        d = idm.denoiser
        cond = d.condition(inputs.image_prompt, inputs.negative_prompt, **inputs.frame_inputs.extras)
        return cls.over("T2I", d, cond, inputs.guidance, inputs.steps, strength, "strength", "--steps")

    @classmethod
    def video(cls, vdm: VideoModel, inputs: BridgeInputs, strength: float) -> SDEdit:
        """The VDM with the prompt, ``inputs.vdm_steps`` and ``inputs.vdm_guidance``."""
        d = vdm.denoiser
        cond = d.condition(inputs.prompt, inputs.negative_prompt)
        return cls.over("T2V", d, cond, inputs.vdm_guidance, inputs.vdm_steps, strength, "t2v_strength", "the VDM's steps")

    @classmethod
    def over(cls, name, denoiser, cond, guidance, steps: int, strength: float, option: str, steps_flag: str) -> SDEdit:
        """The last int(steps * strength) steps, where diffusers' img2img pipelines start; none is refused."""
        schedule = sampling.Schedule(denoiser, steps)
        start = schedule.sdedit_start(strength)
        if start == schedule.steps:
            raise InvalidParamsError(f"{option} {strength} leaves none of the {steps} {name} steps: raise -o {option} or {steps_flag}")
        return cls(name, cond, guidance, schedule, start)

    @property
    def denoiser(self) -> Denoiser:
        return self.schedule.denoiser

    @property
    def timesteps(self) -> torch.Tensor:
        """The model timesteps of the steps it runs."""
        return self.schedule.timesteps[self.start :]

    @property
    def length(self) -> int:
        """How many steps it runs."""
        return self.schedule.steps - self.start

    def level(self, position: int = 0) -> torch.Tensor:
        """The level of its ``position``-th step."""
        return self.schedule.level(self.start + position)

    def noise(self, x0: torch.Tensor, generator: torch.Generator, position: int = 0) -> torch.Tensor:
        """``x0`` noised with fresh noise to the level of its ``position``-th step (process form)."""
        noise = sampling.initial_noise(self.denoiser, tuple(x0.shape), generator)
        return sampling.renoise(self.denoiser, x0, noise, self.level(position))

    def run(self, x0: torch.Tensor, generator: torch.Generator, stages: Stages) -> torch.Tensor:
        """Noise ``x0`` to the first step and denoise to the end: a clean latent video."""
        x0 = x0.to(self.denoiser.dtype)
        with stages.stage(f"{self.name} SDEdit", total=self.length) as advance:
            z = self.noise(x0, generator)
            return sampling.denoise(self.schedule, z, self.cond, self.start, guidance=self.guidance, advance=advance, generator=generator)


def encode_source(codec: VaeCodec, inputs: BridgeInputs, stages: Stages, frames=None, generator=None) -> torch.Tensor:
    """The source video (or ``frames``, uint8 (F, H, W, 3)) as latents (1, C, F, h, w), the latent distribution's mean;
    a sample drawn from ``generator`` for a codec whose video-to-video pipeline samples it (``codec.samples_sources``)."""
    with stages.stage("encoding source", total=1) as advance:
        sampled = generator if codec.samples_sources else None
        latents = codec.encode(inputs.sources.video if frames is None else frames, sampled)
        advance(1)
    return latents


class IdmOnly(Bridge):
    def run(self, idm, vdm, inputs, generator, stages):
        t2i = SDEdit.image(idm, inputs, self.params.strength)
        z = t2i.run(encode_source(idm.codec, inputs, stages), generator, stages)
        return BridgeResult(latents=z, codec=idm.codec)


class VdmOnly(Bridge):
    def run(self, idm, vdm, inputs, generator, stages):
        t2v = SDEdit.video(vdm, inputs, self.params.t2v_strength)
        z = t2v.run(encode_source(vdm.codec, inputs, stages, generator=generator), generator, stages)
        return BridgeResult(latents=z, codec=vdm.codec)


def video_codec(idm: ImageModel, vdm: VideoModel) -> VaeCodec:
    """The codec of the VDM's latents: the IDM's where the two share a latent space (as the official code)."""
    return idm.codec if shares_latents(idm.codec, vdm.codec) else vdm.codec


def transcode(z: torch.Tensor, source: VaeCodec, target: VaeCodec, stages: Stages) -> torch.Tensor:
    """Clean latents into the other model's latent space (through pixels), as a stage; unchanged within one space."""
    if shares_latents(source, target):
        return z
    with stages.stage("transcoding latents", total=z.shape[2]) as advance:
        return to_space(z, source, target, advance)


class IdmThenVdm(Bridge):
    def run(self, idm, vdm, inputs, generator, stages):
        t2i = SDEdit.image(idm, inputs, self.params.strength)
        t2v = SDEdit.video(vdm, inputs, self.params.t2v_strength)
        z_idm = t2i.run(encode_source(idm.codec, inputs, stages), generator, stages)
        codec = video_codec(idm, vdm)
        z = t2v.run(transcode(z_idm, idm.codec, codec, stages), generator, stages)
        with stages.stage("decoding IDM frames", total=inputs.frames) as advance:
            idm_frames = idm.codec.decode(z_idm, advance)
        return BridgeResult(latents=z, codec=codec, intermediates={"idm_frames": idm_frames})


class VdmThenIdm(Bridge):
    def run(self, idm, vdm, inputs, generator, stages):
        t2i = SDEdit.image(idm, inputs, self.params.strength)
        t2v = SDEdit.video(vdm, inputs, self.params.t2v_strength)
        codec = video_codec(idm, vdm)
        z = t2v.run(encode_source(codec, inputs, stages, generator=generator), generator, stages)
        return BridgeResult(latents=t2i.run(transcode(z, codec, idm.codec, stages), generator, stages), codec=idm.codec)
