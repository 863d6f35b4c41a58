"""Selective Feature Injection (EVS, CVPR 2025): self-attention features recorded during an inversion
and injected during the denoising that follows.

During the inversion the chosen self-attention layers record their Q, K, V per timestep; during
denoising they attend with ``Attn(gamma * Q_inv + (1 - gamma) * Q, K_inv, V_inv)`` (EVS eq. 11),
the features recorded at the same timestep. A windowed VDM calls the UNet once per window at each
timestep, so features are keyed by (timestep, call within that timestep): each window gets its own.
The processors keep this per-run state themselves (diffusers drops ``cross_attention_kwargs`` a
processor does not name), and a forward pre-hook on the UNet tells them the key of every call.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator, Literal

import torch
import torch.nn.functional as F

# Spatial self-attention of the transformer blocks; the temporal layers (``temp_attentions``,
# ``transformer_in``, ``motion_modules``) and cross-attention (``attn2``) do not match.
SPATIAL_SELF_ATTENTION = re.compile(r"^(down_blocks\.\d+|mid_block|up_blocks\.\d+)\.attentions\.\d+\.transformer_blocks\.\d+\.attn1$")

Layers = Literal["deep", "shallow", "all"]


def spatial_self_attention(unet: torch.nn.Module) -> list[str]:
    """Names of the UNet's spatial self-attention modules, in module order (UNet3D and UNetMotionModel alike)."""
    return [name for name, _ in unet.named_modules() if SPATIAL_SELF_ATTENTION.match(name)]


def select_layers(unet: torch.nn.Module, layers: Layers) -> list[str]:
    """``deep``: the first half (rounded up) of the decoder's spatial self-attention layers, the lowest
    resolutions; ``shallow``: the rest of the decoder's; ``all``: every spatial self-attention layer,
    encoder, middle and decoder (the paper's upper limit of reconstruction)."""
    names = spatial_self_attention(unet)
    if layers == "all":
        return names
    decoder = [name for name in names if name.startswith("up_blocks.")]
    half = (len(decoder) + 1) // 2
    return decoder[:half] if layers == "deep" else decoder[half:]


@contextmanager
def attention_processors(assignments: dict[torch.nn.Module, object]) -> Iterator[None]:
    """Each Attention module gets its processor for the block; the originals come back after, even on error."""
    originals = {module: module.processor for module in assignments}
    for module, processor in assignments.items():
        module.set_processor(processor)
    try:
        yield
    finally:
        for module, processor in originals.items():
            module.set_processor(processor)


class InjectionProcessor:
    """A transformer block's self-attention that records its Q, K, V per (timestep, call) (mode ``record``)
    or attends with the ones recorded at the same (timestep, call) (mode ``inject``).

    Recorded tensors are (frames, tokens, channels) from an unguided inversion. A guided batch holds
    the unconditional frames, then the conditional ones: both halves get the same recorded features.
    """

    def __init__(self, gamma: float):
        self.gamma = gamma
        self.mode: Literal["record", "inject"] = "record"
        self.timestep: float | None = None
        self.call = 0  # UNet calls before this one at the same timestep: the window, for a windowed VDM
        self.recorded: dict[tuple[float, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None, temb=None):
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("InjectionProcessor is for unmasked self-attention (a transformer block's attn1)")
        batch = hidden_states.shape[0]  # (frames, tokens, channels), doubled under guidance
        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        at = (self.timestep, self.call)
        if self.mode == "record":
            self.recorded[at] = (query, key, value)
        else:
            if at not in self.recorded:
                raise RuntimeError(f"no self-attention features were recorded at timestep {self.timestep} (UNet call {self.call} there)")
            q_inv, key, value = (x.repeat(batch // x.shape[0], 1, 1) for x in self.recorded[at])
            query = self.gamma * q_inv + (1 - self.gamma) * query
        head_dim = query.shape[-1] // attn.heads
        query, key, value = (x.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for x in (query, key, value))
        out = F.scaled_dot_product_attention(query, key, value)  # as diffusers' AttnProcessor2_0
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))  # projection, dropout
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


class FeatureInjection:
    """Injection processors on the named attention modules of a UNet, for the length of a ``with`` block.

    ``processors`` maps each named module to its processor. The original processors are put back on exit.
    """

    def __init__(self, unet: torch.nn.Module, layers: list[str], gamma: float):
        modules = dict(unet.named_modules())
        self.unet = unet
        self.modules = {name: modules[name] for name in layers}
        self.processors = {name: InjectionProcessor(gamma) for name in layers}
        self._last: float | None = None  # timestep of the previous UNet call in this mode
        self._call = 0

    def __enter__(self) -> FeatureInjection:
        self._swap = attention_processors({module: self.processors[name] for name, module in self.modules.items()})
        self._swap.__enter__()
        self._hook = self.unet.register_forward_pre_hook(self._set_timestep, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        self._hook.remove()
        self._swap.__exit__(*exc)

    def _set_timestep(self, _module, args, kwargs) -> None:
        timestep = float(args[1] if len(args) > 1 else kwargs["timestep"])
        self._call = self._call + 1 if timestep == self._last else 0
        self._last = timestep
        for processor in self.processors.values():
            processor.timestep, processor.call = timestep, self._call

    def set_mode(self, mode: Literal["record", "inject"]) -> None:
        """Record or inject from the next UNet call on; calls are counted afresh (the inversion ends at the
        timestep the denoising starts at)."""
        self._last = None
        for processor in self.processors.values():
            processor.mode = mode
