"""The memory planner's UNet activation figures K (vsynth/core/run/memory.py), measured again (transformers: activation_k.py).

One forward of the real architecture, built from vsynth/configs on PyTorch's meta device (no
memory, no compute), counting the bytes of live tensors at their peak; attention is a fused
kernel that holds its output only, never the attention matrix. K is that peak per latent pixel,
frame and channel of the first block, in float16:

    python benchmarks/activation_k_unet.py --latent 64 128

SD1.5's UNet gives the documented 26.0, which checks the method; SDXL's UNet, with and without
an SDXL ControlNet, is what SDXL_UNET_K bounds.
"""

from __future__ import annotations

import argparse
import json
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

CONFIGS = Path(__file__).parents[1] / "vsynth" / "configs"
MODELS = {  # name: (UNet config, ControlNet config or None, text width, SDXL's added conditions)
    "SD1.5 UNet": ("stable-diffusion-v1-5__stable-diffusion-v1-5/unet", None, 768, False),
    "SD1.5 UNet + ControlNet": ("stable-diffusion-v1-5__stable-diffusion-v1-5/unet", "lllyasviel__control_v11p_sd15_canny", 768, False),
    "SDXL UNet": ("stabilityai__stable-diffusion-xl-base-1.0/unet", None, 2048, True),
    "SDXL UNet + ControlNet": ("stabilityai__stable-diffusion-xl-base-1.0/unet", "diffusers__controlnet-depth-sdxl-1.0", 2048, True),
}


class LiveBytes(TorchDispatchMode):
    """The peak of the bytes held by tensors made inside the mode (views of one storage count once)."""

    def __init__(self):
        super().__init__()
        self.now = self.peak = 0
        self.storages: dict[int, list[int]] = {}  # storage -> [tensors holding it, bytes]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor):
                self._hold(tensor)
        return out

    def _hold(self, tensor: torch.Tensor) -> None:
        key = tensor.untyped_storage()._cdata
        entry = self.storages.setdefault(key, [0, tensor.untyped_storage().nbytes()])
        if entry[0] == 0:
            self.now += entry[1]
            self.peak = max(self.peak, self.now)
        entry[0] += 1
        weakref.finalize(tensor, self._release, key)

    def _release(self, key: int) -> None:
        entry = self.storages[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.now -= entry[1]
            del self.storages[key]


def _fused_attention(q, k, v, *args, **kwargs):
    return q.new_empty((*q.shape[:-1], v.shape[-1]))


def _config(folder: str) -> dict:
    return {k: v for k, v in json.loads((CONFIGS / folder / "config.json").read_text()).items() if not k.startswith("_")}


def measure(unet_folder: str, controlnet_folder: str | None, text_width: int, sdxl: bool, latent: int) -> float:
    from diffusers import ControlNetModel, UNet2DConditionModel

    dtype = torch.float16
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(_config(unet_folder)).to(dtype)
        controlnet = ControlNetModel.from_config(_config(controlnet_folder)).to(dtype) if controlnet_folder else None
        x = torch.randn(1, 4, latent, latent, dtype=dtype)
        text = torch.randn(1, 77, text_width, dtype=dtype)
        control = torch.randn(1, 3, 8 * latent, 8 * latent, dtype=dtype)
        added = {"text_embeds": torch.randn(1, 1280, dtype=dtype), "time_ids": torch.randn(1, 6, dtype=dtype)}
    kwargs = {"added_cond_kwargs": added} if sdxl else {}
    t = torch.tensor(500)
    mode = LiveBytes()
    with torch.no_grad(), mode:
        if controlnet is not None:
            down, mid = controlnet(x, t, encoder_hidden_states=text, controlnet_cond=control, return_dict=False, **kwargs)
            kwargs |= {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        unet(x, t, encoder_hidden_states=text, return_dict=False, **kwargs)
    return mode.peak / (unet.config.block_out_channels[0] * latent * latent * 2)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latent", type=int, nargs="+", default=[64, 96, 128], help="latent sides (pixels / 8)")
    args = parser.parse_args(argv)
    torch.nn.functional.scaled_dot_product_attention = _fused_attention  # diffusers' processors call it through F
    figures = {name: {side: round(measure(*spec, side), 1) for side in args.latent} for name, spec in MODELS.items()}
    print("| network | " + " | ".join(f"{8 * s}x{8 * s}" for s in args.latent) + " |")
    print("|---|" + "---|" * len(args.latent))
    for name, row in figures.items():
        print(f"| {name} | " + " | ".join(f"{k:g}" for k in row.values()) + " |")
    return figures


if __name__ == "__main__":
    main()
