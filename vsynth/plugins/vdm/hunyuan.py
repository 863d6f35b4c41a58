"""HunyuanVideo (HunyuanVideoPipeline): a 13B rectified-flow DiT with an LLM text encoder, as a VDM.

The transformer predicts the velocity noise - x0 over the latents of a causal 3D VAE (8x in space, 4x in
time: 1 + 4k frames, 16 channels, scaled by 0.476986), sampled with FlowMatchEuler on the pipeline's sigmas
``linspace(1, 0, N + 1)[:-1]`` shifted by the checkpoint's 7.0. It is guidance-distilled: ``--guidance``
is the value of its guidance embedding (default 6.0), one transformer call per step and no negative prompt.
The text conditions are a Llama's third-to-last hidden states of the prompt inside the pipeline's template
(the template's tokens cropped off, with their attention mask) and CLIP-L's pooled output. Everything is
done as the diffusers pipeline does it, so that a seed gives its latents.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

from vsynth.core.diffusion.components import VaeCodec, load
from vsynth.core.diffusion.denoiser import Denoiser
from vsynth.core.diffusion.inputs import Conditioning
from vsynth.core.diffusion.models import VideoModel
from vsynth.core.diffusion.offload import execution_device
from vsynth.core.diffusion.processes import FLOW
from vsynth.plugins.vdm.wan import WanCodec


class HunyuanCodec(WanCodec):
    """uint8 frames (F, H, W, 3) <-> latents (1, 16, 1 + (F - 1) / 4, H / 8, W / 8) through AutoencoderKLHunyuanVideo:
    the whole clip at once (the VAE is causal over time), scaled by its ``scaling_factor`` (no per-channel statistics)."""

    def __init__(self, vae, space=None):
        VaeCodec.__init__(self, vae, batch_size=1, space=space)
        self.factor = vae.config.spatial_compression_ratio
        self.temporal = vae.config.temporal_compression_ratio
        self.channels = vae.config.latent_channels
        self.scale = vae.config.scaling_factor

    def _stats(self, device, dtype):
        """Mean 0 and std 1 / scaling: WanCodec's normalisation becomes the plain scaling of HunyuanVideoPipeline."""
        return torch.zeros((), device=device, dtype=dtype), torch.tensor(1.0 / self.scale, device=device, dtype=dtype)


