"""CogVideoX text-to-video models (CogVideoXPipeline), and their video-to-video (CogVideoXVideoToVideoPipeline).

A VP model that predicts v, on the SNR-shifted (x3), zero-terminal-SNR schedule of CogVideoXDDIMScheduler
(trailing spacing). The transformer sees the latents as (B, F, C, H, W) in 2x2 patches after 226 T5 text
tokens, with sin-cos positions (2b) or 3D rotary embeddings (5b); the causal 3D VAE compresses 8x in
space and 4x in time, the first frame alone (1 + 4k frames), and scales by the checkpoint's factor.
Classifier-free guidance runs the negative and the positive prompt in one batch, with the pipeline's
optional dynamic scale; CogVideoXDPMScheduler (THUDM's recommended solver for 5b) steps with the
previous clean prediction. Everything here is done as the diffusers pipelines do it, so that a seed
gives their latents.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from diffusers import CogVideoXDDIMScheduler as _DiffusersDDIM
from diffusers import CogVideoXDPMScheduler as _DiffusersDPM

from vsynth.core.diffusion.components import ClipCodec, load
from vsynth.core.diffusion.denoiser import Denoiser
from vsynth.core.diffusion.inputs import Conditioning
from vsynth.core.diffusion.models import VideoModel
from vsynth.core.diffusion.offload import execution_device
from vsynth.core.diffusion.processes import VP_V


class _Entry:
    """Where a schedule was entered (``set_begin_index``, as diffusers' other schedulers take it): CogVideoX's
    dynamic guidance counts the steps that run from there, as CogVideoXVideoToVideoPipeline does."""

    _begin_index = 0

    def set_begin_index(self, begin_index: int = 0) -> None:
        self._begin_index = begin_index


class CogVideoXDDIMScheduler(_Entry, _DiffusersDDIM):
    """diffusers' CogVideoXDDIMScheduler, told where a schedule is entered."""


class CogVideoXDPMScheduler(_Entry, _DiffusersDPM):
    """diffusers' CogVideoXDPMScheduler with the usual ``step(output, t, sample, generator=...)``: it keeps the
    clean prediction and the timestep of its previous step itself, as CogVideoXPipeline passes them
    (``old_pred_original_sample``, ``timestep_back``), so the generic loops step it. A fresh scheduler
    (every entry into a schedule) starts with no history, as the video-to-video pipeline starts.

    It steps vsynth's latents (B, C, F, H, W) in the pipeline's layout (B, F, C, H, W), so that the noise
    each step draws falls on the elements the pipeline's draw does."""

    def set_timesteps(self, *args, **kwargs):
        self._previous = (None, None)
        return super().set_timesteps(*args, **kwargs)

    def step(self, model_output, timestep, sample, eta: float = 0.0, generator=None, return_dict: bool = True):
        old_x0, previous_t = getattr(self, "_previous", (None, None))
        output, sample = (x.permute(0, 2, 1, 3, 4) for x in (model_output, sample))
        prev_sample, x0 = super().step(output, old_x0, timestep, previous_t, sample, eta=eta, generator=generator, return_dict=False)
        self._previous = (x0, timestep)
        prev_sample, x0 = (x.permute(0, 2, 1, 3, 4) for x in (prev_sample, x0))
        return (prev_sample, x0) if not return_dict else _output(prev_sample, x0)


OURS = {"CogVideoXDDIMScheduler": CogVideoXDDIMScheduler, "CogVideoXDPMScheduler": CogVideoXDPMScheduler}


def _output(prev_sample, x0):
    from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput

    return DDIMSchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)


def on_training_schedule(scheduler, base):
    """``scheduler`` (a solver built from ``base``'s config, :func:`vsynth.core.diffusion.solvers.build`) on CogVideoX's
    own training schedule: ``ddim`` and ``dpm++`` are CogVideoX's DDIM and DPM schedulers; any other solver gets
    the SNR-shifted betas as ``trained_betas`` (it knows no ``snr_shift_scale`` and would drop the shift)."""
    import diffusers

    name = type(scheduler).__name__
    if name.startswith("CogVideoX") and not isinstance(scheduler, _Entry):
        return OURS[name].from_config(scheduler.config)
    if base is None or name.startswith("CogVideoX"):
        return scheduler
    config = dict(base.config)
    if name == "DDIMScheduler":
        return CogVideoXDDIMScheduler.from_config(config)
    if name == "DPMSolverMultistepScheduler":
        return CogVideoXDPMScheduler.from_config(config)
    import inspect

    cls = getattr(diffusers, name)
    abar = base.alphas_cumprod.double().clone()
    if "rescale_betas_zero_snr" not in inspect.signature(cls.__init__).parameters:  # Heun: no infinite first sigma
        abar[-1] = max(float(abar[-1]), 2.0**-24)  # what diffusers' Euler sets for a zero terminal SNR
    betas = 1 - abar / torch.cat([abar.new_ones(1), abar[:-1]])
    return cls.from_config({**scheduler.config, "trained_betas": betas.tolist()})


