"""Tiny random-weight networks of the built-in metrics (CLIP, RAFT), for offline runs and tests.

CLIP keeps the real classes and folder layout (CLIPModel, CLIPProcessor: image processor and the
offline character-level tokenizer), small and seeded; RAFT is torchvision's raft_small with seeded
random weights, saved as model.safetensors beside a config.json naming the architecture.
"""

from __future__ import annotations

import json
from pathlib import Path

SEEDS = {"clip": 1200, "raft": 1201}
IMAGE_SIZE = 32

# name -> what the folder holds, for vsynth.tiny.TINY_MODELS
TINY_METRICS = {
    "clip": "CLIPModel directory (vision 32x32 patches of 8, text 32-d, projection 16) + CLIPProcessor, offline tokenizer",
    "raft": "torchvision raft_small with seeded random weights: model.safetensors + config.json {arch}",
}


def export(name: str, directory: Path, tokenizer=None) -> None:
    """Write tiny network ``name`` into ``directory``; CLIP's ``tokenizer`` is vsynth.tiny's offline one."""
    import torch

    torch.manual_seed(SEEDS[name])
    if name == "clip":
        from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

        config = CLIPConfig(
            text_config=dict(vocab_size=514, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                             max_position_embeddings=77, bos_token_id=512, eos_token_id=513, pad_token_id=513),
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=IMAGE_SIZE, patch_size=8),
            projection_dim=16,
        )  # fmt: skip
        model = CLIPModel(config)
        with torch.no_grad():  # a shared offset and projection: cosines around 0.5, not clamped to 0 half the time
            model.vision_model.post_layernorm.bias.fill_(1.0)
            model.text_model.final_layer_norm.bias.fill_(1.0)
            model.text_projection.weight.copy_(model.visual_projection.weight)
        model.save_pretrained(directory)
        processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
        CLIPProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(directory)
    elif name == "raft":
        from safetensors.torch import save_file

        from vsynth.metrics.flow import import_torchvision

        if import_torchvision() is None:
            raise ModuleNotFoundError("the tiny RAFT needs torchvision: pip install torchvision (the version paired with your torch)")
        from torchvision.models.optical_flow import raft_small

        save_file({k: v.contiguous() for k, v in raft_small(weights=None).state_dict().items()}, str(directory / "model.safetensors"))
        (directory / "config.json").write_text(json.dumps({"arch": "raft_small"}) + "\n")
    else:
        raise KeyError(name)