class HunyuanDenoiser(Denoiser):
    """HunyuanVideoTransformer3DModel over whole clips; ``cond.text`` holds the Llama states (1, L, D),
    ``cond.extras`` their attention mask and CLIP's pooled embedding."""

    frame_folded = False
    declared_process = FLOW

    def __init__(self, transformer, scheduler, tokenizer, text_encoder, tokenizer_2, text_encoder_2, max_sequence_length: int = 256):
        super().__init__(transformer, scheduler, tokenizer, text_encoder)
        self.tokenizer_2 = tokenizer_2
        self.text_encoder_2 = text_encoder_2
        self.max_sequence_length = max_sequence_length
        self.prompts: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # each prompt is encoded once

    def set_timesteps(self, scheduler, steps: int) -> None:
        """HunyuanVideoPipeline's sigmas linspace(1, 0, N + 1)[:-1] (unless the solver makes its own flow sigmas)."""
        if "sigmas" in inspect.signature(scheduler.set_timesteps).parameters and not scheduler.config.get("use_flow_sigmas", False):
            scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, steps + 1)[:-1], device=self.device)
        else:
            scheduler.set_timesteps(steps, device=self.device)

    @torch.no_grad()
    def encode_prompts(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(1, max_sequence_length, D) Llama states and their mask (1, max_sequence_length), (1, P) CLIP's pooled output,
        as HunyuanVideoPipeline.encode_prompt with its default template."""
        if prompt not in self.prompts:
            from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE

            template, crop = DEFAULT_PROMPT_TEMPLATE["template"], DEFAULT_PROMPT_TEMPLATE["crop_start"]
            tokens = self.tokenizer([template.format(prompt)], max_length=self.max_sequence_length + crop, padding="max_length",
                                    truncation=True, return_tensors="pt", return_attention_mask=True)  # fmt: skip
            device = execution_device(self.text_encoder)
            mask = tokens.attention_mask.to(device)
            states = self.text_encoder(input_ids=tokens.input_ids.to(device), attention_mask=mask, output_hidden_states=True).hidden_states[-3]
            clip = self.tokenizer_2([prompt], padding="max_length", max_length=77, truncation=True, return_tensors="pt")
            pooled = self.text_encoder_2(clip.input_ids.to(execution_device(self.text_encoder_2)), output_hidden_states=False).pooler_output
            self.prompts[prompt] = (states[:, crop:].to(self.dtype), mask[:, crop:].to(self.dtype), pooled.to(self.dtype))
        return tuple(t.to(self.device) for t in self.prompts[prompt])

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        return self.encode_prompts(prompt)[0]

    def condition(self, prompt: str, negative_prompt: str | None = None, **extras) -> Conditioning:
        """The prompt's embeddings; the negative prompt is not used: HunyuanVideo's guidance is distilled."""
        text, mask, pooled = self.encode_prompts(prompt)
        return Conditioning(text=text, extras={"mask": mask, "pooled": pooled, **extras})

    def release_text_encoders(self) -> None:
        """Move the Llama (about 15 GB in float16) and CLIP off the GPU once the run's prompts are encoded, as Wan releases UMT5."""
        moved = False
        for encoder in (self.text_encoder, self.text_encoder_2):
            parameter = next(encoder.parameters(), None)
            if parameter is not None and parameter.device.type == "cuda" and execution_device(encoder) == parameter.device:
                encoder.to("cpu")
                moved = True
        if moved:
            torch.cuda.empty_cache()

    @torch.no_grad()
    def predict(self, latents: torch.Tensor, t, cond: Conditioning, guidance: float) -> torch.Tensor:
        model = self.unet
        b = latents.shape[0]
        timestep = torch.as_tensor(t, device=latents.device).expand(b).to(torch.float32)
        embedded = torch.tensor([guidance] * b, dtype=model.dtype, device=latents.device) * 1000.0  # as the pipeline builds it
        return model(
            latents.to(model.dtype),  # positional, as a UNet's sample: run.json's evaluation counter reads the first argument
            timestep=timestep,
            encoder_hidden_states=cond.text.to(model.dtype).expand(b, -1, -1),
            encoder_attention_mask=cond.extras["mask"].to(model.dtype).expand(b, -1),
            pooled_projections=cond.extras["pooled"].to(model.dtype).expand(b, -1),
            guidance=embedded,
            return_dict=False,
        )[0]


class HunyuanVideoModel(VideoModel):
    """A HunyuanVideoPipeline folder: transformer, vae, text_encoder (Llama) and tokenizer, text_encoder_2 (CLIP) and
    tokenizer_2, scheduler."""

    @classmethod
    def load(cls, spec, params, sources, runtime):
        from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoTransformer3DModel
        from transformers import CLIPTextModel, CLIPTokenizer, LlamaModel, PreTrainedTokenizerFast

        from vsynth.plugins.idm.flux import offline_folder

        # the transformer and the Llama are sharded: diffusers asks the hub for their file list unless read from a folder
        source, what, kw = offline_folder(sources["vdm"]), spec.name, {"torch_dtype": runtime.dtype}
        model = cls(spec, params)
        model.denoiser = model.hunyuan = HunyuanDenoiser(  # hunyuan: unwrapped by windows
            load(HunyuanVideoTransformer3DModel, source, what=what, subfolder="transformer", **kw).to(runtime.home),
            load(FlowMatchEulerDiscreteScheduler, source, what=what, subfolder="scheduler"),
            # its tokenizer.json, read as it is (Llama 3's tokenizer class is PreTrainedTokenizerFast)
            load(PreTrainedTokenizerFast, source, what=what, subfolder="tokenizer"),
            load(LlamaModel, source, what=what, share=True, subfolder="text_encoder", **kw).to(runtime.home),
            load(CLIPTokenizer, source, what=what, subfolder="tokenizer_2"),
            load(CLIPTextModel, source, what=what, share=True, subfolder="text_encoder_2", **kw).to(runtime.home),
            max_sequence_length=params.max_sequence_length,
        )
        vae = load(AutoencoderKLHunyuanVideo, source, what=what, share=True, subfolder="vae", **kw).to(runtime.home)
        model.codec = HunyuanCodec(vae)
        return model

    def offload_units(self) -> dict[str, list[torch.nn.Module]]:
        """CLIP is a unit of its own for ``--offload model``, after the Llama."""
        units = super().offload_units()
        first = list(units).index("text_encoder") + 1
        items = list(units.items())
        return dict(items[:first] + [("text_encoder_2", [self.hunyuan.text_encoder_2])] + items[first:])

    def configure(self, inputs) -> None:
        """Encode the run's prompts now and release the text encoders from the GPU before any transformer call."""
        for prompt in {inputs.prompt, inputs.negative_prompt or ""}:  # the negative one: a bridge may invert with it
            self.hunyuan.encode_prompts(prompt)
        self.hunyuan.release_text_encoders()
