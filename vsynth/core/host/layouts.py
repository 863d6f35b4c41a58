"""The files a set of weights needs, by library layout, for :attr:`WeightsSpec.files`.

Each entry is a path relative to the repo or folder; ``a|b`` means either file will do (a repo
ships safetensors, ``.bin``, or both). Checked before anything loads
(:func:`vsynth.core.diffusion.weights.locate`), so that a missing file is named in one line
instead of surfacing minutes into loading. Import-light: no torch.
"""

from __future__ import annotations


def _path(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _either(folder: str, *names: str) -> str:
    return "|".join(_path(folder, name) for name in names)


def diffusers_model(folder: str = "") -> tuple[str, ...]:
    """A diffusers model (UNet, VAE, ControlNet, adapter) saved in ``folder`` ('' for the repo root)."""
    return (_path(folder, "config.json"), _either(folder, "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"))


def transformers_model(folder: str = "") -> tuple[str, ...]:
    """A transformers model (a text encoder, a depth estimator) saved in ``folder``."""
    return (_path(folder, "config.json"), _either(folder, "model.safetensors", "pytorch_model.bin"))


def clip_tokenizer(folder: str = "tokenizer") -> tuple[str, ...]:
    """A CLIP tokenizer: the hub repos ship vocab.json and merges.txt, transformers 5 saves tokenizer.json."""
    return (_either(folder, "tokenizer.json", "vocab.json"), _either(folder, "tokenizer.json", "merges.txt"))


def sd_pipeline() -> tuple[str, ...]:
    """What vsynth reads of a StableDiffusionPipeline or TextToVideoSDPipeline folder (not its
    scheduler, safety checker or feature extractor)."""
    return (*diffusers_model("unet"), *diffusers_model("vae"), *transformers_model("text_encoder"), *clip_tokenizer())
