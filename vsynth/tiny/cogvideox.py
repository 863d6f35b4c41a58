"""Tiny CogVideoX models: the real diffusers classes and folder layout (CogVideoXPipeline) with small configs
and seeded random weights, for offline runs and tests.

What real code depends on is kept: the causal 3D VAE's 8x spatial and 4x temporal compression (1 + 4k
frames) with 16 latent channels and the checkpoints' scaling factors (1.15258426 for 2b, 0.7 for 5b),
the transformer's 2x2 patches over 226 text tokens, sin-cos positional embeddings (2b) or 3D rotary
embeddings (5b), and CogVideoXDDIMScheduler's v-prediction on the SNR-shifted, zero-terminal-SNR VP
schedule of the released repos. The text encoder is a tiny T5 with vsynth's offline T5-style tokenizer.
"""

from __future__ import annotations

from pathlib import Path

SEEDS = {"text_encoder": 1200, "vae": 1201, "cogvideox-2b": 1202, "cogvideox-5b": 1203}

TEXT_DIM = 32
# The released scheduler config of both repos (diffusers' scripts/convert_cogvideox_to_diffusers.py).
SCHEDULER = dict(snr_shift_scale=3.0, beta_end=0.012, beta_schedule="scaled_linear", beta_start=0.00085, clip_sample=False,
                 num_train_timesteps=1000, prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True,
                 timestep_spacing="trailing")  # fmt: skip
_T5 = dict(vocab_size=600, d_model=TEXT_DIM, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
           feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True, pad_token_id=0, eos_token_id=1)  # fmt: skip
# sample_height/width: a 64x64 native size in latent pixels; the 226 text tokens and 49 frames of the real ones
_TRANSFORMER = dict(num_attention_heads=2, attention_head_dim=16, in_channels=16, out_channels=16, time_embed_dim=16,
                    text_embed_dim=TEXT_DIM, num_layers=2, sample_width=8, sample_height=8, sample_frames=49, patch_size=2,
                    temporal_compression_ratio=4, max_text_seq_length=226)  # fmt: skip
_VAE = dict(block_out_channels=(8, 8, 8, 8), latent_channels=16, layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4,
            sample_height=64, sample_width=64)  # fmt: skip
SCALING = {"cogvideox-2b": 1.15258426, "cogvideox-5b": 0.7}

# name -> what the folder holds, for vsynth.tiny.TINY_MODELS
TINY_COGVIDEOX = {
    "cogvideox-2b": "CogVideoXPipeline directory (CogVideoXTransformer3D with sin-cos positions, 16-ch causal 3D VAE at 1.15258426, T5 32-d, CogVideoXDDIM v-prediction)",
    "cogvideox-5b": "CogVideoXPipeline directory like cogvideox-2b's, its transformer with 3D rotary embeddings, VAE scaling 0.7",
}


def _seeded(name: str, build):
    import torch

    torch.manual_seed(SEEDS[name])
    return build()


def export(name: str, directory: Path, tokenizer) -> None:
    """Write tiny CogVideoX model ``name`` (a key of :data:`TINY_COGVIDEOX`) as a diffusers pipeline folder, with ``tokenizer``
    (vsynth.tiny.build's offline T5-style one, handed in so that this module does not import build)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    if name not in TINY_COGVIDEOX:
        raise KeyError(name)
    rotary = name == "cogvideox-5b"
    pipe = CogVideoXPipeline(
        tokenizer=tokenizer,
        text_encoder=_seeded("text_encoder", lambda: T5EncoderModel(T5Config(**_T5))),
        vae=_seeded("vae", lambda: AutoencoderKLCogVideoX(**_VAE, scaling_factor=SCALING[name])),
        transformer=_seeded(name, lambda: CogVideoXTransformer3DModel(**_TRANSFORMER, use_rotary_positional_embeddings=rotary)),
        scheduler=CogVideoXDDIMScheduler(**SCHEDULER),
    )
    pipe.save_pretrained(directory)
