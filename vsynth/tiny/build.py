"""Offline tiny models for every model family vsynth uses.

Each tiny model is written as a diffusers/transformers-format directory (``save_pretrained``) so that
vsynth's real loading code (``from_pretrained(directory, subfolder=...)``) runs unchanged in tests and
demos, without network access.  The architectures are the real families (SD1.5 UNet + KL-f8 VAE + CLIP
text encoder, ControlNet, DPT, ZeroScope's UNet3D) with small configs; the weights are random but
deterministic: every component is built right after ``torch.manual_seed(<its fixed seed>)``, so two
exports are byte-identical on any machine with the same torch version.

Properties that real code depends on are kept on purpose:

* one shared latent space: a 4-block ``AutoencoderKL`` (scale factor 8, ``scaling_factor=0.18215``),
  saved with the same config and the same weights by "sd15" and "zeroscope", as in reality;
* the two text encoders have different widths (32 vs 48, like 768 vs 1024), so code that feeds one
  model the other's prompt embeddings fails loudly;
* SDXL ("sdxl") has a VAE of its own (same architecture, its own weights, ``scaling_factor=0.13025``):
  another latent space, as in reality, so runs with an SD-space VDM really transcode through pixels;
* ControlNets are initialised so that the control image measurably changes the result (see
  ``_export_controlnet``); a faithfully initialised random ControlNet is a no-op, and tests about
  control could not fail.

torch/diffusers/transformers are imported inside functions so ``TINY_MODELS`` can be listed cheaply.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

from vsynth.core.diffusion.schedules import SD15_DDIM, SDXL_EULER
from vsynth.core.media.outputs import PARTIAL_MARKER, create_partial, output_folder, partial_path, remove_debris
from vsynth.errors import OutputExistsError
from vsynth.tiny.cache import cache_base, cache_errors, intact, write_manifest
from vsynth.tiny.cogvideox import TINY_COGVIDEOX
from vsynth.tiny.cogvideox import export as export_cogvideox
from vsynth.tiny.hunyuan import TINY_HUNYUAN
from vsynth.tiny.hunyuan import export as export_hunyuan
from vsynth.tiny.ltx import TINY_LTX
from vsynth.tiny.ltx import export as export_ltx
from vsynth.tiny.metrics import TINY_METRICS
from vsynth.tiny.metrics import export as export_metric
from vsynth.tiny.wan import TINY_WAN
from vsynth.tiny.wan import export as export_wan

TINY_FORMAT = "9"  # bump when a config, a seed or the cache layout changes: it is part of the cache path

TINY_MODELS: dict[str, str] = {
    "sd15": "StableDiffusionPipeline directory (UNet2DCondition, KL-f8 VAE, CLIP text 32-d, DDIM)",
    "controlnet-canny": "ControlNetModel matching the sd15 UNet (canny edges control)",
    "controlnet-depth": "ControlNetModel matching the sd15 UNet (depth map control)",
    "depth-estimator": "DPTForDepthEstimation (tiny ViT backbone) + DPT image processor, 64x64 input",
    "zeroscope": "TextToVideoSDPipeline directory (UNet3DCondition, sd15's VAE, CLIP text 48-d, DDIM)",
    "modelscope": "TextToVideoSDPipeline directory like zeroscope's, with other UNet and text-encoder weights",
    "motion-adapter": "MotionAdapter matching the sd15 UNet (AnimateDiff's motion modules), 32-frame window",
    "animatediff-lightning": "AnimateDiff-Lightning repo layout: animatediff_lightning_{1,2,4,8}step_diffusers.safetensors",
    "controlnet-openpose": "ControlNetModel matching the sd15 UNet (pose control)",
    "sd15-adapter-base": "sd15 with cross-attention in the UNet's first block, where T2I-Adapter features enter",
    "t2i-adapter-canny": "T2IAdapter (full, 1-channel input like the canny sd15v2) for sd15-adapter-base",
    "t2i-adapter-depth": "T2IAdapter (full, 3-channel input like the depth sd15v2) for sd15-adapter-base",
    "instruct-pix2pix": "StableDiffusionInstructPix2PixPipeline directory: sd15 with an 8-channel UNet input",
    "sd15-inpaint": "StableDiffusionInpaintPipeline directory: sd15 with a 9-channel UNet input",
    **TINY_WAN,
    "sdxl": "StableDiffusionXLPipeline directory (text_time UNet, two CLIP texts 32-d + 48-d with projection, own VAE at 0.13025, Euler)",
    "controlnet-sdxl-canny": "ControlNetModel matching the sdxl UNet (canny edges control, text_time conditioning)",
    "controlnet-sdxl-depth": "ControlNetModel matching the sdxl UNet (depth map control, text_time conditioning)",
    "flux-dev": "FluxPipeline directory (FluxTransformer2D with guidance embedding, 16-channel VAE, CLIP + T5 32-d)",
    "flux-schnell": "FluxPipeline directory like flux-dev's, its transformer without guidance embedding",
    "flux-canny": "FluxControlPipeline directory: flux-dev with a 128-channel transformer input (latents + control latents)",
    "flux-depth": "FluxControlPipeline directory like flux-canny's, other transformer weights",
    "flux-fill": "FluxFillPipeline directory: flux-dev with a 384-channel transformer input (latents + masked image + mask)",
    "flux-kontext": "FluxKontextPipeline directory: flux-dev's layout, other transformer weights",
    **TINY_LTX,
    "motion-adapter-sdxl": "MotionAdapter matching the sdxl UNet (AnimateDiff-SDXL's motion modules, no mid block), 32-frame window",
    **TINY_HUNYUAN,
    **TINY_COGVIDEOX,
    **TINY_METRICS,
}

# One fixed seed per component; the VAE seed is shared so sd15 and zeroscope get identical VAEs.
_SEEDS = {
    "vae": 1000,
    "sd15.unet": 1001,
    "sd15.text_encoder": 1002,
    "controlnet-canny": 1003,
    "controlnet-depth": 1004,
    "depth-estimator": 1005,
    "zeroscope.unet": 1006,
    "flux.vae": 1040,
    "flux.text_encoder": 1041,
    "flux.text_encoder_2": 1042,
    "flux-dev.transformer": 1043,
    "flux-schnell.transformer": 1044,
    "flux-canny.transformer": 1045,
    "flux-depth.transformer": 1046,
    "flux-fill.transformer": 1047,
    "flux-kontext.transformer": 1048,
    "zeroscope.text_encoder": 1007,
    "modelscope.unet": 1008,
    "modelscope.text_encoder": 1009,
    "motion-adapter": 1010,
    "animatediff-lightning": 1011,  # + the checkpoint's step count
    "controlnet-openpose": 1020,
    "sd15-adapter-base.unet": 1021,
    "t2i-adapter-canny": 1022,
    "t2i-adapter-depth": 1023,
    "instruct-pix2pix.unet": 1024,
    "sd15-inpaint.unet": 1025,
    "sdxl.vae": 1030,
    "sdxl.unet": 1031,
    "sdxl.text_encoder": 1032,
    "sdxl.text_encoder_2": 1033,
    "controlnet-sdxl-canny": 1034,
    "controlnet-sdxl-depth": 1035,
    "motion-adapter-sdxl": 1036,
}

_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(8, 16, 32, 32),  # 4 blocks -> 3 downsamplings -> scale factor 8
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=64,
    scaling_factor=0.18215,
)

# The UNets are sized for CPU speed: tiny ops make them op-count bound, so they get one layer per
# block, and attention only at the lower resolution (as in diffusers' own tiny test configs), since
# full-resolution attention dominated the forward time.
#
# Shared by the sd15 UNet and both ControlNets (a ControlNet must mirror its UNet's encoder).
_UNET2D_COMMON = dict(
    in_channels=4,
    block_out_channels=(16, 32),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    cross_attention_dim=32,
    attention_head_dim=4,  # UNet2D reads this as the number of heads (diffusers' historical naming)
    norm_num_groups=8,
)

_UNET2D = dict(
    _UNET2D_COMMON,
    out_channels=4,
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    sample_size=8,
)

# Real SD1.5 has cross-attention in its first three down blocks; T2I-Adapter adds its features inside
# them, before they downsample. This layout keeps that property at two blocks.
_UNET2D_ADAPTER_BASE = dict(
    _UNET2D,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
)

# T2I-Adapter: pixel-unshuffle by 8 (the VAE factor), then one feature map per UNet down block.
_T2I_ADAPTER = dict(channels=_UNET2D_COMMON["block_out_channels"], num_res_blocks=1, downscale_factor=8, adapter_type="full_adapter")

_CONTROLNET = dict(
    _UNET2D_COMMON,
    conditioning_channels=3,
    conditioning_embedding_out_channels=(8, 16, 32, 32),  # 3 stride-2 convs: pixels -> latent grid
)

# SDXL: its own VAE (SD's architecture, other weights, scaling 0.13025, upcast in float16); a UNet whose
# cross-attention takes both text encoders' states side by side (32 + 48 = 80, like 768 + 1280), with
# text_time added conditions (the pooled 48-d projection and six size ids of 8-d embeddings each, like
# 1280 + 6 * 256) and, as SDXL, no attention in its first block and deeper transformers further down.
_SDXL_VAE = dict(_VAE, scaling_factor=0.13025, force_upcast=True)
_SDXL_TEXT_2_WIDTH = 48
_UNET2D_SDXL_COMMON = dict(
    in_channels=4,
    block_out_channels=(16, 32),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    cross_attention_dim=32 + _SDXL_TEXT_2_WIDTH,
    attention_head_dim=(2, 4),  # heads per block, as SDXL's (5, 10, 20)
    transformer_layers_per_block=(1, 2),
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=6 * 8 + _SDXL_TEXT_2_WIDTH,
    norm_num_groups=8,
)
_UNET2D_SDXL = dict(_UNET2D_SDXL_COMMON, out_channels=4, up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), sample_size=8)
_CONTROLNET_SDXL = dict(_UNET2D_SDXL_COMMON, conditioning_channels=3, conditioning_embedding_out_channels=(8, 16, 32, 32))

_UNET3D = dict(
    in_channels=4,
    out_channels=4,
    block_out_channels=(16, 32),
    layers_per_block=1,
    down_block_types=("DownBlock3D", "CrossAttnDownBlock3D"),
    up_block_types=("CrossAttnUpBlock3D", "UpBlock3D"),
    cross_attention_dim=48,
    attention_head_dim=8,  # UNet3D reads this as the per-head width: 4 heads at 32 channels
    norm_num_groups=8,
    sample_size=8,
)
def tiny_t5_tokenizer():
    """A character-level T5-style tokenizer that needs no download (``PreTrainedTokenizerFast``).

    T5's special tokens where T5 has them (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2), then one token per
    byte-level symbol (a Unigram model of single characters, SentencePiece's ``▁`` word marker),
    and ``</s>`` appended to every sequence, as T5's tokenizer does; 512 tokens at most.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = ["▁", *(s for s in bytes_to_unicode().values() if s != "▁")]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(s, -1.0) for s in symbols]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=_T5_MAX_LENGTH
    )



