"""Adapters over diffusers/transformers components shared by model families.

Loading with readable errors, prompt encoding exactly as the diffusers pipelines do it, and a
VAE codec between uint8 frames and latent videos of shape (B, C, F, H, W).
"""

from __future__ import annotations

import numpy as np
import torch

from vsynth.errors import VsynthInputError


def load(cls, source: str, *, what: str, **kwargs):
    """``cls.from_pretrained(source, **kwargs)``; a broken or mismatched folder becomes one line."""
    try:
        return cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        sub = f" (subfolder {kwargs['subfolder']})" if kwargs.get("subfolder") else ""
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VsynthInputError(f"cannot load {what} from {source}{sub}: {reason}") from None


@torch.no_grad()
def encode_text(tokenizer, text_encoder, prompts: list[str]) -> torch.Tensor:
    """(len(prompts), max_length, D) embeddings, tokenized and encoded as StableDiffusionPipeline does."""
    tokens = tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    )
    mask = tokens.attention_mask.to(text_encoder.device) if getattr(text_encoder.config, "use_attention_mask", False) else None
    return text_encoder(tokens.input_ids.to(text_encoder.device), attention_mask=mask)[0]


class VaeCodec:
    """uint8 frames (F, H, W, 3) <-> scaled latent videos (1, C, F, H/8, W/8), a few frames at a time."""

    def __init__(self, vae, batch_size: int = 8):
        self.vae = vae
        self.batch_size = batch_size
        self.scale = vae.config.scaling_factor
        self.factor = 2 ** (len(vae.config.block_out_channels) - 1)

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> torch.Tensor:
        """Deterministic encoding (the latent distribution's mean), as frames fed to inversion should not be re-noised."""
        dtype = self.vae.dtype
        pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).to(self.vae.device, dtype) / 127.5 - 1.0
        chunks = [self.vae.encode(c).latent_dist.mode() for c in pixels.split(self.batch_size)]
        latents = torch.cat(chunks) * self.scale  # (F, C, h, w)
        return latents.permute(1, 0, 2, 3).unsqueeze(0)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, advance=None) -> np.ndarray:
        """(1, C, F, h, w) -> uint8 (F, H, W, 3); ``advance(n)`` reports frames done."""
        if latents.shape[0] != 1:
            raise ValueError(f"decode expects one video, got a batch of {latents.shape[0]}")
        flat = latents[0].permute(1, 0, 2, 3).to(self.vae.device, self.vae.dtype) / self.scale
        out = []
        for chunk in flat.split(self.batch_size):
            image = self.vae.decode(chunk).sample
            out.append(((image.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu())
            if advance:
                advance(len(chunk))
        return torch.cat(out).numpy()
