"""Cross-frame attention (Text2Video-Zero, Rerender-A-Video) on vsynth's ControlNet canny IDM.

Every frame's spatial self-attention takes its keys and values from the first frame of its video,
so the frames an image model generates share appearance (colours, textures, identity) before a
video model smooths them. The SD1.5 UNet's ``attn1`` modules get the processor; cross-attention
to the prompt (``attn2``) and the ControlNet are left as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vsynth.plugins.idm.controlnet import ControlNetCanny, ControlNetDenoiser
from vsynth.plugins.idm.stable_diffusion import FrameDenoiser


class CrossFrameAttnProcessor:
    """Self-attention whose keys and values come from the first frame of each video in the batch.

    A UNet batch holds ``videos`` videos of equal length with their frames consecutive (under
    classifier-free guidance, the unconditional video then the conditional one). ``videos`` is
    per-call state that the denoiser sets before each UNet call: diffusers drops
    ``cross_attention_kwargs`` that a processor does not name, so the state lives here.
    """

    def __init__(self):
        self.videos = 1

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None, temb=None):
        batch, tokens, channels = hidden_states.shape  # (videos * frames, H*W, C)
        frames = batch // self.videos
        first = hidden_states.reshape(self.videos, frames, tokens, channels)[:, :1]  # (videos, 1, H*W, C)

        def first_frame(projection) -> torch.Tensor:
            projected = projection(first)
            return projected.expand(-1, frames, -1, -1).reshape(batch, tokens, projected.shape[-1])

        query, key, value = attn.to_q(hidden_states), first_frame(attn.to_k), first_frame(attn.to_v)
        head_dim = query.shape[-1] // attn.heads
        query, key, value = (x.view(batch, tokens, attn.heads, head_dim).transpose(1, 2) for x in (query, key, value))
        out = F.scaled_dot_product_attention(query, key, value)
        out = out.transpose(1, 2).reshape(batch, tokens, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))  # projection, dropout
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


class CrossFrame:
    """Mixin of frame-folded denoisers whose UNet runs a :class:`CrossFrameAttnProcessor`:
    tells it, before each UNet call, how many videos the batch holds."""

    def __init__(self, *args, attention: CrossFrameAttnProcessor, **kwargs):
        super().__init__(*args, **kwargs)
        self.attention = attention

    def unet_kwargs(self, x, t, embeddings, frames, cond, cfg):
        self.attention.videos = 2 if cfg else 1
        return super().unet_kwargs(x, t, embeddings, frames, cond, cfg)


class CrossFrameControlNetDenoiser(CrossFrame, ControlNetDenoiser):
    pass


class CrossFrameInversionDenoiser(CrossFrame, FrameDenoiser):
    pass


class CrossFrameCanny(ControlNetCanny):
    """ControlNet canny with cross-frame self-attention, for generation and image inversion alike
    (the two denoisers share one UNet)."""

    def __init__(self, spec, params, sd, controlnet, runtime):
        super().__init__(spec, params, sd, controlnet, runtime)
        attention = CrossFrameAttnProcessor()
        for name, module in sd.unet.named_modules():
            if name.endswith(".attn1"):
                module.set_processor(attention)
        self.denoiser = CrossFrameControlNetDenoiser(
            sd, controlnet, params.conditioning_scale, params.batch_size, attention=attention
        )
        self.inversion_denoiser = CrossFrameInversionDenoiser(
            sd.unet, sd.scheduler, sd.tokenizer, sd.text_encoder, params.batch_size, attention=attention
        )
