"""K of the memory planner's transformer activations: the peak live activation elements of one forward of
Wan's transformer (3 of its blocks at full width), per token and hidden unit, counted on PyTorch's meta device
(nothing is computed or allocated) with attention as a fused kernel that holds only its output, as on a GPU.

    python benchmarks/activation_k.py

Measured on 2026-12-03 (diffusers 0.42.1, torch 2.13.0): 1.3B 23.4 and 22.9 at 1,950 and 17,160 tokens, 14B 19.1
and 14.2; vsynth.core.run.memory takes 24 for every transformer.
"""
import weakref, torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

class Live(TorchDispatchMode):
    def __init__(self):
        super().__init__(); self.live = 0; self.peak = 0; self.seen = set()
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and id(t) not in self.seen:
                n = t.numel() * t.element_size()
                self.live += n; self.seen.add(id(t))
                key = id(t)
                def free(n=n, key=key):
                    self.live -= n; self.seen.discard(key)
                weakref.finalize(t, free)
        self.peak = max(self.peak, self.live)
        return out

import torch.nn.functional as F
def fused(query, key, value, *a, **kw):  # a fused kernel: only the output is held
    q, v = query, value
    return torch.empty(q.shape[:-1] + (v.shape[-1],), device=q.device, dtype=q.dtype)
F.scaled_dot_product_attention = fused
from diffusers import WanTransformer3DModel
base = dict(added_kv_proj_dim=None, attention_head_dim=128, cross_attn_norm=True, eps=1e-6, freq_dim=256, patch_size=[1,2,2], qk_norm="rms_norm_across_heads", text_dim=4096)
for name, cfg in {"1.3b": dict(base, ffn_dim=8960, in_channels=16, out_channels=16, num_attention_heads=12, num_layers=3),
                  "14b": dict(base, ffn_dim=13824, in_channels=16, out_channels=16, num_attention_heads=40, num_layers=3)}.items():
    with torch.device("meta"):
        m = WanTransformer3DModel(**cfg).to(torch.bfloat16)
    for f, h, w in ((5, 30, 52), (11, 60, 104)):
        x = torch.empty(1, 16, f, h, w, device="meta", dtype=torch.bfloat16)
        text = torch.empty(1, 512, 4096, device="meta", dtype=torch.bfloat16)
        t = torch.tensor([500.0], device="meta")
        mode = Live()
        with torch.no_grad(), mode:
            m(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)
        tokens = f * (h // 2) * (w // 2)
        hidden = cfg["num_attention_heads"] * 128
        print(name, f, h, w, "tokens", tokens, "peak MB", mode.peak / 2**20, "K =", round(mode.peak / 2 / (tokens * hidden), 2))
