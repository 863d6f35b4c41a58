"""LoRAs for the tiny models, made with peft and saved as diffusers' ``save_lora_weights`` saves them: for tests and
benchmarks of ``--idm-lora`` / ``--vdm-lora`` offline (``write_tiny_lora("wan2.1-t2v", folder)``)."""

from __future__ import annotations

from pathlib import Path

# tiny model -> (network class, subfolder, pipeline class that saves its LoRAs, save_lora_weights' keyword)
NETWORKS = {
    "wan2.1-t2v": ("WanTransformer3DModel", "transformer", "WanPipeline", "transformer_lora_layers"),
    "sd15": ("UNet2DConditionModel", "unet", "StableDiffusionPipeline", "unet_lora_layers"),
    "flux-dev": ("FluxTransformer2DModel", "transformer", "FluxPipeline", "transformer_lora_layers"),
}
TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def write_tiny_lora(tiny: str, folder: str | Path, rank: int = 4, seed: int = 0) -> Path:
    """A rank-``rank`` LoRA on the attention projections of tiny model ``tiny``'s network, with random non-zero
    matrices (peft's ``init_lora_weights=False``: it changes the output), written to ``folder``; returns the file."""
    import diffusers
    import torch
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from vsynth.tiny import tiny_weights

    network_class, subfolder, pipeline, keyword = NETWORKS[tiny]
    network = getattr(diffusers, network_class).from_pretrained(tiny_weights(tiny), subfolder=subfolder)
    torch.manual_seed(seed)
    network.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(TARGETS), init_lora_weights=False))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    getattr(diffusers, pipeline).save_lora_weights(folder, **{keyword: get_peft_model_state_dict(network)})
    return folder / "pytorch_lora_weights.safetensors"
