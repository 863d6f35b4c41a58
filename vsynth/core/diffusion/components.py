"""Adapters over diffusers/transformers components shared by model families.

Loading with readable errors and one copy of each set of weights, prompt encoding exactly as the diffusers pipelines do it, and a
VAE codec between uint8 frames and latent videos of shape (B, C, F, H, W).
"""

from __future__ import annotations

import re
import warnings
import weakref
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from vsynth.core.diffusion.offload import execution_device
from vsynth.errors import VsynthInputError, VsynthWarning, shorten

# Frames with a side above this many pixels go through the VAE in tiles. Every default model's native
# size and BIVDiff's 512 are below it, so their runs decode whole, exactly as the reference pipelines;
# SD-family VAEs were trained at 512-768 pixels, and above that a whole frame costs memory
# quadratically (about 0.5 GB per 512x512 frame in float16, 2 GB at 1024x1024).
TILE_ABOVE = 768


# Weighted modules loaded and still held by some model, by (class, files, dtype, placement).
_LOADED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
# The config and tensors (weakly) of modules shared by tensor rather than by module, by the same key.
_TENSORS: dict[tuple, tuple[dict, dict[str, weakref.ref]]] = {}
TENSORS = "tensors"
_PLACEMENT: ContextVar[tuple] = ContextVar("placement", default=())


@contextmanager
def placement(key: tuple) -> Iterator[None]:
    """Modules loaded in the block are shared only with modules loaded under the same ``key`` (device and
    offload): a module hooked for offloading, or moved to another device, is not another run's to share."""
    token = _PLACEMENT.set(key)
    try:
        yield
    finally:
        _PLACEMENT.reset(token)


def load(cls, source: str, *, what: str, share: bool | str = False, **kwargs):
    """``cls.from_pretrained(source, **kwargs)``; a broken or mismatched folder becomes one line.

    With ``share``, the module is loaded once while a model holds it, keyed by class, the files it
    is read from (:func:`_identity`), dtype and :func:`placement`: an IDM and a VDM on one SD1.5 base get the same VAE
    and text encoder, and so do two repos that ship the same files.
    With ``share=TENSORS``, each call returns a module of its own whose parameters and buffers are
    the tensors of the one loaded earlier under that key while any model holds them: for UNets,
    whose attention processors bridges and plugins swap per model. Nothing modifies weights in
    place during inference, and moving a module moves the shared tensors for every holder.
    """
    key = (cls.__module__, cls.__qualname__, _identity(source, kwargs.get("subfolder")), kwargs.get("torch_dtype"), _PLACEMENT.get())
    if share is True and (module := _LOADED.get(key)) is not None:
        return module
    if share == TENSORS and (module := _on_shared_tensors(cls, key)) is not None:
        return module
    try:
        module = _from_pretrained(cls, source, kwargs)
    except (OSError, ValueError, KeyError) as exc:
        sub = f" (subfolder {kwargs['subfolder']})" if kwargs.get("subfolder") else ""
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VsynthInputError(f"cannot load {what} from {source}{sub}: {reason}") from None
    if share is True:
        _LOADED[key] = module
    elif share == TENSORS:
        tensors = module.state_dict(keep_vars=True)
        _TENSORS[key] = (module.config, {name: weakref.ref(tensor) for name, tensor in tensors.items()})
    return module


def _on_shared_tensors(cls, key: tuple):
    """A new ``cls`` module holding the live tensors registered under ``key``, or None when some were freed."""
    if key not in _TENSORS:
        return None
    config, refs = _TENSORS[key]
    tensors = {name: ref() for name, ref in refs.items()}
    if any(tensor is None for tensor in tensors.values()):
        del _TENSORS[key]
        return None
    with torch.device("meta"):  # no memory for weights about to be replaced
        module = cls.from_config(config)
    module.load_state_dict(tensors, strict=True, assign=True)
    return module.eval()


FP16 = "fp16"
_FP16_FILE = re.compile(r"\.fp16(-\d+-of-\d+)?\.(safetensors|bin)$")
_WEIGHT_FILE = re.compile(r"\.(safetensors|bin)$")


def _from_pretrained(cls, source: str, kwargs: dict):
    """Float16 weights are read from the fp16 variant where there is one: half the bytes to download and read.

    A folder or cached snapshot decides by the files it holds, and either kind is accepted (a
    float32 run upcasts a folder of fp16 files); with nothing cached, a float16 run tries the hub's
    fp16 variant first, then the full files. Modules without a dtype (tokenizers) load as they are.
    """
    if "torch_dtype" not in kwargs:
        return cls.from_pretrained(source, **kwargs)
    half = kwargs["torch_dtype"] == torch.float16
    files = _weight_files(source, kwargs.get("subfolder"))
    if files:
        fp16 = [f for f in files if _FP16_FILE.search(f)]
        use_fp16 = bool(fp16) and (half or len(fp16) == len(files))
        return cls.from_pretrained(source, variant=FP16 if use_fp16 else None, **kwargs)
    if not half:
        return cls.from_pretrained(source, **kwargs)
    try:
        return cls.from_pretrained(source, variant=FP16, **kwargs)
    except (OSError, ValueError):
        return cls.from_pretrained(source, **kwargs)


