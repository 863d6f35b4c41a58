"""Tiny LTX-Video: the real diffusers classes and folder layout (LTXPipeline) with small configs and seeded
random weights, for offline runs and tests.

What real code depends on is kept: the VAE's 32x spatial (4x4 pixel patches, then three 2x stages) and
8x temporal compression of a causal encoder (1 + 8k frames) into 128 channels, with per-channel latent
mean and std (the VAE's ``latents_mean`` / ``latents_std`` buffers, set to non-trivial values here so that
normalizing matters) and a timestep-conditioned decoder (LTX-Video 0.9.1); the transformer's 1x1x1
patches over 128-channel tokens with rotary positions scaled by the frame rate; FlowMatchEuler with the
checkpoint's resolution-dependent shift and terminal stretch. The text encoder is a tiny T5 with vsynth's
offline T5-style tokenizer (``model_max_length`` 128, as LTX-Video's).
"""

from __future__ import annotations

from pathlib import Path

SEEDS = {"text_encoder": 1200, "vae": 1201, "transformer": 1202, "stats": 1203}

TEXT_DIM = 32
LATENT_CHANNELS = 128
_T5 = dict(vocab_size=600, d_model=TEXT_DIM, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
           feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True, pad_token_id=0, eos_token_id=1)  # fmt: skip
_TRANSFORMER = dict(in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, patch_size=1, patch_size_t=1, num_attention_heads=2,
                    attention_head_dim=8, cross_attention_dim=16, num_layers=2, caption_channels=TEXT_DIM)  # fmt: skip
# LTX-Video 0.9.1's VAE layout (diffusers' convert_ltx_to_diffusers.py, version 0.9.1) at small widths, one layer per
# block, and no decoder noise injection (it draws unseeded noise, which would make tiny decodes differ run to run).
_VAE = dict(in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, block_out_channels=(8, 8, 16, 16),
            decoder_block_out_channels=(8, 16, 32), layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1),
            spatio_temporal_scaling=(True, True, True, False), decoder_spatio_temporal_scaling=(True, True, True),
            decoder_inject_noise=(False, False, False, False), upsample_residual=(True, True, True), upsample_factor=(2, 2, 2),
            timestep_conditioning=True, patch_size=4, patch_size_t=1, encoder_causal=True, decoder_causal=False)  # fmt: skip
# The LTX-Video repo's scheduler (convert_ltx_to_diffusers.py): resolution-dependent shift from 0.95 (1024 tokens) to
# 2.05 (4096 tokens), sigmas stretched to end at 0.1.
SCHEDULER = dict(use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05, base_image_seq_len=1024, max_image_seq_len=4096,
                 shift_terminal=0.1)  # fmt: skip

# name -> what the folder holds, for vsynth.tiny.TINY_MODELS
TINY_LTX = {
    "ltx-video": "LTXPipeline directory (LTXVideoTransformer3D, AutoencoderKLLTXVideo 32x/8x 128-ch with latent mean/std "
    "and a timestep-conditioned decoder, T5 32-d, FlowMatchEuler with dynamic shift)",
}


def _seeded(name: str, build):
    import torch

    torch.manual_seed(SEEDS[name])
    return build()


def _vae():
    import torch
    from diffusers import AutoencoderKLLTXVideo

    vae = _seeded("vae", lambda: AutoencoderKLLTXVideo(**_VAE))
    generator = torch.Generator().manual_seed(SEEDS["stats"])
    vae.latents_mean.copy_(0.2 * torch.randn(LATENT_CHANNELS, generator=generator))
    vae.latents_std.copy_(0.5 + torch.rand(LATENT_CHANNELS, generator=generator))
    return vae


def export(name: str, directory: Path, tokenizer) -> None:
    """Write tiny model ``name`` (a key of :data:`TINY_LTX`) as a diffusers pipeline folder, with ``tokenizer`` (vsynth's
    offline T5-style one, which vsynth.tiny.build makes)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, LTXPipeline, LTXVideoTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    if name != "ltx-video":
        raise KeyError(name)
    tokenizer.model_max_length = 128
    pipe = LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER),
        vae=_vae(),
        text_encoder=_seeded("text_encoder", lambda: T5EncoderModel(T5Config(**_T5))),
        tokenizer=tokenizer,
        transformer=_seeded("transformer", lambda: LTXVideoTransformer3DModel(**_TRANSFORMER)),
    )
    pipe.save_pretrained(directory)
