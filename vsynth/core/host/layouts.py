"""The files a set of weights needs, by library layout, for :attr:`WeightsSpec.files`.

Each entry is a path relative to the repo or folder; ``a|b`` means either file will do (a repo
ships safetensors, ``.bin``, or both, and a user may have downloaded only the ``*.fp16.*`` variant). Checked before anything loads
(:func:`vsynth.core.diffusion.weights.locate`), so that a missing file is named in one line
instead of surfacing minutes into loading. Import-light: no torch.
"""

from __future__ import annotations


def _path(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _either(folder: str, *names: str) -> str:
    return "|".join(_path(folder, name) for name in names)


def _weights(folder: str, *names: str) -> str:
    """Any of ``names`` or their fp16 variants (``x.fp16.safetensors``)."""
    variants = [name.replace(".", ".fp16.", 1) for name in names]
    return _either(folder, *names, *variants)


def diffusers_model(folder: str = "") -> tuple[str, ...]:
    """A diffusers model (UNet, VAE, ControlNet, adapter) saved in ``folder`` ('' for the repo root)."""
    return (_path(folder, "config.json"), _weights(folder, "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"))


def transformers_model(folder: str = "") -> tuple[str, ...]:
    """A transformers model (a text encoder, a depth estimator) saved in ``folder``."""
    return (_path(folder, "config.json"), _weights(folder, "model.safetensors", "pytorch_model.bin"))


def clip_tokenizer(folder: str = "tokenizer") -> tuple[str, ...]:
    """A CLIP tokenizer: the hub repos ship vocab.json and merges.txt, transformers 5 saves tokenizer.json."""
    return (_either(folder, "tokenizer.json", "vocab.json"), _either(folder, "tokenizer.json", "merges.txt"))


def sd_pipeline() -> tuple[str, ...]:
    """What vsynth reads of a StableDiffusionPipeline or TextToVideoSDPipeline folder (not its
    scheduler, safety checker or feature extractor)."""
    return (*diffusers_model("unet"), *diffusers_model("vae"), *transformers_model("text_encoder"), *clip_tokenizer())


def sharded(folder: str, name: str) -> str:
    """A weights file, its fp16 variant, or the index of its shards (large transformers and text encoders)."""
    stem, _, suffix = name.rpartition(".")
    return _either(folder, name, name.replace(".", ".fp16.", 1), f"{stem}.{suffix}.index.json")


def wan_pipeline(experts: int = 1) -> tuple[str, ...]:
    """A Wan 2.x diffusers folder: model_index.json (experts, boundary), each transformer (sharded at full size),
    the Wan VAE, the UMT5 text encoder and its tokenizer, and the scheduler."""
    transformers = [f"transformer{'' if i == 0 else f'_{i + 1}'}" for i in range(experts)]
    return (
        "model_index.json",
        *(item for t in transformers for item in (_path(t, "config.json"), sharded(t, "diffusion_pytorch_model.safetensors"))),
        *diffusers_model("vae"),
        _path("text_encoder", "config.json"),
        sharded("text_encoder", "model.safetensors"),
        _either("tokenizer", "tokenizer.json", "spiece.model"),
        _path("scheduler", "scheduler_config.json"),
    )


def cogvideox_pipeline() -> tuple[str, ...]:
    """A CogVideoX diffusers folder: the transformer and T5-XXL (both sharded at full size), the VAE, the T5
    tokenizer and the scheduler (model_index.json names its class)."""
    return (
        "model_index.json",
        _path("transformer", "config.json"),
        sharded("transformer", "diffusion_pytorch_model.safetensors"),
        *diffusers_model("vae"),
        _path("text_encoder", "config.json"),
        sharded("text_encoder", "model.safetensors"),
        _either("tokenizer", "tokenizer.json", "spiece.model"),
        _path("scheduler", "scheduler_config.json"),
    )


def sdxl_pipeline() -> tuple[str, ...]:
    """What vsynth reads of a StableDiffusionXLPipeline folder: the UNet, the VAE and both text encoders with their tokenizers."""
    return (
        *diffusers_model("unet"),
        *diffusers_model("vae"),
        *transformers_model("text_encoder"),
        *transformers_model("text_encoder_2"),
        *clip_tokenizer(),
        *clip_tokenizer("tokenizer_2"),
    )


def flux_pipeline() -> tuple[str, ...]:
    """What vsynth reads of a FLUX pipeline folder (FluxPipeline, FluxControlPipeline, FluxFillPipeline,
    FluxKontextPipeline): the transformer, VAE, CLIP and T5 encoders, both tokenizers and the scheduler."""
    return (
        _path("transformer", "config.json"),
        sharded("transformer", "diffusion_pytorch_model.safetensors"),
        *diffusers_model("vae"),
        *transformers_model("text_encoder"),
        _path("text_encoder_2", "config.json"),
        sharded("text_encoder_2", "model.safetensors"),
        *clip_tokenizer(),
        _path("tokenizer_2", "tokenizer.json"),
        _path("scheduler", "scheduler_config.json"),
    )


def hunyuan_video_pipeline() -> tuple[str, ...]:
    """What vsynth reads of a HunyuanVideoPipeline folder: the transformer (sharded at full size), the 3D VAE, the
    Llama text encoder (sharded) with its tokenizer.json, CLIP's text encoder and tokenizer, and the scheduler."""
    return (
        _path("transformer", "config.json"),
        sharded("transformer", "diffusion_pytorch_model.safetensors"),
        *diffusers_model("vae"),
        _path("text_encoder", "config.json"),
        sharded("text_encoder", "model.safetensors"),
        _path("tokenizer", "tokenizer.json"),
        *transformers_model("text_encoder_2"),
        *clip_tokenizer("tokenizer_2"),
        _path("scheduler", "scheduler_config.json"),
    )
