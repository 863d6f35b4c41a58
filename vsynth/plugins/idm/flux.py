"""FLUX.1 image models: text-to-image (dev, schnell), control (Canny, Depth), fill and Kontext editing.

Every model is a frame-wise rectified-flow denoiser over the 16-channel FLUX VAE latents. Latents
stay (B, 16, F, h, w) outside the denoiser, as every vsynth latent; inside, each frame is packed as
the FLUX pipelines pack it, 2x2 latent patches into (h*w/4, 64) tokens with their position ids,
the transformer runs on ``batch_size`` frames at a time, and the velocity is unpacked again. What
each pipeline adds to the tokens is the one difference between the models:

- ``FluxControlPipeline`` (Canny, Depth): the control map's VAE latents, packed, concatenated on
  channels (128 input channels);
- ``FluxFillPipeline``: the masked frame's latents and the mask folded into 8x8 pixel patches,
  concatenated on channels (64 + 64 + 256 = 384);
- ``FluxKontextPipeline``: the source frame's latents as reference tokens after the frame's own
  (position ids with a first coordinate of 1), whose predictions are dropped.

Guidance is the family's: dev models embed ``guidance`` (one forward per step, no classifier-free
pair); schnell has no guidance embedding and ignores it. The schedule is FluxPipeline's: sigmas
``linspace(1, 1/N, N)`` shifted by ``mu``, which grows with the number of tokens per frame, kept by
:meth:`FluxModel.configure` from the run's size.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vsynth.core.diffusion import sampling
from vsynth.core.diffusion.components import TENSORS, VaeCodec, load, warn_if_cut
from vsynth.core.diffusion.denoiser import Denoiser
from vsynth.core.diffusion.inputs import Conditioning, FrameInputs, Runtime, Sources
from vsynth.core.diffusion.models import ImageModel
from vsynth.core.diffusion.offload import execution_device
from vsynth.core.diffusion.processes import FLOW
from vsynth.errors import InvalidParamsError
from vsynth.plugins.idm.detectors import ControlMaps
from vsynth.plugins.idm.stable_diffusion import fold, unfold

PACK = 2  # latent pixels per token side


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, h*w/4, C*4), as FluxPipeline._pack_latents."""
    n, c, h, w = latents.shape
    latents = latents.view(n, c, h // PACK, PACK, w // PACK, PACK).permute(0, 2, 4, 1, 3, 5)
    return latents.reshape(n, (h // PACK) * (w // PACK), c * PACK * PACK)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(N, h*w/4, C*4) -> (N, C, h, w), as FluxPipeline._unpack_latents."""
    n, _, channels = tokens.shape
    tokens = tokens.view(n, h // PACK, w // PACK, channels // 4, PACK, PACK).permute(0, 3, 1, 4, 2, 5)
    return tokens.reshape(n, channels // 4, h, w)


def image_ids(h: int, w: int, device, dtype, first: float = 0.0) -> torch.Tensor:
    """Position ids (h/2 * w/2, 3) of a frame's tokens: (first, row, column), as _prepare_latent_image_ids."""
    ids = torch.zeros(h // PACK, w // PACK, 3)
    ids[..., 0] = first
    ids[..., 1] = torch.arange(h // PACK)[:, None]
    ids[..., 2] = torch.arange(w // PACK)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


def calculate_shift(image_seq_len: int, config) -> float:
    """FluxPipeline's ``mu``: linear in the tokens per frame, from the scheduler config's two anchors."""
    base_len, max_len = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    base_shift, max_shift = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    m = (max_shift - base_shift) / (max_len - base_len)
    return image_seq_len * m + base_shift - m * base_len


@dataclass
class Flux:
    """The parts of a FLUX pipeline folder (FluxPipeline, FluxControlPipeline, FluxFillPipeline, FluxKontextPipeline)."""

    transformer: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module  # CLIP: its pooled output
    tokenizer: object
    text_encoder_2: torch.nn.Module  # T5: the token embeddings
    tokenizer_2: object
    scheduler: object

    @classmethod
    def load(cls, source: str, runtime: Runtime, what: str = "FLUX") -> Flux:
        """The folder's transformer, VAE, CLIP and T5 encoders, tokenizers and FlowMatchEuler scheduler (with its
        dynamic shifting); the VAE and text encoders are shared by every FLUX model on the same files."""
        from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
        from transformers import CLIPTextModel, CLIPTokenizer, PreTrainedTokenizerFast, T5EncoderModel

        source = offline_folder(source)
        kw = {"torch_dtype": runtime.dtype}
        return cls(
            transformer=load(FluxTransformer2DModel, source, what=what, share=TENSORS, subfolder="transformer", **kw).to(runtime.home),
            vae=load(AutoencoderKL, source, what=what, share=True, subfolder="vae", **kw).to(runtime.home),
            text_encoder=load(CLIPTextModel, source, what=what, share=True, subfolder="text_encoder", **kw).to(runtime.home),
            tokenizer=load(CLIPTokenizer, source, what=what, subfolder="tokenizer"),
            text_encoder_2=load(T5EncoderModel, source, what=what, share=True, subfolder="text_encoder_2", **kw).to(runtime.home),
            tokenizer_2=load(PreTrainedTokenizerFast, source, what=what, subfolder="tokenizer_2"),
            scheduler=load(FlowMatchEulerDiscreteScheduler, source, what=what, subfolder="scheduler"),
        )


def offline_folder(source: str) -> str:
    """The cached snapshot's folder for a hub id while the hub is offline, else ``source``.

    diffusers asks the hub for the file list of a sharded checkpoint (FLUX's transformer) unless told
    ``local_files_only``, even with ``HF_HUB_OFFLINE`` set; read from the snapshot's folder, a cached
    download loads offline like any local folder.
    """
    from huggingface_hub import constants

    from vsynth.core.diffusion.weights import cached_snapshot

    if not constants.HF_HUB_OFFLINE or Path(source).is_dir():
        return source
    folder = cached_snapshot(source)
    return source if folder is None else str(folder)


class FluxDenoiser(Denoiser):
    """The FLUX transformer over every frame, ``batch_size`` frames per call; predicts the flow velocity.

    ``cond.text`` holds the T5 embeddings (1, L, D), ``cond.extras['pooled']`` CLIP's pooled (1, D).
    Subclasses add the per-frame tokens of their pipeline through :meth:`tokens`.
    """

    frame_folded = True
    declared_process = FLOW

    def __init__(self, flux: Flux, batch_size: int | None, max_sequence_length: int):
        super().__init__(flux.transformer, flux.scheduler, flux.tokenizer, flux.text_encoder)
        self.text_encoder_2 = flux.text_encoder_2
        self.tokenizer_2 = flux.tokenizer_2
        self.batch_size = batch_size
        self.max_sequence_length = max_sequence_length
        self.image_seq_len: int | None = None  # tokens per frame, set by FluxModel.configure

    def set_timesteps(self, scheduler, steps: int) -> None:
        """FluxPipeline's: sigmas linspace(1, 1/N, N) (unless the solver makes its own flow sigmas), shifted by mu."""
        if self.image_seq_len is None:
            raise RuntimeError("a FLUX schedule depends on the frame size: call the model's configure(inputs) first")
        accepted = inspect.signature(scheduler.set_timesteps).parameters
        kwargs = {"mu": calculate_shift(self.image_seq_len, scheduler.config)} if "mu" in accepted else {}
        if "sigmas" in accepted and not scheduler.config.get("use_flow_sigmas", False):
            scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), device=self.device, **kwargs)
        else:
            scheduler.set_timesteps(steps, device=self.device, **kwargs)

    @torch.no_grad()
    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """T5 embeddings (1, max_sequence_length, D), as FluxPipeline._get_t5_prompt_embeds (CLIP's 77 tokens feed only the
        pooled vector, as in the pipeline: the T5's length is the one that cuts a prompt)."""
        warn_if_cut(self.tokenizer_2, prompt, self.max_sequence_length, self.text_encoder_2)
        tokens = self.tokenizer_2(
            [prompt], padding="max_length", max_length=self.max_sequence_length, truncation=True, return_tensors="pt"
        )
        return self.text_encoder_2(tokens.input_ids.to(execution_device(self.text_encoder_2)))[0].to(self.dtype)

    @torch.no_grad()
    def encode_pooled(self, prompt: str) -> torch.Tensor:
        """CLIP's pooled output (1, D), as FluxPipeline._get_clip_prompt_embeds."""
        tokens = self.tokenizer(
            [prompt], padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True, return_tensors="pt"
        )
        return self.text_encoder(tokens.input_ids.to(execution_device(self.text_encoder))).pooler_output.to(self.dtype)

    def condition(self, prompt: str, negative_prompt: str | None = None, **extras) -> Conditioning:
        """The prompt's T5 and pooled CLIP embeddings; the negative prompt is not used: FLUX guides without one."""
        return Conditioning(text=self.encode_prompt(prompt), extras={"pooled": self.encode_pooled(prompt), **extras})

    def tokens(self, x: torch.Tensor, frames: slice, cond: Conditioning, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformer's input tokens for the packed frames ``x`` (n, L, 64) and their position ids (L', 3)."""
        return x, image_ids(h, w, x.device, x.dtype)

    @torch.no_grad()
    def predict(self, latents: torch.Tensor, t, cond: Conditioning, guidance: float) -> torch.Tensor:
        flat = fold(latents)  # (B*F, 16, h, w)
        h, w = flat.shape[-2:]
        size = self.batch_size or flat.shape[0]
        text, pooled = cond.text, cond.extras["pooled"]
        txt_ids = torch.zeros(text.shape[1], 3, device=text.device, dtype=text.dtype)
        embeds_guidance = self.unet.config.guidance_embeds
        out = []
        for start in range(0, flat.shape[0], size):
            frames = slice(start, min(start + size, flat.shape[0]))
            x = pack(flat[frames])
            n, length = x.shape[:2]
            hidden, img_ids = self.tokens(x, frames, cond, h, w)
            timestep = torch.as_tensor(t, device=x.device).expand(n).to(x.dtype)
            velocity = self.unet(
                hidden,  # positional, as a UNet's sample: run.json's evaluation counter reads the first argument
                timestep=timestep / 1000,
                guidance=torch.full((n,), guidance, device=x.device, dtype=torch.float32) if embeds_guidance else None,
                pooled_projections=pooled.expand(n, -1),
                encoder_hidden_states=text.expand(n, -1, -1),
                txt_ids=txt_ids,
                img_ids=img_ids,
                return_dict=False,
            )[0]
            out.append(unpack(velocity[:, :length], h, w))
        return unfold(torch.cat(out), latents.shape[0])


def to_pixels(frames: np.ndarray) -> torch.Tensor:
    """uint8 (F, H, W, 3) -> (F, 3, H, W) floats in [-1, 1], as VaeImageProcessor.preprocess."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


class FluxModel(ImageModel):
    """FLUX.1 dev or schnell: text-to-image, or SDEdit of the source frames as FluxImg2ImgPipeline.

    The inversion denoiser is the FLUX denoiser itself: a flow model is inverted by the reverse Euler
    step of its own ODE (``sampling.invert``). BIVDiff's image-side inversion (``bivdiff_invert``)
    steps on a VP training schedule and does not apply; Mixed Inversion refuses mixing FLUX's latents
    with another space's anyway, so with every VDM today only its video side runs (``mixing_ratio=0``).
    """

    denoiser_class = FluxDenoiser
    role = "flux"

    @classmethod
    def load(cls, spec, params, sources, runtime):
        flux = Flux.load(sources[cls.role], runtime)
        model = cls(spec, params)
        model.runtime = runtime
        model.denoiser = cls.make_denoiser(flux, params)
        model.inversion_denoiser = model.denoiser
        model.codec = VaeCodec(flux.vae)
        model.denoiser.codec = model.codec
        return model

    @classmethod
    def make_denoiser(cls, flux: Flux, params) -> FluxDenoiser:
        length = params.max_sequence_length or min(512, flux.tokenizer_2.model_max_length)
        return cls.denoiser_class(flux, params.batch_size, length)

    def offload_units(self) -> dict[str, list[torch.nn.Module]]:
        """Both text encoders run first, then the transformer, then the VAE."""
        units = super().offload_units()
        return {"text_encoder": units.pop("text_encoder"), "text_encoder_2": [self.denoiser.text_encoder_2], **units}

    def configure(self, inputs) -> None:
        """Keep the tokens per frame: FLUX's schedule shifts with them."""
        factor = self.codec.factor * PACK
        self.denoiser.image_seq_len = (inputs.height // factor) * (inputs.width // factor)

    def generate(self, inputs, generator, advance=None) -> torch.Tensor:
        """From noise; for dev and schnell (params with a strength) given a source video, SDEdit of it. The other
        FLUX models use the source through their conditions (control maps, masks, reference tokens)."""
        if inputs.sources.video is None or not hasattr(self.params, "strength"):
            return super().generate(inputs, generator, advance)
        return self.sdedit(inputs, inputs.sources.video, generator, advance)

    def sdedit(self, inputs, source: np.ndarray, generator, advance=None) -> torch.Tensor:
        """As FluxImg2ImgPipeline: the source latents are sampled, noise is drawn, and the last
        ``strength * steps`` steps (not rounded down first, unlike SD's pipelines) denoise from there."""
        denoiser, steps, strength = self.denoiser, inputs.steps, self.params.strength
        start = int(max(steps - min(steps * strength, steps), 0))
        if start >= steps:
            raise InvalidParamsError(f"strength {strength} leaves none of the {steps} steps: raise -o strength or --steps")
        schedule = sampling.Schedule(denoiser, steps)
        cond = denoiser.condition(inputs.image_prompt, **inputs.frame_inputs.extras)
        latents = self.codec.encode(source, generator)
        noise = sampling.initial_noise(denoiser, tuple(latents.shape), generator)
        z = sampling.renoise(denoiser, latents, noise, schedule.level(start))
        return sampling.denoise(schedule, z, cond, start, guidance=inputs.guidance, advance=advance, generator=generator)


class FluxControlDenoiser(FluxDenoiser):
    """FluxControlPipeline: each frame's control-map latents, packed, follow its latents on channels."""

    def condition(self, prompt, negative_prompt=None, *, control, generator=None, **extras) -> Conditioning:
        """Encodes the control maps ``control`` (F, 3, H, W) in [-1, 1]: sampled with ``generator`` as the
        pipeline does (before its initial noise), else the latent distribution's mean."""
        latents = self.codec.encode_pixels(control, generator)
        return super().condition(prompt, negative_prompt, control_tokens=pack(latents), **extras)

    def tokens(self, x, frames, cond, h, w):
        return torch.cat([x, cond.extras["control_tokens"][frames].to(x.dtype)], dim=2), image_ids(h, w, x.device, x.dtype)


class FluxControl(ControlMaps, FluxModel):
    """FLUX.1 Canny or Depth: control maps from the source video (vsynth's detectors) or --condition-video."""

    denoiser_class = FluxControlDenoiser

    @classmethod
    def load(cls, spec, params, sources, runtime):
        model = super().load(spec, params, sources, runtime)
        model.control_maps = cls.make_control_maps(params, sources, runtime.home)
        return model

    def prepare(self, sources: Sources) -> FrameInputs:
        maps = sources.condition if sources.condition is not None else self.control_maps(sources.video)
        return FrameInputs(extras={"control": to_pixels(maps).to(self.runtime.device, self.runtime.dtype)}, condition_frames=maps)

    def generate(self, inputs, generator, advance=None) -> torch.Tensor:
        """As the pipeline draws: the control latents are sampled first, then the initial noise."""
        cond = self.denoiser.condition(inputs.image_prompt, generator=generator, **inputs.frame_inputs.extras)
        noise = sampling.initial_noise(self.denoiser, inputs.latent_shape(self.codec), generator)
        return sampling.sample(self.denoiser, noise, cond, steps=inputs.steps, guidance=inputs.guidance, advance=advance, generator=generator)


class FluxCanny(FluxControl):
    kind = "canny"


class FluxDepth(FluxControl):
    kind = "depth"


class FluxFillDenoiser(FluxDenoiser):
    """FluxFillPipeline: each frame's masked-image latents and its mask (8x8 pixels per latent pixel, 256
    channels once packed) follow its latents on channels."""

    def condition(self, prompt, negative_prompt=None, *, mask, masked_pixels, generator=None, **extras) -> Conditioning:
        """``mask`` (F, 1, H, W) binary in pixels (1 = regenerate), ``masked_pixels`` (F, 3, H, W) in [-1, 1] with the
        regenerated part 0; the masked frames are sampled with ``generator`` as the pipeline does, else the mean."""
        masked = pack(self.codec.encode_pixels(masked_pixels, generator))
        f, _, height, width = mask.shape
        factor = self.codec.factor
        h, w = height // factor, width // factor
        patches = mask[:, 0].reshape(f, h, factor, w, factor).permute(0, 2, 4, 1, 3).reshape(f, factor * factor, h, w)
        fill = torch.cat([masked, pack(patches).to(masked.dtype)], dim=2)
        return super().condition(prompt, negative_prompt, fill_tokens=fill, **extras)

    def tokens(self, x, frames, cond, h, w):
        return torch.cat([x, cond.extras["fill_tokens"][frames].to(x.dtype)], dim=2), image_ids(h, w, x.device, x.dtype)


class FluxFill(FluxModel):
    """FLUX.1 Fill: regenerates the white part of the mask (--mask, or --outpaint's border) in every frame."""

    denoiser_class = FluxFillDenoiser

    def prepare(self, sources: Sources) -> FrameInputs:
        """The binarized mask and the masked frames, as the pipeline's mask and image processors make them;
        condition.mp4 shows the masked frames (the regenerated part gray)."""
        pixels = to_pixels(sources.video)
        mask = torch.from_numpy(sources.mask / 255.0 >= 0.5)[:, None].float()  # (F, 1, H, W): 1 where regenerated
        shown = np.where(mask[:, 0, :, :, None].bool().numpy(), np.uint8(128), sources.video)
        device, dtype = self.runtime.device, self.runtime.dtype
        extras = {"mask": mask.to(device, dtype), "masked_pixels": (pixels * (1 - mask)).to(device, dtype)}
        return FrameInputs(extras=extras, condition_frames=shown)

    def generate(self, inputs, generator, advance=None) -> torch.Tensor:
        """As the pipeline at strength 1 draws: the source latents' sample (unused at strength 1, but drawn),
        the initial noise, then the masked frames' sample."""
        _, c, f, h, w = shape = inputs.latent_shape(self.codec)
        torch.randn((f, c, h, w), generator=generator, device=generator.device, dtype=self.codec.vae.dtype)  # the source's sample
        noise = sampling.initial_noise(self.denoiser, shape, generator)
        cond = self.denoiser.condition(inputs.image_prompt, generator=generator, **inputs.frame_inputs.extras)
        return sampling.sample(self.denoiser, noise, cond, steps=inputs.steps, guidance=inputs.guidance, advance=advance, generator=generator)


class FluxKontextDenoiser(FluxDenoiser):
    """FluxKontextPipeline: each frame's source latents as reference tokens after its own; their predictions are dropped."""

    def condition(self, prompt, negative_prompt=None, *, reference, **extras) -> Conditioning:
        """``reference`` (F, 16, h, w): the source frames' latents (the distribution's mode, as the pipeline)."""
        return super().condition(prompt, negative_prompt, reference_tokens=pack(reference), **extras)

    def tokens(self, x, frames, cond, h, w):
        reference = cond.extras["reference_tokens"][frames].to(x.dtype)
        ids = torch.cat([image_ids(h, w, x.device, x.dtype), image_ids(h, w, x.device, x.dtype, first=1.0)])
        return torch.cat([x, reference], dim=1), ids


class FluxKontext(FluxModel):
    """FLUX.1 Kontext: edits every source frame by the instruction (--idm-prompt), each frame its own reference.

    Frames are edited at the run's size, the reference at the frame's: FluxKontextPipeline's own
    resizing (the output to about 1 megapixel, the reference to its preferred resolutions) is what
    ``max_area=H*W, _auto_resize=False`` turns off, and a video keeps its size through every model.
    """

    denoiser_class = FluxKontextDenoiser

    def prepare(self, sources: Sources) -> FrameInputs:
        latents = self.codec.encode(sources.video)  # (1, 16, F, h, w), the mode as the pipeline's argmax
        return FrameInputs(extras={"reference": latents[0].permute(1, 0, 2, 3)})
