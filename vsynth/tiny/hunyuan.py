"""Tiny HunyuanVideo: the real diffusers classes and folder layout (HunyuanVideoPipeline) with small configs and
seeded random weights, for offline runs and tests.

What real code depends on is kept: the causal 3D VAE's 8x spatial and 4x temporal compression (1 + 4k
frames) with 16 latent channels and its scaling factor, the transformer's (1, 2, 2) patches, double- and
single-stream blocks, token refiner and guidance embedding, FlowMatchEuler with the checkpoint's shift 7.0,
and the two text encoders: a Llama whose third-to-last hidden states condition the tokens (behind the
pipeline's prompt template, with its special header tokens) and CLIP's pooled output. The Llama tokenizer is
an offline word-level one: the template's words are single tokens, other words are spelled out by letter,
so the template and a prompt fit the pipeline's 95 + 256 tokens.
"""

from __future__ import annotations

from pathlib import Path

SEEDS = {"text_encoder": 1200, "text_encoder_2": 1201, "vae": 1202, "transformer": 1203}

LLAMA_WIDTH, CLIP_WIDTH = 16, 32
_LLAMA = dict(hidden_size=LLAMA_WIDTH, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1,
              max_position_embeddings=512, rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False)  # fmt: skip
_CLIP = dict(hidden_size=CLIP_WIDTH, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=1000,
             max_position_embeddings=77, bos_token_id=512, eos_token_id=513, pad_token_id=513, hidden_act="quick_gelu")  # fmt: skip
_TRANSFORMER = dict(in_channels=16, out_channels=16, num_attention_heads=2, attention_head_dim=12, num_layers=1, num_single_layers=1,
                    num_refiner_layers=1, patch_size=2, patch_size_t=1, guidance_embeds=True, text_embed_dim=LLAMA_WIDTH,
                    pooled_projection_dim=CLIP_WIDTH, rope_axes_dim=(4, 4, 4))  # fmt: skip
_VAE = dict(latent_channels=16, block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4, scaling_factor=0.476986,
            spatial_compression_ratio=8, temporal_compression_ratio=4, mid_block_add_attention=True)  # fmt: skip
SHIFT = 7.0  # the conversion script's FlowMatchEulerDiscreteScheduler(shift=7.0)

TINY_HUNYUAN = {
    "hunyuanvideo": "HunyuanVideoPipeline directory (HunyuanVideoTransformer3D with guidance embedding, 16-channel causal 3D VAE, "
    "Llama 16-d + CLIP 32-d, FlowMatchEuler shift 7)",
}

_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<unk>"]


def llama_tokenizer():
    """A Llama-3-style ``PreTrainedTokenizerFast`` that needs no download: ``<|begin_of_text|>`` before every text,
    the header tokens whole, the prompt template's words as tokens, any other word letter by letter (WordPiece)."""
    import re

    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    template = DEFAULT_PROMPT_TEMPLATE["template"]
    for special in _SPECIAL:
        template = template.replace(special, " ")
    # the real Llama 3 tokenizer gives the template's system part crop_start (95) tokens, so that cropping them leaves the
    # prompt and its closing <|eot_id|> (one token for an empty prompt); spelling "size" out makes this one's 95 too
    words = sorted(set(re.findall(r"\w+", template)) - {"size"})
    chars = [chr(c) for c in range(33, 127)]
    tokens = dict.fromkeys([*_SPECIAL, *chars, *(f"##{c}" for c in chars), *words])  # in order, once each
    vocab = {token: i for i, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="<unk>", max_input_chars_per_word=64))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>",
                                   pad_token="<|end_of_text|>", unk_token="<unk>", model_max_length=1024, padding_side="right")  # fmt: skip
    fast.add_special_tokens({"additional_special_tokens": _SPECIAL[2:5]})
    system = DEFAULT_PROMPT_TEMPLATE["template"].split("{}")[0]
    assert len(fast(system).input_ids) == DEFAULT_PROMPT_TEMPLATE["crop_start"], "the template's system part must be crop_start tokens"
    return fast


def _seeded(name: str, build):
    import torch

    torch.manual_seed(SEEDS[name])
    return build()


def export(name: str, directory: Path, clip_tokenizer) -> None:
    """Write tiny model ``name`` (a key of :data:`TINY_HUNYUAN`) as a HunyuanVideoPipeline folder, with ``clip_tokenizer``
    (vsynth.tiny.build's offline CLIP tokenizer) as its second tokenizer."""
    from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline, HunyuanVideoTransformer3DModel
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    if name not in TINY_HUNYUAN:
        raise KeyError(name)
    tokenizer = llama_tokenizer()
    pipe = HunyuanVideoPipeline(
        text_encoder=_seeded("text_encoder", lambda: LlamaModel(LlamaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                                                               bos_token_id=0, eos_token_id=1, **_LLAMA))),
        tokenizer=tokenizer,
        transformer=_seeded("transformer", lambda: HunyuanVideoTransformer3DModel(**_TRANSFORMER)),
        vae=_seeded("vae", lambda: AutoencoderKLHunyuanVideo(**_VAE)),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=SHIFT),
        text_encoder_2=_seeded("text_encoder_2", lambda: CLIPTextModel(CLIPTextConfig(**_CLIP))),
        tokenizer_2=clip_tokenizer,
    )  # fmt: skip
    pipe.save_pretrained(directory)
