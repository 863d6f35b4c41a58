"""Latents between two models: passed as they are within one latent space, transcoded through pixels
between two.

A latent space is declared by each model's spec (:class:`~vsynth.core.host.specs.LatentSpace`) and
held by its codec. Only clean latents cross: a noisy latent of one VAE means nothing to another.
"""

from __future__ import annotations

import torch

from vsynth.core.diffusion.components import VaeCodec


def shares_latents(a: VaeCodec, b: VaeCodec) -> bool:
    """Whether latents of ``a`` are latents of ``b``: one codec, or two of one declared space."""
    return a is b or a.space == b.space


def to_space(latents: torch.Tensor, source: VaeCodec, target: VaeCodec, advance=None) -> torch.Tensor:
    """Clean ``latents`` of ``source`` as latents of ``target``: unchanged in one space, else decoded by
    ``source`` and encoded by ``target`` (the latent distribution's mean), a few frames at a time."""
    if shares_latents(source, target):
        return latents
    frames = source.decode(latents, advance)
    return target.encode(frames).to(latents.dtype)


def codec_record(codecs: dict[str, VaeCodec]) -> dict:
    """run.json's account of each role's codec: its latent space and the frames it encoded and decoded."""
    return {role: {"latent_space": codec.space.name, **codec.passes} for role, codec in codecs.items()}