def _folder(source: str) -> Path | None:
    """The folder ``source`` is read from: a local one, else its cached snapshot (None when not cached)."""
    from vsynth.core.diffusion.weights import cached_snapshot

    return Path(source) if Path(source).is_dir() else cached_snapshot(source)


def _weight_files(source: str, subfolder: str | None) -> list[str]:
    """Names of the weight files in ``source``'s folder (a local one, else the cached snapshot), or []."""
    folder = _folder(source)
    if folder is None or not (folder / (subfolder or "")).is_dir():
        return []
    return [p.name for p in (folder / (subfolder or "")).iterdir() if _WEIGHT_FILE.search(p.name)]


def _identity(source: str, subfolder: str | None) -> tuple[tuple[str, str], ...] | str:
    """What a module is read from, rather than where: the files of its folder, each by the name of its hub
    cache blob (a content hash: instruct-pix2pix's VAE files are SD1.5's), else by its real path; the
    source and subfolder where nothing is on disk yet."""
    folder = _folder(source)
    directory = folder / (subfolder or "") if folder is not None else None
    if directory is None or not directory.is_dir():
        return f"{source}/{subfolder or ''}"
    files = ((p.name, p.resolve()) for p in sorted(directory.iterdir()) if p.is_file())
    return tuple((name, real.name if real.parent.name == "blobs" else str(real)) for name, real in files)


def warn_if_cut(tokenizer, prompt: str, max_length: int, encoder) -> None:
    """A prompt longer than its text encoder reads is cut, as diffusers' pipelines cut it; they log that (at a level
    vsynth quiets), so vsynth says it: a long prompt's end, often what sets the scene apart, is silently dropped."""
    if not prompt:
        return
    count = len(tokenizer(prompt, truncation=False).input_ids)
    if count > max_length:
        warnings.warn(f"{type(encoder).__name__} reads {max_length} tokens of a prompt of {count}: the rest of "
                      f"{shorten(prompt, 60)!r} is dropped", VsynthWarning, stacklevel=3)  # fmt: skip


@torch.no_grad()
def encode_text(tokenizer, text_encoder, prompts: list[str]) -> torch.Tensor:
    """(len(prompts), max_length, D) embeddings, tokenized and encoded as StableDiffusionPipeline does."""
    for prompt in prompts:
        warn_if_cut(tokenizer, prompt, tokenizer.model_max_length, text_encoder)
    tokens = tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    )
    device = execution_device(text_encoder)
    mask = tokens.attention_mask.to(device) if getattr(text_encoder.config, "use_attention_mask", False) else None
    return text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]


