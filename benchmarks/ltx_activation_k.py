"""Activation figures of LTX-Video for the memory planner, counted on PyTorch's meta device (nothing is computed or
allocated; attention as a fused kernel that holds only its output), from the real configs in vsynth/configs:

- the transformer (3 of its 28 blocks at full width): peak live elements per token and hidden unit (K);
- the VAE decoder over a whole clip, as vsynth decodes it: peak live elements per output pixel and frame.

    python benchmarks/ltx_activation_k.py
"""

import json
import weakref
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

CONFIGS = Path(__file__).parents[1] / "vsynth" / "configs" / "Lightricks__LTX-Video"


class Live(TorchDispatchMode):
    """The peak bytes of tensors alive at once."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                n = t.numel() * t.element_size()
                self.live += n
                weakref.finalize(t, self._free, n)
        self.peak = max(self.peak, self.live)
        return out

    def _free(self, n):
        self.live -= n


def fused(query, key, value, *args, **kwargs):
    return torch.empty(query.shape[:-1] + (value.shape[-1],), device=query.device, dtype=query.dtype)


def config(component):
    return {k: v for k, v in json.loads((CONFIGS / component / "config.json").read_text()).items() if not k.startswith("_")}


def main():
    from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel

    F.scaled_dot_product_attention = fused
    cfg = dict(config("transformer"), num_layers=3)
    with torch.device("meta"):
        transformer = LTXVideoTransformer3DModel(**cfg).to(torch.bfloat16)
        vae = AutoencoderKLLTXVideo(**config("vae")).to(torch.bfloat16)
    hidden = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    for f, h, w in ((5, 16, 22), (21, 15, 22), (33, 15, 22)):
        x = torch.empty(2, f * h * w, 128, device="meta", dtype=torch.bfloat16)  # the classifier-free batch
        text = torch.empty(2, 128, 4096, device="meta", dtype=torch.bfloat16)
        mask = torch.ones(2, 128, device="meta", dtype=torch.bool)
        mode = Live()
        with torch.no_grad(), mode:
            transformer(hidden_states=x, encoder_hidden_states=text, timestep=torch.tensor([500.0, 500.0], device="meta"),
                        encoder_attention_mask=mask, num_frames=f, height=h, width=w, rope_interpolation_scale=(8 / 25, 32, 32),
                        return_dict=False)  # fmt: skip
        tokens = 2 * f * h * w
        print(f"transformer {f}x{h}x{w} latent: {tokens} tokens, peak {mode.peak / 2**20:.0f} MiB, K = {mode.peak / 2 / (tokens * hidden):.2f}")
    for frames, height, width in ((9, 256, 256), (33, 480, 704), (97, 480, 704)):
        z = torch.empty(1, 128, (frames - 1) // 8 + 1, height // 32, width // 32, device="meta", dtype=torch.bfloat16)
        mode = Live()
        with torch.no_grad(), mode:
            vae.decode(z, torch.tensor([0.0], device="meta"), return_dict=False)
        per = mode.peak / 2 / (frames * height * width)
        print(f"vae decode {frames} x {height}x{width}: peak {mode.peak / 2**30:.2f} GiB, {per:.1f} elements per pixel and frame")


if __name__ == "__main__":
    main()
