"""Tiny Wan 2.x models: the real diffusers classes and folder layouts (WanPipeline, WanVACEPipeline) with
small configs and seeded random weights, for offline runs and tests.

What real code depends on is kept: the causal 3D VAE's 8x spatial and 4x temporal compression
(1 + 4k frames) with per-channel latent mean and std (Wan 2.1's 16 channels; Wan 2.2's 48 channels,
16x spatial through its 2x2 patchified residual VAE), the transformer's (1, 2, 2) patches, UniPC
with flow sigmas and the checkpoints' flow shifts, two experts switched at a boundary (A14B),
per-token timesteps (TI2V) and VACE's control layers. The text encoder is a tiny UMT5 with an
offline character-level tokenizer.
"""

from __future__ import annotations

from pathlib import Path

from vsynth.plugins.vdm.wan_latents import WAN22_LATENTS_MEAN, WAN22_LATENTS_STD

SEEDS = {"text_encoder": 1100, "vae": 1101, "transformer": 1102, "transformer_2": 1103, "vae22": 1104, "ti2v": 1105, "vace": 1106}

TEXT_DIM = 16
_UMT5 = dict(d_model=TEXT_DIM, d_kv=8, d_ff=32, num_layers=2, num_heads=2, relative_attention_num_buckets=8,
             relative_attention_max_distance=16, feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
             decoder_start_token_id=0, is_encoder_decoder=False)  # fmt: skip
_TRANSFORMER = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
                    text_dim=TEXT_DIM, freq_dim=16, ffn_dim=32, num_layers=2, cross_attn_norm=True,
                    qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=64)  # fmt: skip
_VAE21 = dict(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True])
_VAE22 = dict(base_dim=8, decoder_base_dim=8, z_dim=48, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True],
              is_residual=True, in_channels=12, out_channels=12, patch_size=2, scale_factor_temporal=4, scale_factor_spatial=16,
              latents_mean=WAN22_LATENTS_MEAN, latents_std=WAN22_LATENTS_STD)  # fmt: skip

# name -> what the folder holds, for vsynth.tiny.TINY_MODELS
TINY_WAN = {
    "wan2.1-t2v": "WanPipeline directory (WanTransformer3DModel, AutoencoderKLWan 16-ch, UMT5 16-d, UniPC flow shift 3)",
    "wan2.2-ti2v": "WanPipeline directory with Wan 2.2's 48-channel 16x VAE and per-token timesteps (expand_timesteps), shift 5",
    "wan2.2-t2v-a14b": "WanPipeline directory with two experts (transformer, transformer_2) switched at boundary_ratio 0.875",
    "wan2.1-vace": "WanVACEPipeline directory (WanVACETransformer3DModel with control layers 0 and 1, 96 control channels)",
}


def _seeded(name: str, build):
    import torch

    torch.manual_seed(SEEDS[name])
    return build()


def umt5_tokenizer():
    """A character-level tokenizer with T5's special ids (pad 0, eos 1, unk 2) that needs no download."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = [chr(c) for c in range(32, 127)]
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{c: i + 3 for i, c in enumerate(chars)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=512)


def _text_encoder():
    from transformers import UMT5Config, UMT5EncoderModel

    return _seeded("text_encoder", lambda: UMT5EncoderModel(UMT5Config(vocab_size=3 + 95, **_UMT5)))


def _transformer(seed: str, **changes):
    from diffusers import WanTransformer3DModel

    return _seeded(seed, lambda: WanTransformer3DModel(**{**_TRANSFORMER, **changes}))


def _scheduler(shift: float):
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=shift)


def _vae(name: str, config: dict):
    from diffusers import AutoencoderKLWan

    return _seeded(name, lambda: AutoencoderKLWan(**config))


def export(name: str, directory: Path) -> None:
    """Write tiny Wan model ``name`` (a key of :data:`TINY_WAN`) as a diffusers pipeline folder."""
    from diffusers import WanPipeline, WanVACEPipeline, WanVACETransformer3DModel

    common = dict(tokenizer=umt5_tokenizer(), text_encoder=_text_encoder())
    if name == "wan2.1-t2v":
        pipe = WanPipeline(**common, vae=_vae("vae", _VAE21), scheduler=_scheduler(3.0), transformer=_transformer("transformer"))
    elif name == "wan2.2-ti2v":
        transformer = _transformer("ti2v", in_channels=48, out_channels=48)
        pipe = WanPipeline(**common, vae=_vae("vae22", _VAE22), scheduler=_scheduler(5.0), transformer=transformer, expand_timesteps=True)
    elif name == "wan2.2-t2v-a14b":
        pipe = WanPipeline(**common, vae=_vae("vae", _VAE21), scheduler=_scheduler(3.0), transformer=_transformer("transformer"),
                           transformer_2=_transformer("transformer_2"), boundary_ratio=0.875)  # fmt: skip
    elif name == "wan2.1-vace":
        transformer = _seeded("vace", lambda: WanVACETransformer3DModel(**_TRANSFORMER, vace_layers=[0, 1], vace_in_channels=96))
        pipe = WanVACEPipeline(**common, vae=_vae("vae", _VAE21), scheduler=_scheduler(3.0), transformer=transformer)
    else:
        raise KeyError(name)
    pipe.save_pretrained(directory)