# AnimateDiff's motion modules sit in every block of the sd15 UNet, so widths and depth must match it.
_MOTION_ADAPTER = dict(
    block_out_channels=_UNET2D_COMMON["block_out_channels"],
    motion_layers_per_block=_UNET2D_COMMON["layers_per_block"],
    motion_num_attention_heads=2,
    motion_norm_num_groups=8,
    motion_max_seq_length=32,
)
LIGHTNING_STEPS = (1, 2, 4, 8)
# AnimateDiff-SDXL's adapter: the sdxl UNet's widths and depth, no motion mid block (as guoyww's SDXL beta)
_MOTION_ADAPTER_SDXL = dict(_MOTION_ADAPTER, block_out_channels=_UNET2D_SDXL_COMMON["block_out_channels"],
                            motion_layers_per_block=_UNET2D_SDXL_COMMON["layers_per_block"], use_motion_mid_block=False)  # fmt: skip

_CLIP_TEXT_COMMON = dict(
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=37,
    vocab_size=1000,
    max_position_embeddings=77,
    bos_token_id=512,  # "<|startoftext|>" in tiny_tokenizer()
    eos_token_id=513,  # "<|endoftext|>"
    pad_token_id=513,
)
_SD15_TEXT = dict(_CLIP_TEXT_COMMON, hidden_size=32, hidden_act="quick_gelu")  # like openai CLIP-L
_ZEROSCOPE_TEXT = dict(_CLIP_TEXT_COMMON, hidden_size=48, hidden_act="gelu")  # like OpenCLIP-H
_SDXL_TEXT_2 = dict(_CLIP_TEXT_COMMON, hidden_size=_SDXL_TEXT_2_WIDTH, hidden_act="gelu", projection_dim=_SDXL_TEXT_2_WIDTH)  # like OpenCLIP-bigG

