"""LTX-Video (LTXPipeline), and its image-to-video conditioning on given frames, as a VDM.

Rectified flow: the transformer predicts the velocity noise - x0, sampled with FlowMatchEuler on
sigmas ``linspace(1, 1/N, N)`` shifted by ``mu`` (which grows with the clip's latent tokens, between the
scheduler config's anchors) and stretched to end at its ``shift_terminal``. The VAE compresses 32x in
space and 8x in time, the first frame alone (1 + 8k frames), into 128 channels normalized by the VAE's
per-channel latent mean and std; its 0.9.1 decoder is conditioned on a timestep. Latents stay
(B, 128, F, h, w) outside the denoiser; inside, they are packed into (B, F*h*w, 128) tokens (the
transformer's 1x1x1 patches) and the velocity unpacked again. Classifier-free guidance runs the
unconditional and conditional passes in one batch, as the pipeline does.

Conditioning on frames (:meth:`LTXVideoModel.condition_on_frames`, ``-o first_frame``): the first
latent frames are held at the given frames' latents and their tokens get timestep 0, while the rest is
denoised, as LTXImageToVideoPipeline does for an image (and LTXConditionPipeline for an image or a
1 + 8k-frame video at frame index 0 with strength 1). Keyframes (``-o keyframe_stride``) are given frames
at their frame indices, as LTXConditionPipeline takes images there: extra tokens at their positions, with
timestep 0, whose predictions are dropped.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import torch

from vsynth.core.diffusion.components import ClipCodec, load
from vsynth.core.diffusion.denoiser import Denoiser
from vsynth.core.diffusion.inputs import Conditioning
from vsynth.core.diffusion.models import VideoModel
from vsynth.core.diffusion.offload import execution_device
from vsynth.core.diffusion.processes import FLOW
from vsynth.errors import VsynthWarning


def calculate_shift(tokens: int, config) -> float:
    """LTXPipeline's ``mu`` (FLUX's formula): linear in the latent tokens of the clip, from the scheduler config's anchors."""
    base_len, max_len = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    base_shift, max_shift = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    m = (max_shift - base_shift) / (max_len - base_len)
    return tokens * m + base_shift - m * base_len