class VaeCodec:
    """uint8 frames (F, H, W, 3) <-> scaled latent videos (1, C, F, H/8, W/8), shifted first where the VAE has a
    ``shift_factor`` (FLUX, SD3: ``(z - shift) * scale``, as their pipelines), a few frames (``batch_size``)
    at a time: VAE slicing over frames.

    A float16 VAE whose config asks for it (``force_upcast``, SD1.5's: it overflows in float16) runs
    in float32, as diffusers' pipelines upcast it; latents come out in the run's dtype all the same.
    """

    # Whether the model's own video-to-video pipeline encodes a source video as a sample of the latent
    # distribution (drawn from the run's generator before the noise: CogVideoX) rather than its mean.
    samples_sources = False

    def __init__(self, vae, batch_size: int = 8, space=None):
        from vsynth.core.host.specs import SD_LATENTS

        self.space = space or SD_LATENTS  # the declared latent space (the run sets its model spec's)
        self.passes = {"encoded_frames": 0, "decoded_frames": 0}  # for run.json
        self.dtype = vae.dtype  # of the latents it returns: the run's
        if vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
            vae.to(torch.float32)  # a shared VAE is upcast once, for every model using it
        self.vae = vae
        self.batch_size = self.own_batch_size = batch_size
        self.scale = vae.config.get("scaling_factor", 1.0)
        self.shift = vae.config.get("shift_factor", None) or 0.0  # FLUX's and SD3's VAEs shift before scaling
        self.factor = 2 ** (len(vae.config.get("block_out_channels", (0,))) - 1)

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int, int]:
        """(1, C, F, H/f, W/f): the latents of ``frames`` frames of height x width pixels (one latent frame per frame)."""
        return (1, self.vae.config.latent_channels, frames, height // self.factor, width // self.factor)

    def set_tiling(self, height: int, width: int) -> bool:
        """Encode and decode frames with a side above :data:`TILE_ABOVE` pixels in overlapping tiles
        (diffusers' VAE tiling, at the VAE's own tile size), smaller ones whole; returns whether it tiles."""
        tiled = max(height, width) > TILE_ABOVE
        if tiled:
            self.vae.enable_tiling()
        else:
            self.vae.disable_tiling()
        return tiled

    def set_batch(self, cap: int | None) -> None:
        """Encode and decode at most ``cap`` frames at once (the memory planner's choice), or the codec's own batch."""
        self.batch_size = min(self.own_batch_size, cap) if cap else self.own_batch_size

    @torch.no_grad()
    def encode(self, frames: np.ndarray, generator: torch.Generator | None = None, *, scaled: bool = True) -> torch.Tensor:
        """uint8 (F, H, W, 3) -> (1, C, F, h, w).

        Without a generator the latent distribution's mean (frames fed to inversion should not be
        re-noised); with one, a sample drawn in a single (F, C, h, w) draw as the image-to-image
        pipelines draw it. ``scaled=False`` skips the scaling factor (InstructPix2Pix's image latents).
        """
        chunks = (
            torch.from_numpy(np.ascontiguousarray(frames[i : i + self.batch_size])).permute(0, 3, 1, 2).float() / 127.5 - 1.0
            for i in range(0, len(frames), self.batch_size)
        )  # converted to float a chunk at a time: a long clip is never held as float pixels
        return self._encode(chunks, generator, scaled).permute(1, 0, 2, 3).unsqueeze(0)

    @torch.no_grad()
    def encode_pixels(self, pixels: torch.Tensor, generator: torch.Generator | None = None, *, scaled: bool = True) -> torch.Tensor:
        """(F, 3, H, W) in [-1, 1] -> (F, C, h, w), as :meth:`encode` (inpainting's masked frames are not uint8)."""
        return self._encode(pixels.split(self.batch_size), generator, scaled)

    def _encode(self, chunks, generator: torch.Generator | None, scaled: bool) -> torch.Tensor:
        """Chunks of (f, 3, H, W) pixels in [-1, 1] -> (F, C, h, w) latents; see :meth:`encode`."""
        device = execution_device(self.vae)
        dists = [self.vae.encode(c.to(device, self.vae.dtype)).latent_dist for c in chunks]
        self.passes["encoded_frames"] += sum(len(d.mean) for d in dists)
        latents = torch.cat([d.mean for d in dists])  # (F, C, h, w)
        if generator is not None:
            std = torch.cat([d.std for d in dists])
            noise = torch.randn(latents.shape, generator=generator, device=generator.device, dtype=latents.dtype)
            latents = latents + std * noise.to(latents.device)
        if scaled:
            latents = (latents - self.shift) * self.scale
        return latents.to(self.dtype)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, advance=None) -> np.ndarray:
        """(1, C, F, h, w) -> uint8 (F, H, W, 3); ``advance(n)`` reports frames done."""
        if latents.shape[0] != 1:
            raise ValueError(f"decode expects one video, got a batch of {latents.shape[0]}")
        frames = latents.shape[2]
        out = None  # uint8 (F, H, W, 3), filled a chunk at a time so the frames are never held twice
        device = execution_device(self.vae)
        for start in range(0, frames, self.batch_size):
            chunk = latents[0, :, start : start + self.batch_size].permute(1, 0, 2, 3).to(device, self.vae.dtype) / self.scale + self.shift
            image = self.vae.decode(chunk).sample
            self.passes["decoded_frames"] += len(chunk)
            pixels = ((image.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            if out is None:
                out = np.empty((frames, *pixels.shape[1:]), np.uint8)
            out[start : start + len(pixels)] = pixels
            if advance:
                advance(len(chunk))
        return out


class ClipCodec(VaeCodec):
    """A causal video VAE coding the whole clip at once (Wan, LTX-Video, CogVideoX): ``1 + (F - 1) / temporal``
    latent frames of ``height / factor`` x ``width / factor``; subclasses set the three factors and ``channels``."""

    factor: int
    temporal: int
    channels: int

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int, int]:
        return (1, self.channels, (frames - 1) // self.temporal + 1, height // self.factor, width // self.factor)

    def clip_distribution(self, frames: np.ndarray):
        """The VAE's latent distribution of uint8 (F, H, W, 3) frames, as one (1, 3, F, H, W) clip in [-1, 1]."""
        device = execution_device(self.vae)
        video = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1.0
        return self.vae.encode(video.to(device, self.vae.dtype)).latent_dist