# FLUX.1: the real VAE has 16 latent channels, no quant convs, scaling 0.3611 and shift 0.1159; the
# transformer packs 2x2 latent patches into 64-channel tokens (control: 128, fill: 384 input channels,
# 64 out), with RoPE axes summing to its head width, CLIP's pooled width and T5's width as inputs.
_FLUX_VAE = dict(_VAE, latent_channels=16, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)
_FLUX_TRANSFORMER = dict(
    patch_size=1,
    in_channels=64,
    out_channels=None,
    num_layers=1,
    num_single_layers=1,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=32,  # T5's width (4096 for real)
    pooled_projection_dim=32,  # CLIP's width (768 for real)
    guidance_embeds=True,
    axes_dims_rope=(4, 4, 8),
)
_FLUX_CLIP_TEXT = dict(_CLIP_TEXT_COMMON, hidden_size=32, hidden_act="quick_gelu")
_T5_TEXT = dict(vocab_size=600, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
                feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True, pad_token_id=0, eos_token_id=1)  # fmt: skip
_FLUX_SCHEDULER = dict(
    num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
    base_image_seq_len=256, max_image_seq_len=4096,
)  # fmt: skip
_FLUX_SCHNELL_SCHEDULER = dict(_FLUX_SCHEDULER, shift=1.0, use_dynamic_shifting=False)
_T5_MAX_LENGTH = 512