class CogVideoXCodec(ClipCodec):
    """uint8 frames (F, H, W, 3) <-> scaled latents (1, C, 1 + (F - 1) / 4, H / 8, W / 8) through AutoencoderKLCogVideoX:
    the whole clip at once (the VAE is causal over time, and batches frames itself).

    ``samples_sources``: CogVideoXVideoToVideoPipeline encodes its source video as a sample of the latent
    distribution, drawn from the run's generator before the noise; the SDEdit bridges do the same."""

    samples_sources = True

    def __init__(self, vae, space=None):
        super().__init__(vae, batch_size=1, space=space)
        self.factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.temporal = int(vae.config.temporal_compression_ratio)
        self.channels = vae.config.latent_channels

    @torch.no_grad()
    def encode(self, frames: np.ndarray, generator: torch.Generator | None = None, *, scaled: bool = True) -> torch.Tensor:
        """The latent distribution's mean; with a generator, a sample, as CogVideoXVideoToVideoPipeline draws it."""
        dist = self.clip_distribution(frames)
        latents = dist.mean
        if generator is not None:
            noise = torch.randn(latents.shape, generator=generator, device=generator.device, dtype=latents.dtype)
            latents = latents + dist.std * noise.to(latents.device)
        self.passes["encoded_frames"] += len(frames)
        return (latents * self.scale if scaled else latents).to(self.dtype)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, advance=None) -> np.ndarray:
        device = execution_device(self.vae)
        video = self.vae.decode(latents.to(device, self.vae.dtype) / self.scale).sample  # (1, 3, F, H, W) in [-1, 1]
        frames = ((video[0].float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()
        self.passes["decoded_frames"] += len(frames)
        if advance:
            advance(len(frames))
        return frames


class CogVideoXDenoiser(Denoiser):
    """CogVideoXTransformer3DModel over whole clips, guided as CogVideoXPipeline guides it: the negative and the
    positive prompt in one batch, and with ``dynamic_cfg`` the scale 1 + g (1 - cos(pi ((N - t) / N)^5)) / 2 of
    its ``use_dynamic_cfg`` (N the steps that run from where the schedule was entered, t the timestep)."""

    frame_folded = False
    declared_process = VP_V

    def __init__(self, transformer, scheduler, tokenizer, text_encoder, *, dynamic_cfg: bool = False):
        self._scheduler = None
        super().__init__(transformer, scheduler, tokenizer, text_encoder)
        self.dynamic_cfg = dynamic_cfg
        self.active = None  # the scheduler last set: the dynamic scale counts its steps
        self.prompts: dict[str, torch.Tensor] = {}  # T5's states by prompt: each prompt is encoded once
        self._rotary: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def scheduler(self):
        return self._scheduler

    @scheduler.setter
    def scheduler(self, scheduler) -> None:
        """A solver chosen by name is put on CogVideoX's own training schedule (:func:`on_training_schedule`)."""
        self._scheduler = on_training_schedule(scheduler, self._scheduler)

    def set_timesteps(self, scheduler, steps: int) -> None:
        self.active = scheduler
        scheduler.set_timesteps(steps, device=self.device)

    def initial_noise(self, shape: tuple[int, int, int, int, int], generator: torch.Generator) -> torch.Tensor:
        """Drawn (B, F, C, H, W), the pipeline's latent layout, and returned (B, C, F, H, W)."""
        b, c, f, h, w = shape
        noise = torch.randn((b, f, c, h, w), generator=generator, device=generator.device, dtype=torch.float32)
        return noise.permute(0, 2, 1, 3, 4).to(self.device, self.dtype)

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """(1, 226, D): T5's states of the prompt padded to the transformer's text length, as CogVideoXPipeline
        encodes (no attention mask: the padding's states are the model's input too)."""
        if prompt not in self.prompts:
            length = self.unet.config.max_text_seq_length
            tokens = self.tokenizer([prompt], padding="max_length", max_length=length, truncation=True, add_special_tokens=True,
                                    return_tensors="pt")  # fmt: skip
            with torch.no_grad():
                states = self.text_encoder(tokens.input_ids.to(execution_device(self.text_encoder)))[0]
            self.prompts[prompt] = states.to(self.dtype)
        return self.prompts[prompt].to(self.device)

    def condition(self, prompt: str, negative_prompt: str | None = None, **extras) -> Conditioning:
        """The negative prompt defaults to "" (CogVideoXPipeline's), which guidance needs."""
        return Conditioning(text=self.encode_prompt(prompt), negative=self.encode_prompt(negative_prompt or ""), extras=extras)

    def release_text_encoder(self) -> None:
        """Move T5-XXL (9.5 GB in half precision) off the GPU once the run's prompts are encoded, as Wan releases UMT5."""
        parameter = next(self.text_encoder.parameters(), None)
        if parameter is not None and parameter.device.type == "cuda" and execution_device(self.text_encoder) == parameter.device:
            self.text_encoder.to("cpu")
            torch.cuda.empty_cache()

    def rotary(self, latents: torch.Tensor):
        """The 3D rotary embedding of a latent clip (5b), as CogVideoXPipeline prepares it; None without RoPE (2b)."""
        config = self.unet.config
        if not config.use_rotary_positional_embeddings:
            return None
        _, _, f, h, w = latents.shape
        key = (f, h, w, latents.device)
        if key not in self._rotary:
            from diffusers.models.embeddings import get_3d_rotary_pos_embed
            from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

            p = config.patch_size
            grid = (h // p, w // p)
            crops = get_resize_crop_region_for_grid(grid, config.sample_width // p, config.sample_height // p)
            self._rotary[key] = get_3d_rotary_pos_embed(embed_dim=config.attention_head_dim, crops_coords=crops, grid_size=grid,
                                                        temporal_size=f, device=latents.device)  # fmt: skip
        return self._rotary[key]

    def guidance_scale(self, t, guidance: float) -> float:
        if not self.dynamic_cfg or self.active is None:
            return guidance
        order = int(getattr(self.active, "order", 1))
        n = (len(self.active.timesteps) - (getattr(self.active, "_begin_index", None) or 0)) // order  # the pipelines' num_inference_steps
        return 1 + guidance * ((1 - math.cos(math.pi * ((n - float(t)) / n) ** 5.0)) / 2)

    @torch.no_grad()
    def predict(self, latents: torch.Tensor, t, cond: Conditioning, guidance: float) -> torch.Tensor:
        model = self.unet
        x = latents.permute(0, 2, 1, 3, 4).to(model.dtype)  # (B, F, C, H, W)
        b = x.shape[0]
        text = cond.text.to(model.dtype).expand(b, -1, -1)
        if guidance > 1.0:
            x = torch.cat([x, x])
            text = torch.cat([cond.negative.to(model.dtype).expand(b, -1, -1), text])
        timestep = torch.as_tensor(t, device=x.device).expand(x.shape[0])
        v = model(hidden_states=x, encoder_hidden_states=text, timestep=timestep, image_rotary_emb=self.rotary(latents),
                  return_dict=False)[0].float()  # fmt: skip
        if guidance > 1.0:
            uncond, positive = v.chunk(2)
            v = uncond + self.guidance_scale(t, guidance) * (positive - uncond)
        return v.permute(0, 2, 1, 3, 4)


class CogVideoXModel(VideoModel):
    """A CogVideoX diffusers folder: transformer, vae, text_encoder (T5-XXL), tokenizer, scheduler."""

    @classmethod
    def load(cls, spec, params, sources, runtime):
        import diffusers
        from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
        from transformers import T5EncoderModel

        from vsynth.plugins.idm.flux import offline_folder
        from vsynth.plugins.vdm.wan import pipeline_index

        # 5b's transformer is sharded: diffusers would ask the hub for its file list even offline
        source, what, kw = offline_folder(sources["vdm"]), spec.name, {"torch_dtype": runtime.dtype}
        name = pipeline_index(source)["scheduler"][1]
        scheduler_cls = OURS.get(name) or getattr(diffusers, name)
        model = cls(spec, params)
        model.denoiser = CogVideoXDenoiser(
            load(CogVideoXTransformer3DModel, source, what=what, subfolder="transformer", **kw).to(runtime.home),
            load(scheduler_cls, source, what=what, subfolder="scheduler"),
            t5_tokenizer(source, what),
            load(T5EncoderModel, source, what=what, share=True, subfolder="text_encoder", **kw).to(runtime.home),
            dynamic_cfg=params.dynamic_cfg,
        )
        vae = load(AutoencoderKLCogVideoX, source, what=what, share=True, subfolder="vae", **kw).to(runtime.home)
        model.codec = CogVideoXCodec(vae)
        model.cogvideox = model.denoiser  # the run may wrap model.denoiser (windows)
        return model

    def configure(self, inputs) -> None:
        """Encode the run's prompts now and release T5 from the GPU before any transformer call."""
        for prompt in {inputs.prompt, inputs.negative_prompt or ""}:
            self.cogvideox.encode_prompt(prompt)
        self.cogvideox.release_text_encoder()


def t5_tokenizer(source: str, what: str):
    """The folder's tokenizer.json, read as it is (AutoTokenizer would also want a config.json there, which offline
    fails); else T5Tokenizer from its spiece.model, as the THUDM repos ship it."""
    from transformers import PreTrainedTokenizerFast, T5Tokenizer

    from vsynth.errors import VsynthInputError

    try:
        return load(PreTrainedTokenizerFast, source, what=what, subfolder="tokenizer")
    except VsynthInputError:
        return load(T5Tokenizer, source, what=what, subfolder="tokenizer")