def pack(latents: torch.Tensor, p: int, pt: int) -> torch.Tensor:
    """(B, C, F, H, W) -> (B, F/pt * H/p * W/p, C*pt*p*p), as LTXPipeline._pack_latents."""
    b, c, f, h, w = latents.shape
    latents = latents.reshape(b, c, f // pt, pt, h // p, p, w // p, p)
    return latents.permute(0, 2, 4, 6, 1, 3, 5, 7).flatten(4, 7).flatten(1, 3)


def unpack(tokens: torch.Tensor, f: int, h: int, w: int, p: int, pt: int) -> torch.Tensor:
    """The inverse of :func:`pack` for a latent video of f x h x w, as LTXPipeline._unpack_latents."""
    b = tokens.size(0)
    tokens = tokens.reshape(b, f // pt, h // p, w // p, -1, pt, p, p)
    return tokens.permute(0, 4, 1, 5, 2, 6, 3, 7).flatten(6, 7).flatten(4, 5).flatten(2, 3)


class LTXCodec(ClipCodec):
    """uint8 frames (F, H, W, 3) <-> normalized latents (1, 128, 1 + (F - 1) / 8, H / 32, W / 32) through
    AutoencoderKLLTXVideo: the whole clip at once (the encoder is causal over time), then
    (z - mean) * scaling / std per channel, with the VAE's own ``latents_mean`` and ``latents_std``."""

    def __init__(self, vae, decode_timestep: float = 0.0, space=None):
        super().__init__(vae, batch_size=1, space=space)
        self.factor = vae.spatial_compression_ratio
        self.temporal = vae.temporal_compression_ratio
        self.channels = vae.config.latent_channels
        self.scale = vae.config.scaling_factor
        self.decode_timestep = decode_timestep

    def _stats(self, device, dtype):
        shape = (1, self.channels, 1, 1, 1)
        return self.vae.latents_mean.view(shape).to(device, dtype), self.vae.latents_std.view(shape).to(device, dtype)

    @torch.no_grad()
    def encode(self, frames: np.ndarray, generator: torch.Generator | None = None, *, scaled: bool = True) -> torch.Tensor:
        """The latent distribution's mean; with a generator, a sample (as the LTX pipelines' retrieve_latents)."""
        dist = self.clip_distribution(frames)
        latents = dist.mean if generator is None else dist.sample(generator)
        self.passes["encoded_frames"] += len(frames)
        if scaled:
            mean, std = self._stats(latents.device, latents.dtype)
            latents = (latents - mean) * self.scale / std
        return latents.to(self.dtype)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, advance=None) -> np.ndarray:
        """As LTXPipeline decodes: denormalized and, for a timestep-conditioned decoder (0.9.1), mixed with noise at
        ``decode_timestep`` (the pipeline's ``decode_noise_scale`` defaults to it) and decoded at that timestep. That noise
        and the noise the 0.9.1 decoder injects are drawn from a fixed seed (LTXPipeline draws them from its generator and
        the global one), so that a run's seed gives one video."""
        device = execution_device(self.vae)
        z = latents.to(device, self.vae.dtype)
        mean, std = self._stats(device, z.dtype)
        z = z * std / self.scale + mean
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(0)
            timestep = None
            if self.vae.config.timestep_conditioning:
                timestep = torch.tensor([self.decode_timestep], device=device, dtype=z.dtype)
                if self.decode_timestep > 0:
                    z = (1 - self.decode_timestep) * z + self.decode_timestep * torch.randn(z.shape, device=device, dtype=z.dtype)
            video = self.vae.decode(z, timestep, return_dict=False)[0]  # (1, 3, F, H, W) in [-1, 1]
        frames = ((video[0].float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()
        self.passes["decoded_frames"] += len(frames)
        if advance:
            advance(len(frames))
        return frames


class LTXDenoiser(Denoiser):
    """LTXVideoTransformer3DModel over whole clips, as LTXPipeline runs it: T5 states with their attention
    mask, packed tokens with rotary positions scaled by (8 / frame_rate, 32, 32), classifier-free guidance
    in one batch (unconditional first), and the schedule's shift from the clip's token count."""

    frame_folded = False
    declared_process = FLOW

    def __init__(self, transformer, scheduler, tokenizer, text_encoder, *, max_sequence_length=128, frame_rate=25.0, mask_text=False):
        super().__init__(transformer, scheduler, tokenizer, text_encoder)
        self.mask_text = mask_text  # T5 sees the padding mask too (LTXConditionPipeline), or not (LTXPipeline)
        self.max_sequence_length = max_sequence_length
        self.frame_rate = frame_rate
        self.temporal, self.spatial = 8, 32  # the VAE's compression, set from the codec by LTXVideoModel.load
        self.tokens: int | None = None  # latent tokens of the clip the transformer sees, set by LTXVideoModel.configure
        self.prompts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # T5's states and mask by prompt: each encoded once
        self.held: torch.Tensor | None = None  # (1, C, k, h, w): clean latents the first k latent frames are held at
        self.keyframes: list[tuple[int, torch.Tensor]] = []  # (frame index, clean latent (1, C, 1, h, w)): extra tokens

    def set_timesteps(self, scheduler, steps: int) -> None:
        """LTXPipeline's: sigmas linspace(1, 1/N, N) (unless the solver makes its own flow sigmas), shifted by mu."""
        if self.tokens is None:
            raise RuntimeError("an LTX-Video schedule depends on the clip's size: call the model's configure(inputs) first")
        accepted = inspect.signature(scheduler.set_timesteps).parameters
        kwargs = {"mu": calculate_shift(self.tokens, scheduler.config)} if "mu" in accepted else {}
        if "sigmas" in accepted and not scheduler.config.get("use_flow_sigmas", False):
            scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), device=self.device, **kwargs)
        else:
            scheduler.set_timesteps(steps, device=self.device, **kwargs)

    @torch.no_grad()
    def _encode(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, max_sequence_length, D) T5 states and their (1, max_sequence_length) mask, as LTXPipeline._get_t5_prompt_embeds
        (T5 itself sees the padded tokens without a mask, unless ``mask_text``, as LTXConditionPipeline; the transformer's
        cross-attention gets the mask)."""
        if prompt not in self.prompts:
            tokens = self.tokenizer([prompt], padding="max_length", max_length=self.max_sequence_length, truncation=True,
                                    add_special_tokens=True, return_tensors="pt")  # fmt: skip
            device = execution_device(self.text_encoder)
            mask = tokens.attention_mask.to(device) if self.mask_text else None
            states = self.text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]
            self.prompts[prompt] = (states.to(self.dtype), tokens.attention_mask.bool())
        states, mask = self.prompts[prompt]
        return states.to(self.device), mask.to(self.device)

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        return self._encode(prompt)[0]

    def condition(self, prompt: str, negative_prompt: str | None = None, **extras) -> Conditioning:
        text, mask = self._encode(prompt)
        negative, negative_mask = self._encode(negative_prompt or "")
        return Conditioning(text=text, negative=negative, extras={**extras, "text_mask": mask, "negative_mask": negative_mask})

    def release_text_encoder(self) -> None:
        """Move T5-XXL (about 9.5 GB in bfloat16) off the GPU once the run's prompts are encoded, as Wan does with UMT5."""
        parameter = next(self.text_encoder.parameters(), None)
        if parameter is not None and parameter.device.type == "cuda" and execution_device(self.text_encoder) == parameter.device:
            self.text_encoder.to("cpu")
            torch.cuda.empty_cache()

    def finish(self, latents: torch.Tensor) -> torch.Tensor:
        """The first latent frames put back at the frames the model is conditioned on, if any."""
        if self.held is None:
            return latents
        held = latents.clone()
        held[:, :, : self.held.shape[2]] = self.held.to(latents.device, latents.dtype)
        return held

    def _positions(self, b: int, f: int, h: int, w: int, p: int, pt: int, frame_index: int, device) -> torch.Tensor:
        """(b, 3, f*h*w) token positions as LTXConditionPipeline gives them (_prepare_video_ids, _scale_video_ids): pixel
        coordinates, the first latent frame at ``frame_index`` and each later one 8 frames on (the first frame encoded
        alone), frames in seconds at ``frame_rate``."""
        grid = torch.meshgrid(torch.arange(0, f, pt, device=device), torch.arange(0, h, p, device=device),
                              torch.arange(0, w, p, device=device), indexing="ij")  # fmt: skip
        ids = torch.stack(grid).reshape(1, 3, -1).repeat(b, 1, 1)
        ids = ids * torch.tensor([self.temporal, self.spatial, self.spatial], device=device)[None, :, None]
        ids[:, 0] = (ids[:, 0] + 1 - self.temporal).clamp(min=0) + frame_index
        ids = ids.float()
        ids[:, 0] = ids[:, 0] * (1.0 / self.frame_rate)
        return ids

    @torch.no_grad()
    def predict(self, latents: torch.Tensor, t, cond: Conditioning, guidance: float) -> torch.Tensor:
        """Without keyframes, as LTXPipeline (positions from the latent grid, scaled for the frame rate), held first
        frames at timestep 0 as LTXImageToVideoPipeline; with keyframes, as LTXConditionPipeline: each keyframe's latent
        as extra tokens before the clip's, at its frame's position, with timestep 0, their predictions dropped."""
        model = self.unet
        b, _, f, h, w = latents.shape
        p, pt = model.config.patch_size, model.config.patch_size_t
        x = pack(self.finish(latents), p, pt)
        t = torch.as_tensor(t, device=latents.device)
        timestep = t.expand(b)
        if self.held is not None or self.keyframes:  # timestep 0 for the held frames' tokens
            mask = torch.zeros((b, 1, f, h, w), device=latents.device)
            if self.held is not None:
                mask[:, :, : self.held.shape[2]] = 1.0
            timestep = timestep.unsqueeze(-1) * (1 - pack(mask, p, pt).squeeze(-1))
        positions, extra = {}, 0
        if self.keyframes:
            tokens = [pack(z.to(latents.device, x.dtype).expand(b, -1, -1, -1, -1), p, pt) for _, z in self.keyframes]
            places = [self._positions(b, z.shape[2], h, w, p, pt, index, latents.device) for index, z in self.keyframes]
            extra = sum(k.shape[1] for k in tokens)
            x = torch.cat([*tokens, x], dim=1)
            timestep = torch.cat([timestep.new_zeros(b, extra), timestep], dim=1)
            positions = {"video_coords": torch.cat([*places, self._positions(b, f, h, w, p, pt, 0, latents.device)], dim=2)}
        else:
            positions = dict(num_frames=f // pt, height=h // p, width=w // p,
                             rope_interpolation_scale=(self.temporal / self.frame_rate, self.spatial, self.spatial))  # fmt: skip
        texts, masks = [cond.text], [cond.extras["text_mask"]]
        if guidance > 1.0:
            texts, masks = [cond.negative, *texts], [cond.extras["negative_mask"], *masks]
        n = len(texts)
        if "video_coords" in positions:
            positions["video_coords"] = positions["video_coords"].repeat(n, 1, 1)
        velocity = model(
            hidden_states=x.repeat(n, 1, 1).to(model.dtype),
            encoder_hidden_states=torch.cat([s.expand(b, -1, -1) for s in texts]).to(model.dtype),
            timestep=timestep.repeat(n, *([1] * (timestep.dim() - 1))),
            encoder_attention_mask=torch.cat([m.expand(b, -1) for m in masks]),
            return_dict=False,
            **positions,
        )[0].float()[:, extra:]
        if guidance > 1.0:
            uncond, text = velocity.chunk(2)
            velocity = uncond + guidance * (text - uncond)
        return unpack(velocity, f, h, w, p, pt).to(latents.dtype)


class LTXVideoModel(VideoModel):
    """An LTX-Video diffusers folder (LTXPipeline's layout): transformer, vae, text_encoder, tokenizer, scheduler."""

    @classmethod
    def load(cls, spec, params, sources, runtime):
        from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel
        from transformers import T5EncoderModel, T5TokenizerFast

        from vsynth.plugins.idm.flux import offline_folder

        # the snapshot's folder while offline: diffusers asks the hub for a sharded transformer's file list otherwise
        source, what, kw = offline_folder(sources["vdm"]), spec.name, {"torch_dtype": runtime.dtype}
        model = cls(spec, params)
        model.denoiser = LTXDenoiser(
            load(LTXVideoTransformer3DModel, source, what=what, subfolder="transformer", **kw).to(runtime.home),
            load(FlowMatchEulerDiscreteScheduler, source, what=what, subfolder="scheduler"),
            load(T5TokenizerFast, source, what=what, subfolder="tokenizer"),
            load(T5EncoderModel, source, what=what, share=True, subfolder="text_encoder", **kw).to(runtime.home),
            max_sequence_length=params.max_sequence_length,
            frame_rate=params.frame_rate,
            mask_text=bool(params.keyframe_stride),  # keyframes: as LTXConditionPipeline, which masks T5's padding
        )
        vae = load(AutoencoderKLLTXVideo, source, what=what, share=True, subfolder="vae", **kw).to(runtime.home)
        model.codec = LTXCodec(vae, decode_timestep=params.decode_timestep)
        model.ltx = model.denoiser  # the run may wrap model.denoiser (windows); the held frames live here
        model.ltx.temporal, model.ltx.spatial = model.codec.temporal, model.codec.factor
        return model

    def configure(self, inputs) -> None:
        """Keep the clip's token count (the schedule's shift), encode the run's prompts and release T5 from the GPU, and
        hold the first frames at the source's where the params ask for it."""
        _, _, f, h, w = self.codec.latent_shape(inputs.frames, inputs.height, inputs.width)
        self.ltx.tokens = min(f, self.params.window or f) * h * w  # the tokens of one call: windows count latent frames
        for prompt in {inputs.prompt, inputs.negative_prompt or ""}:
            self.ltx._encode(prompt)
        self.ltx.release_text_encoder()
        self.ltx.held, self.ltx.keyframes = None, []
        if self.params.first_frame == "source":  # with --video: LTXParams.check_inputs, before loading
            self.condition_on_frames(inputs.sources.video, source=True)

    def condition_on_frames(self, frames, source: bool = False) -> None:
        """Hold the first ``condition_frames`` frames (1 + 8k: one latent frame per 8 after the first) at ``frames``' own,
        encoded alone, when the params ask for the IDM's frames (or, from configure, the source's); with
        ``keyframe_stride`` N, frames N, 2N, ... of them are keyframes, each encoded alone (LTXConditionPipeline's
        image conditions at frame indices)."""
        if self.params.first_frame == ("source" if source else "idm"):
            requested = self.params.condition_frames
            count = min(requested, len(frames))
            count = 1 + (count - 1) // self.codec.temporal * self.codec.temporal
            if count != requested:  # a clip shorter than asked, or a count between whole latent frames
                why = f"the clip has {len(frames)}" if requested > len(frames) else f"whole latent frames are 1 + {self.codec.temporal}k"
                warnings.warn(f"ltx-video: -o condition_frames={requested} holds the first {count} frame{'s' * (count > 1)} ({why})",
                              VsynthWarning, stacklevel=2)
            self.ltx.held = self.codec.encode(frames[:count])
            stride = self.params.keyframe_stride
            self.ltx.keyframes = [(i, self.codec.encode(frames[i : i + 1])) for i in range(stride, len(frames), stride)] if stride else []