_DPT = dict(
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=37,
    image_size=64,
    patch_size=16,  # like DPT-large: the neck + head upsample 16x back to the input size
    is_hybrid=False,
    backbone_out_indices=[0, 1, 2, 3],
    neck_hidden_sizes=[8, 16, 32, 32],
    fusion_hidden_size=16,
)
_DPT_PROCESSOR = dict(size={"height": 64, "width": 64}, keep_aspect_ratio=False)


def tiny_tokenizer(pad_token: str = "<|endoftext|>"):
    """A character-level CLIPTokenizer that needs no download.

    The vocabulary is CLIP's own layout without merges: the 256 byte-level symbols, the same with the
    end-of-word suffix ``</w>``, then ``<|startoftext|>`` (512) and ``<|endoftext|>`` (513). SDXL's second
    tokenizer pads with ``"!"``, as its real one does.
    """
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        vocab = {token: i for i, token in enumerate(tokens)}
        Path(tmp, "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), "utf-8")
        Path(tmp, "merges.txt").write_text("#version: 0.2\n", "utf-8")
        return CLIPTokenizer.from_pretrained(tmp, model_max_length=77, pad_token=pad_token)


def _seeded(component: str, cls, **config):
    """Construct ``cls(**config)`` right after seeding torch, so its random weights are reproducible."""
    import torch

    torch.manual_seed(_SEEDS[component])
    return cls(**config)


def _vae():
    from diffusers import AutoencoderKL

    return _seeded("vae", AutoencoderKL, **_VAE)


def _clip_text(component: str, config: dict):
    from transformers import CLIPTextConfig, CLIPTextModel

    return _seeded(component, CLIPTextModel, config=CLIPTextConfig(**config))


def _ddim():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SD15_DDIM)


