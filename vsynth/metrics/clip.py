"""CLIP metrics with transformers' CLIPModel: text alignment (CLIP score) and frame consistency.

The CLIP score is torchmetrics' CLIPScore definition, 100 x max(cosine, 0) of the image and text
embeddings; frame consistency is the cosine x 100 of consecutive frames' image embeddings (the
"CLIP consistency" of the video-editing papers). Weights: a hub id or a folder with the model, its
image processor and tokenizer (``CLIPModel`` / ``CLIPProcessor.from_pretrained``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

BATCH = 16  # frames per CLIP forward pass


@lru_cache(maxsize=2)
def load_clip(source: str, device: str = "cpu"):
    """(model, processor) from a hub id or folder, in eval mode on ``device``."""
    from transformers import CLIPModel, CLIPProcessor

    from vsynth.core.diffusion.components import load

    model = load(CLIPModel, source, what="CLIP").to(device).eval()
    return model, load(CLIPProcessor, source, what="CLIP processor")


def image_embeddings(frames: np.ndarray, model, processor) -> np.ndarray:
    """L2-normalised CLIP image embeddings (F, D) of uint8 (F, H, W, 3) frames."""
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(frames), BATCH):
            inputs = processor(images=list(frames[start : start + BATCH]), return_tensors="pt").to(model.device)
            out.append(_embeds(model.get_image_features(**inputs)))
    return torch.cat(out).cpu().numpy()


def text_embedding(prompt: str, model, processor) -> np.ndarray:
    """L2-normalised CLIP text embedding (D,) of ``prompt`` (truncated to CLIP's 77 tokens)."""
    import torch

    with torch.no_grad():
        inputs = processor(text=[prompt], return_tensors="pt", padding=True, truncation=True).to(model.device)
        return _embeds(model.get_text_features(**inputs))[0].cpu().numpy()


def _embeds(output):
    """transformers 5 returns the projected embeddings as a tensor, or in an output's pooler_output."""
    import torch

    tensor = output if isinstance(output, torch.Tensor) else output.pooler_output
    return torch.nn.functional.normalize(tensor.float(), dim=-1)


def text_alignment(frames: np.ndarray, prompt: str, model, processor) -> np.ndarray:
    """Per-frame CLIP score: 100 x max(cosine(image, text), 0)."""
    scores = image_embeddings(frames, model, processor) @ text_embedding(prompt, model, processor)
    return 100.0 * np.maximum(scores, 0.0)


def frame_consistency(frames: np.ndarray, model, processor) -> np.ndarray:
    """Per pair of consecutive frames: 100 x cosine of their CLIP image embeddings (F - 1 values)."""
    embeds = image_embeddings(frames, model, processor)
    return 100.0 * (embeds[1:] * embeds[:-1]).sum(axis=1)
