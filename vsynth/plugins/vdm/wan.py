"""Wan 2.x text-to-video models (WanPipeline), and VACE (WanVACEPipeline) as a VDM that takes controls natively.

Rectified flow: the transformer predicts the velocity noise - x0, sampled with UniPC on flow
sigmas and the checkpoint's flow shift. The causal 3D VAE compresses 8x in space (16x for Wan
2.2's) and 4x in time, the first frame alone (1 + 4k frames), with a per-channel latent mean and
std. Wan 2.2 A14B switches from a high-noise expert to a low-noise one at a boundary level; TI2V
gives each latent token its own timestep. Everything here is done as the diffusers pipelines do
it, so that a seed gives their latents.
"""

from __future__ import annotations

import html
import re

import numpy as np
import torch

from vsynth.core.diffusion.components import ClipCodec, load, warn_if_cut
from vsynth.core.diffusion.denoiser import Denoiser
from vsynth.core.diffusion.inputs import Conditioning
from vsynth.core.diffusion.models import VideoModel
from vsynth.core.diffusion.offload import execution_device
from vsynth.core.diffusion.processes import FLOW
from vsynth.errors import VsynthInputError


def prompt_clean(text: str) -> str:
    """WanPipeline's prompt cleaning (ftfy, when installed, as there)."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:
        pass
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


class WanCodec(ClipCodec):
    """uint8 frames (F, H, W, 3) <-> normalized latents (1, C, 1 + (F - 1) / 4, H / f, W / f) through
    AutoencoderKLWan: the whole clip at once (the VAE is causal over time), then (z - mean) / std per channel."""

    def __init__(self, vae, space=None):
        super().__init__(vae, batch_size=1, space=space)
        self.factor = vae.config.scale_factor_spatial
        self.temporal = vae.config.scale_factor_temporal
        self.channels = vae.config.z_dim
        self.scale = 1.0

    def _stats(self, device, dtype):
        config = self.vae.config
        shape = (1, config.z_dim, 1, 1, 1)
        mean = torch.tensor(config.latents_mean).view(shape).to(device, dtype)
        std = torch.tensor(config.latents_std).view(shape).to(device, dtype)
        return mean, std

    @torch.no_grad()
    def encode(self, frames: np.ndarray, generator: torch.Generator | None = None, *, scaled: bool = True) -> torch.Tensor:
        """The latent distribution's mode (its mean), as WanVideoToVideoPipeline encodes ("argmax"); with a generator, a sample."""
        dist = self.clip_distribution(frames)
        latents = dist.mean if generator is None else dist.mean + dist.std * torch.randn(
            dist.mean.shape, generator=generator, device=generator.device, dtype=dist.mean.dtype
        ).to(dist.mean.device)
        self.passes["encoded_frames"] += len(frames)
        if scaled:
            mean, std = self._stats(latents.device, latents.dtype)
            latents = (latents - mean) * (1.0 / std)
        return latents.to(self.dtype)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, advance=None) -> np.ndarray:
        device = execution_device(self.vae)
        z = latents.to(device, self.vae.dtype)
        mean, std = self._stats(device, z.dtype)
        video = self.vae.decode(z / (1.0 / std) + mean, return_dict=False)[0]  # (1, 3, F, H, W) in [-1, 1]
        frames = ((video[0].float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()
        self.passes["decoded_frames"] += len(frames)
        if advance:
            advance(len(frames))
        return frames


class WanDenoiser(Denoiser):
    """WanTransformer3DModel over whole clips, with classifier-free guidance as WanPipeline runs it (the
    conditional pass, then the unconditional one), two experts switched at ``boundary_ratio`` of the
    training timesteps (a level: s = boundary_ratio), and per-token timesteps for TI2V."""

    frame_folded = False
    declared_process = FLOW

    def __init__(self, transformer, scheduler, tokenizer, text_encoder, *, transformer_2=None, boundary_ratio=None,
                 expand_timesteps=False, max_sequence_length=None):  # fmt: skip
        super().__init__(transformer, scheduler, tokenizer, text_encoder)
        self.transformer_2 = transformer_2
        self.boundary_ratio = boundary_ratio
        self.expand_timesteps = expand_timesteps
        # WanPipeline's 512, or fewer where the tokenizer says so (the toy world's Wan: 16)
        self.max_sequence_length = max_sequence_length or min(512, getattr(tokenizer, "model_max_length", 512))
        self.prompts: dict[str, torch.Tensor] = {}  # UMT5's states by prompt: each prompt is encoded once
        self.first_frame: torch.Tensor | None = None  # TI2V: the clean latent (1, C, 1, h, w) the first latent frame is held at

    def release_text_encoder(self) -> None:
        """Move UMT5 (about 11 GB in bfloat16) off the GPU once the run's prompts are encoded, so that the
        transformer runs without it; a prompt asked for later is encoded where it then is. Under
        --offload its hooks already keep it off the GPU between uses."""
        parameter = next(self.text_encoder.parameters(), None)
        if parameter is not None and parameter.device.type == "cuda" and execution_device(self.text_encoder) == parameter.device:
            self.text_encoder.to("cpu")
            torch.cuda.empty_cache()

    @property
    def experts(self) -> list[torch.nn.Module]:
        return [self.unet] + ([self.transformer_2] if self.transformer_2 is not None else [])

    def expert(self, t) -> torch.nn.Module:
        """The high-noise expert at and above the boundary, the low-noise one below (A14B); the one transformer otherwise."""
        if self.transformer_2 is None or self.boundary_ratio is None:
            return self.unet
        boundary = self.boundary_ratio * self.scheduler.config.num_train_timesteps
        return self.unet if float(t) >= boundary else self.transformer_2

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """(1, max_sequence_length, D): UMT5's states of the real tokens, zero-padded, as WanPipeline encodes."""
        if prompt not in self.prompts:
            self.prompts[prompt] = self._encode(prompt)
        return self.prompts[prompt].to(self.device)

    def _encode(self, prompt: str) -> torch.Tensor:
        warn_if_cut(self.tokenizer, prompt_clean(prompt), self.max_sequence_length, self.text_encoder)
        tokens = self.tokenizer([prompt_clean(prompt)], padding="max_length", max_length=self.max_sequence_length, truncation=True,
                                add_special_tokens=True, return_attention_mask=True, return_tensors="pt")  # fmt: skip
        device = execution_device(self.text_encoder)
        length = int(tokens.attention_mask.gt(0).sum())
        states = self.text_encoder(tokens.input_ids.to(device), tokens.attention_mask.to(device)).last_hidden_state
        states = states.to(self.dtype)[0, :length]
        return torch.cat([states, states.new_zeros(self.max_sequence_length - length, states.shape[1])]).unsqueeze(0)

    def timestep_input(self, latents: torch.Tensor, t) -> torch.Tensor:
        """One timestep per clip, or (TI2V) per token: 0 for the tokens of a held first frame, as WanImageToVideoPipeline."""
        t = torch.as_tensor(t, device=latents.device)
        if not self.expand_timesteps:
            return t.expand(latents.shape[0])
        b, _, f, h, w = latents.shape
        patch = self.unet.config.patch_size
        mask = torch.ones((f, h // patch[1], w // patch[2]), device=latents.device)
        if self.first_frame is not None:
            mask[0] = 0
        return (mask * t).flatten().unsqueeze(0).expand(b, -1)

    def finish(self, latents: torch.Tensor) -> torch.Tensor:
        if self.first_frame is None:
            return latents
        held = latents.clone()
        held[:, :, :1] = self.first_frame.to(latents.device, latents.dtype)
        return held

    def transformer_kwargs(self, latents: torch.Tensor, cond: Conditioning) -> dict:
        """Extra transformer arguments (VACE's control states); none for plain Wan."""
        return {}

    @torch.no_grad()
    def predict(self, latents: torch.Tensor, t, cond: Conditioning, guidance: float) -> torch.Tensor:
        model = self.expert(t)
        x = self.finish(latents).to(model.dtype)  # TI2V: the first frame held at its condition
        timestep = self.timestep_input(latents, t)
        extra = self.transformer_kwargs(x, cond)
        velocity = model(hidden_states=x, timestep=timestep, encoder_hidden_states=cond.text.to(model.dtype), return_dict=False, **extra)[0]
        if guidance > 1.0:
            uncond = model(hidden_states=x, timestep=timestep, encoder_hidden_states=cond.negative.to(model.dtype), return_dict=False, **extra)[0]
            velocity = uncond + guidance * (velocity - uncond)
        return velocity


class WanVideoModel(VideoModel):
    """A Wan 2.x diffusers folder: transformer (and transformer_2), vae, text_encoder, tokenizer, scheduler."""

    denoiser_class = WanDenoiser
    transformer_class = "WanTransformer3DModel"
    gguf = True  # --vdm-weights FILE.gguf: a GGUF transformer (diffusers' from_single_file; the rest from the pipeline folder)

    @classmethod
    def load(cls, spec, params, sources, runtime):
        import diffusers
        from diffusers import AutoencoderKLWan, UniPCMultistepScheduler
        from transformers import PreTrainedTokenizerFast, UMT5EncoderModel

        source, what, kw = sources["vdm"], spec.name, {"torch_dtype": runtime.dtype}
        index = pipeline_index(source)
        transformer_cls = getattr(diffusers, cls.transformer_class)
        experts = [load(transformer_cls, source, what=what, subfolder=name, **kw).to(runtime.home)
                   for name in ("transformer", "transformer_2") if index.get(name, [None])[0] is not None and "gguf" not in sources]  # fmt: skip
        if "gguf" in sources:  # checked while planning (vsynth.core.diffusion.gguf): one transformer, this family's
            from vsynth.core.diffusion.gguf import load_transformer

            experts = [load_transformer(transformer_cls, sources["gguf"], source, runtime.dtype).to(runtime.home)]
        model = cls(spec, params)
        model.denoiser = cls.denoiser_class(
            experts[0],
            load(UniPCMultistepScheduler, source, what=what, subfolder="scheduler"),
            # its tokenizer.json, read as it is: AutoTokenizer would also want a config.json there, which offline fails
            load(PreTrainedTokenizerFast, source, what=what, subfolder="tokenizer"),
            load(UMT5EncoderModel, source, what=what, share=True, subfolder="text_encoder", **kw).to(runtime.home),
            transformer_2=experts[1] if len(experts) > 1 else None,
            boundary_ratio=index.get("boundary_ratio"),
            expand_timesteps=bool(index.get("expand_timesteps", False)),
            max_sequence_length=params.max_sequence_length,
        )
        # Wan's VAE runs in float32 in the reference code (and in bfloat16 runs of diffusers' examples); it is small (~0.5 GB)
        vae = load(AutoencoderKLWan, source, what=what, share=True, subfolder="vae", torch_dtype=torch.float32).to(runtime.home)
        model.codec = WanCodec(vae)
        model.codec.dtype = runtime.dtype
        model.wan = model.denoiser  # the run may wrap model.denoiser (windows); the experts and VACE's control live here
        return model

    def unets(self) -> list[torch.nn.Module]:
        return self.wan.experts

    def configure(self, inputs) -> None:
        """Encode the run's prompts now and release UMT5 from the GPU before any transformer call; hold TI2V's first
        frame at the source's first frame where the params ask for it."""
        self._check_positions(inputs.frames)
        for prompt in {inputs.prompt, inputs.negative_prompt, inputs.sources.source_prompt} - {None}:  # the source's: flow-edit
            self.wan.encode_prompt(prompt)
        self.wan.release_text_encoder()
        self.wan.first_frame = None
        if getattr(self.params, "first_frame", "none") == "source":  # with --video: TI2VParams.check_inputs, before loading
            self.condition_on_frames(inputs.sources.video, source=True)

    def _check_positions(self, frames: int) -> None:
        """The latent frames one call sees stay within the transformer's rotary positions (``rope_max_seq_len``): 1024 for
        the real checkpoints, 64 for the toy, whose VAE keeps every frame; beyond them the transformer crashed on a reshape."""
        config = self.wan.experts[0].config
        most = config.rope_max_seq_len * config.patch_size[0]
        latent = (frames - 1) // self.codec.temporal + 1
        window = getattr(self.params, "window", None)
        if min(latent, window or latent) > most:
            fitting = (most - 1) * self.codec.temporal + 1
            raise VsynthInputError(
                f"--frames {frames}: {self.spec.name}'s transformer places at most {most} latent frames at once, and these are {latent}; "
                f"lower --frames to at most {fitting}, or set -o window (at most {most})"
            )

    def condition_on_frames(self, frames, source: bool = False) -> None:
        """TI2V's image-to-video: the first frame held at ``frames[0]`` (encoded alone, as WanImageToVideoPipeline),
        when the params ask for the IDM's first frame (or, from configure, the source's)."""
        wanted = getattr(self.params, "first_frame", "none")
        if wanted == ("source" if source else "idm"):
            self.wan.first_frame = self.codec.encode(frames[:1])


def pipeline_index(source: str) -> dict:
    """The folder's model_index.json (which experts it has, boundary_ratio, expand_timesteps)."""
    import json
    from pathlib import Path

    from vsynth.core.diffusion.components import _folder

    folder = _folder(source)
    path = folder / "model_index.json" if folder is not None else None
    if path is None or not path.is_file():
        from vsynth.core.diffusion.weights import hub_file

        path = Path(hub_file(source, "model_index.json"))  # the cache, else the hub if reachable: one line when neither
    return json.loads(path.read_text())


class VaceDenoiser(WanDenoiser):
    """WanVACETransformer3DModel: Wan with control layers that read the run's control video and mask, encoded
    once per run (:meth:`WanVaceModel.configure`) and given to every call, as WanVACEPipeline gives them."""

    control: torch.Tensor | None = None  # (1, 96, F', h, w): the control video's latents and the mask
    control_scale: torch.Tensor | None = None  # one scale per control layer

    def transformer_kwargs(self, latents: torch.Tensor, cond: Conditioning) -> dict:
        if self.control is None:
            raise RuntimeError("VACE's control was not prepared: WanVaceModel.configure runs before the bridge")
        control = self.control.to(latents.device, latents.dtype)
        if control.shape[2:] != latents.shape[2:]:
            raise ValueError(f"VACE's control covers latents {tuple(control.shape[2:])}, not {tuple(latents.shape[2:])}")
        return {"control_hidden_states": control.expand(latents.shape[0], -1, -1, -1, -1), "control_hidden_states_scale": self.control_scale}


class VaceCodec(WanCodec):
    """WanCodec with VACE's reference slot: with a reference image the clip's latents start with one latent frame of
    their own (the reference's, as WanVACEPipeline prepends it), which encode() puts first and decode() drops."""

    reference: torch.Tensor | None = None  # (1, C, 1, h, w), normalized as the clip's latents

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int, int]:
        b, c, f, h, w = super().latent_shape(frames, height, width)
        return (b, c, f + (self.reference is not None), h, w)

    def encode(self, frames: np.ndarray, generator: torch.Generator | None = None, *, scaled: bool = True) -> torch.Tensor:
        latents = super().encode(frames, generator, scaled=scaled)
        if self.reference is None or not scaled:
            return latents
        return torch.cat([self.reference.to(latents.device, latents.dtype), latents], dim=2)

    def decode(self, latents: torch.Tensor, advance=None) -> np.ndarray:
        return super().decode(latents if self.reference is None else latents[:, :, 1:], advance)


class WanVaceModel(WanVideoModel):
    """Wan 2.1 VACE: a VDM that takes controls natively (canny, depth or pose maps of the source video made by the
    IDMs' own detectors, precomputed maps from --condition-video, or the source itself with --mask / --outpaint to
    fill) and a reference image: the trained alternative to composing an image model's control with a video model."""

    denoiser_class = VaceDenoiser
    transformer_class = "WanVACETransformer3DModel"
    gguf = False  # diffusers converts Wan's original keys, not VACE's control blocks

    @classmethod
    def load(cls, spec, params, sources, runtime):
        model = super().load(spec, params, sources, runtime)
        model.codec = VaceCodec(model.codec.vae)
        model.codec.dtype = runtime.dtype
        model.detector_sources = dict(sources)
        return model

    def control_maps(self, video: np.ndarray) -> np.ndarray:
        """The maps -o control asks for, from the same detectors as the ControlNet IDMs (loaded now, released after)."""
        from vsynth.plugins.idm.detectors import map_maker

        params = self.params
        if params.control == "video":
            return video
        kind = {"pose": "openpose"}.get(params.control, params.control)
        return map_maker(kind, params, self.detector_sources, self.wan.device)(video)

    def configure(self, inputs) -> None:
        from PIL import Image

        super().configure(inputs)
        sources, params = inputs.sources, self.params
        video, mask = None, None
        if sources.condition is not None:
            video = sources.condition
        elif sources.video is not None and sources.mask is None:
            video = self.control_maps(sources.video)
        elif sources.video is not None:
            video = sources.video
        if sources.mask is not None:
            mask = np.repeat(sources.mask[..., None], 3, axis=-1)
        # written to condition.mp4: a fill's masked source, as the inpainting IDMs show theirs; else the control maps it
        # follows (not -o control=video's, the source itself)
        if sources.mask is not None:
            self.condition_frames = None if video is None else np.where(sources.mask[..., None] > 127, np.uint8(128), video)
        else:
            self.condition_frames = video if sources.condition is not None or params.control != "video" else None
        reference = None
        if params.reference is not None:
            from vsynth.core.media.video import read_image

            reference = Image.fromarray(read_image(params.reference))
        pipe = self.pipeline()
        device = self.wan.device
        as_images = lambda frames: None if frames is None else [Image.fromarray(f) for f in frames]  # noqa: E731
        video_t, mask_t, references = pipe.preprocess_conditions(
            as_images(video), as_images(mask), reference, 1, inputs.height, inputs.width, inputs.frames, torch.float32, device
        )
        with torch.no_grad():
            latents = pipe.prepare_video_latents(video_t, mask_t, references, None, device)
            masks = pipe.prepare_masks(mask_t, references, None)
        # its helpers encode the clip twice (the kept and the regenerated parts, the whole clip where nothing is masked),
        # then the reference image
        self.codec.passes["encoded_frames"] += 2 * video_t.shape[2] + (reference is not None)
        d = self.wan
        d.control = torch.cat([latents, masks], dim=1).to(d.unet.dtype)
        layers = len(d.unet.config.vace_layers)
        d.control_scale = torch.full((layers,), params.conditioning_scale, device=device, dtype=d.unet.dtype)
        # the reference's own latent (the first half of its control slot) starts the clip's latents
        self.codec.reference = latents[:, : self.codec.channels, :1].float() if reference is not None else None

    def pipeline(self):
        """A WanVACEPipeline over this model's own modules, for its condition preprocessing (nothing is copied)."""
        from diffusers import WanVACEPipeline

        d = self.wan
        return WanVACEPipeline(tokenizer=d.tokenizer, text_encoder=d.text_encoder, vae=self.codec.vae, scheduler=d.scheduler,
                               transformer=d.unet, transformer_2=d.transformer_2, boundary_ratio=d.boundary_ratio)  # fmt: skip