def _export_sd15(directory: Path) -> None:
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    pipe = StableDiffusionPipeline(
        vae=_vae(),
        text_encoder=_clip_text("sd15.text_encoder", _SD15_TEXT),
        tokenizer=tiny_tokenizer(),
        unet=_seeded("sd15.unet", UNet2DConditionModel, **_UNET2D),
        scheduler=_ddim(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(directory)


def _export_sd15_variant(name: str, directory: Path, pipeline: str, **unet_changes) -> None:
    """sd15 with another UNet (its own seed) in another pipeline's layout; the VAE and text encoder are sd15's."""
    import diffusers
    from diffusers import UNet2DConditionModel

    pipe = getattr(diffusers, pipeline)(
        vae=_vae(),
        text_encoder=_clip_text("sd15.text_encoder", _SD15_TEXT),
        tokenizer=tiny_tokenizer(),
        unet=_seeded(f"{name}.unet", UNet2DConditionModel, **{**_UNET2D, **unet_changes}),
        scheduler=_ddim(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(directory)


def _export_t2i_adapter(name: str, directory: Path, in_channels: int) -> None:
    from diffusers import T2IAdapter

    _seeded(name, T2IAdapter, in_channels=in_channels, **_T2I_ADAPTER).save_pretrained(directory)


def _export_controlnet(name: str, directory: Path, config: dict = _CONTROLNET) -> None:
    """Save a ControlNet whose output really depends on the control image.

    A real ControlNet starts with zero convolutions (conditioning ``conv_out``, ``controlnet_down_blocks``,
    ``controlnet_mid_block``) and learns the rest; untrained, it would be an exact no-op.  So the zero
    convolutions get small random values, and the conditioning embedding gets He initialisation: with
    PyTorch's default init its seven conv+SiLU layers shrink the image signal about 10^4-fold, and two
    different control images would give the same output to ~1e-5.
    """
    import torch
    from diffusers import ControlNetModel

    controlnet = _seeded(name, ControlNetModel, **config)
    embedding = controlnet.controlnet_cond_embedding
    zero_convs = [embedding.conv_out, *controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]
    with torch.no_grad():
        for conv in [embedding.conv_in, *embedding.blocks]:
            torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            torch.nn.init.zeros_(conv.bias)
        for conv in zero_convs:
            torch.nn.init.normal_(conv.weight, std=0.05)
            torch.nn.init.normal_(conv.bias, std=0.05)
    controlnet.save_pretrained(directory)


def _export_sdxl(directory: Path) -> None:
    """SDXL base's layout: two text encoders and tokenizers, its own VAE, Euler (model_index.json keeps
    ``force_zeros_for_empty_prompt``: an empty negative prompt is a zero embedding, as for the real one)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    pipe = StableDiffusionXLPipeline(
        vae=_seeded("sdxl.vae", AutoencoderKL, **_SDXL_VAE),
        text_encoder=_clip_text("sdxl.text_encoder", _SD15_TEXT),
        text_encoder_2=_seeded("sdxl.text_encoder_2", CLIPTextModelWithProjection, config=CLIPTextConfig(**_SDXL_TEXT_2)),
        tokenizer=tiny_tokenizer(),
        tokenizer_2=tiny_tokenizer(pad_token="!"),
        unet=_seeded("sdxl.unet", UNet2DConditionModel, **_UNET2D_SDXL),
        scheduler=EulerDiscreteScheduler.from_config(SDXL_EULER),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipe.save_pretrained(directory)


def _export_depth_estimator(directory: Path) -> None:
    """Save a DPT whose depth really varies with the image.

    With default init the neck and the ReLU head shrink the signal to ~1e-9, a flat map that no
    normalisation can tell apart from noise; He initialisation of their convolutions keeps it O(1).
    """
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    model = _seeded("depth-estimator", DPTForDepthEstimation, config=DPTConfig(**_DPT))
    with torch.no_grad():
        for module in [*model.neck.modules(), *model.head.modules()]:
            if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    torch.nn.init.zeros_(module.bias)
    model.save_pretrained(directory)
    DPTImageProcessor(**_DPT_PROCESSOR).save_pretrained(directory)


def _export_text_to_video(name: str, directory: Path) -> None:
    """ZeroScope and ModelScope share the layout and architecture; only their weights differ."""
    from diffusers import TextToVideoSDPipeline, UNet3DConditionModel

    pipe = TextToVideoSDPipeline(
        vae=_vae(),
        text_encoder=_clip_text(f"{name}.text_encoder", _ZEROSCOPE_TEXT),
        tokenizer=tiny_tokenizer(),
        unet=_seeded(f"{name}.unet", UNet3DConditionModel, **_UNET3D),
        scheduler=_ddim(),
    )
    pipe.save_pretrained(directory)


def _random_motion_adapter(seed_name: str, offset: int = 0, config: dict = _MOTION_ADAPTER):
    """A MotionAdapter whose output projections are not zero, so the motion modules really act.

    Like ControlNet's zero convs, AnimateDiff's temporal transformers start with zero ``proj_out``;
    an untrained tiny adapter would be an exact no-op and motion could not be tested.
    """
    import torch
    from diffusers import MotionAdapter

    torch.manual_seed(_SEEDS[seed_name] + offset)
    adapter = MotionAdapter(**config)
    with torch.no_grad():
        for name, param in adapter.named_parameters():
            if "proj_out" in name:
                torch.nn.init.normal_(param, std=0.05)
    return adapter


def _export_motion_adapter(directory: Path) -> None:
    _random_motion_adapter("motion-adapter").save_pretrained(directory)


def _export_lightning(directory: Path) -> None:
    """The hub repo's layout: one safetensors per step count, and a config.json for the tiny adapter's shape
    (the real repo has none: its checkpoints fit MotionAdapter's default config)."""
    from safetensors.torch import save_file

    for steps in LIGHTNING_STEPS:
        adapter = _random_motion_adapter("animatediff-lightning", steps)
        state = {k: v.contiguous() for k, v in adapter.state_dict().items()}
        save_file(state, str(directory / f"animatediff_lightning_{steps}step_diffusers.safetensors"))
    (directory / "config.json").write_text(json.dumps(dict(adapter.config), indent=2))


def _flux_transformer(name: str, **changes):
    """A tiny FluxTransformer2DModel of the family's layout, with its own seed and input width."""
    from diffusers import FluxTransformer2DModel

    return _seeded(f"{name}.transformer", FluxTransformer2DModel, **{**_FLUX_TRANSFORMER, **changes})


def _export_flux(name: str, directory: Path, pipeline: str, scheduler: dict | None = None, **transformer_changes) -> None:
    """A FLUX pipeline folder: the shared tiny VAE and text encoders, a transformer of its own seed, and the
    real repo's scheduler config (schnell's has no resolution shift)."""
    import diffusers
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler
    from transformers import T5Config, T5EncoderModel

    pipe = getattr(diffusers, pipeline)(
        scheduler=FlowMatchEulerDiscreteScheduler(**(scheduler or _FLUX_SCHEDULER)),
        vae=_seeded("flux.vae", AutoencoderKL, **_FLUX_VAE),
        text_encoder=_clip_text("flux.text_encoder", _FLUX_CLIP_TEXT),
        tokenizer=tiny_tokenizer(),
        text_encoder_2=_seeded("flux.text_encoder_2", T5EncoderModel, config=T5Config(**_T5_TEXT)),
        tokenizer_2=tiny_t5_tokenizer(),
        transformer=_flux_transformer(name, **transformer_changes),
    )
    pipe.save_pretrained(directory)


def export(name: str, directory: str | Path) -> Path:
    """Write tiny model ``name`` as a loadable directory at ``directory`` (created) and return it."""
    exporters = {
        "sd15": _export_sd15,
        "controlnet-canny": lambda d: _export_controlnet("controlnet-canny", d),
        "controlnet-depth": lambda d: _export_controlnet("controlnet-depth", d),
        "depth-estimator": _export_depth_estimator,
        "zeroscope": lambda d: _export_text_to_video("zeroscope", d),
        "modelscope": lambda d: _export_text_to_video("modelscope", d),
        "motion-adapter": _export_motion_adapter,
        "animatediff-lightning": _export_lightning,
        "controlnet-openpose": lambda d: _export_controlnet("controlnet-openpose", d),
        "sd15-adapter-base": lambda d: _export_sd15_variant(
            "sd15-adapter-base", d, "StableDiffusionPipeline", down_block_types=_UNET2D_ADAPTER_BASE["down_block_types"],
            up_block_types=_UNET2D_ADAPTER_BASE["up_block_types"],
        ),  # fmt: skip
        "t2i-adapter-canny": lambda d: _export_t2i_adapter("t2i-adapter-canny", d, in_channels=1),
        "t2i-adapter-depth": lambda d: _export_t2i_adapter("t2i-adapter-depth", d, in_channels=3),
        "instruct-pix2pix": lambda d: _export_sd15_variant("instruct-pix2pix", d, "StableDiffusionInstructPix2PixPipeline", in_channels=8),
        "sd15-inpaint": lambda d: _export_sd15_variant("sd15-inpaint", d, "StableDiffusionInpaintPipeline", in_channels=9),
        "flux-dev": lambda d: _export_flux("flux-dev", d, "FluxPipeline"),
        "flux-schnell": lambda d: _export_flux("flux-schnell", d, "FluxPipeline", _FLUX_SCHNELL_SCHEDULER, guidance_embeds=False),
        "flux-canny": lambda d: _export_flux("flux-canny", d, "FluxControlPipeline", in_channels=128, out_channels=64),
        "flux-depth": lambda d: _export_flux("flux-depth", d, "FluxControlPipeline", in_channels=128, out_channels=64),
        "flux-fill": lambda d: _export_flux("flux-fill", d, "FluxFillPipeline", in_channels=384, out_channels=64),
        "flux-kontext": lambda d: _export_flux("flux-kontext", d, "FluxKontextPipeline"),
        **{name: (lambda d, name=name: export_wan(name, d)) for name in TINY_WAN},
        "sdxl": _export_sdxl,
        "controlnet-sdxl-canny": lambda d: _export_controlnet("controlnet-sdxl-canny", d, _CONTROLNET_SDXL),
        "controlnet-sdxl-depth": lambda d: _export_controlnet("controlnet-sdxl-depth", d, _CONTROLNET_SDXL),
        **{name: (lambda d, name=name: export_ltx(name, d, tiny_t5_tokenizer())) for name in TINY_LTX},
        "motion-adapter-sdxl": lambda d: _random_motion_adapter("motion-adapter-sdxl", config=_MOTION_ADAPTER_SDXL).save_pretrained(d),
        **{name: (lambda d, name=name: export_hunyuan(name, d, tiny_tokenizer())) for name in TINY_HUNYUAN},
        **{name: (lambda d, name=name: export_cogvideox(name, d, tiny_t5_tokenizer())) for name in TINY_COGVIDEOX},
        **{name: (lambda d, name=name: export_metric(name, d, tiny_tokenizer())) for name in TINY_METRICS},
    }
    if name not in exporters:
        raise KeyError(f"unknown tiny model {name!r}; available: {', '.join(TINY_MODELS)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    exporters[name](directory)
    return directory


def export_all(directory: str | Path) -> dict[str, Path]:
    """Export every tiny model to ``directory/<name>``: a new or empty folder, which appears whole or not at
    all (it is written as a partial folder beside it, removed on Ctrl-C or any error, and renamed into place)."""
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise OutputExistsError(f"{directory} already exists and is not empty: export into a new or empty folder")
    with output_folder(directory, exact=True) as out:
        for name in TINY_MODELS:
            export(name, out.partial / name)
    return {name: out.final / name for name in TINY_MODELS}


def _cache_root() -> Path:
    return cache_base() / "tiny" / f"v{TINY_FORMAT}"


@contextmanager
def _no_progress_bars():
    """Saving shows transformers' shard-writing bars: noise for models of a few hundred KB."""
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()


_verified: set[Path] = set()
_building = threading.Lock()


@cache_errors
def tiny_weights(name: str) -> Path:
    """Path of tiny model ``name`` in the cache (``$VSYNTH_CACHE/tiny/v{TINY_FORMAT}/{name}``), built once,
    checked against its manifest once per process and rebuilt when damaged.

    The model is exported into a partial sibling folder (``.NAME.vsynth-partial-PID``, marked as vsynth's)
    and renamed into place, so a crash never leaves a half-written model and concurrent builders cannot
    corrupt each other: the first rename wins and the loser uses the winner's copy. What a killed build
    left is removed by the next build (only vsynth's own partial folders, of dead processes).
    """
    if name not in TINY_MODELS:
        raise KeyError(f"unknown tiny model {name!r}; available: {', '.join(TINY_MODELS)}")
    target = _cache_root() / name
    if target.is_dir():
        if target in _verified or intact(target):
            _verified.add(target)
            return target
        logging.getLogger("vsynth").warning("the cached tiny model %s is damaged (its files differ from its manifest): rebuilding it", target)
        damaged = target.with_name(f".{name}.damaged-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):  # another process moved it first
            os.rename(target, damaged)  # out of the way at once
        shutil.rmtree(damaged, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_debris(target.parent)
    staging = partial_path(target)
    with _building:  # the partial folder is named by the process: one build at a time in it
        create_partial(staging)
        try:
            with _no_progress_bars():
                export(name, staging)
            (staging / PARTIAL_MARKER).unlink()
            write_manifest(staging)
            try:
                os.rename(staging, target)
            except OSError:
                if not target.is_dir():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target
