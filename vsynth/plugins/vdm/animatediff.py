"""AnimateDiff and AnimateDiff-Lightning: SD1.5 (or a finetune) with motion modules; AnimateDiff-SDXL: SDXL with its own.

The motion UNet is built from the SD1.5 base and a MotionAdapter, as AnimateDiffPipeline builds it,
on the base's own weight tensors. It shares SD1.5's VAE and text encoder, and wants text
embeddings per frame. AnimateDiff-SDXL does the same on SDXL base (AnimateDiffSDXLPipeline), with
SDXL's two text encoders and added conditions.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vsynth.core.diffusion.components import VaeCodec, load
from vsynth.core.diffusion.models import VideoModel
from vsynth.errors import VsynthInputError
from vsynth.plugins.idm.sdxl import SDXL, SDXLConditions
from vsynth.plugins.idm.stable_diffusion import SD15
from vsynth.plugins.vdm import LIGHTNING_FILE
from vsynth.plugins.vdm.unet3d import ClipDenoiser


def motion_unet(unet, adapter):
    """``UNetMotionModel.from_unet2d(unet, adapter)`` holding ``unet``'s and ``adapter``'s own tensors, not copies.

    Its 2D weights are then those of any SD1.5-based image model of the run on the same files and
    dtype (see :func:`~vsynth.core.diffusion.components.load`): one SD1.5 UNet in memory, not two
    (3.4 GB in float32). The motion UNet's state dict is the UNet's and the adapter's, key for key.
    """
    from diffusers import UNetMotionModel

    if adapter.config.get("conv_in_channels"):  # PIA-style adapters bring a wider conv_in: diffusers merges it
        return UNetMotionModel.from_unet2d(unet, adapter)
    with torch.device("meta"):  # no memory for weights about to be replaced
        motion = UNetMotionModel.from_unet2d(unet, adapter, load_weights=False)
    motion.load_state_dict({**unet.state_dict(keep_vars=True), **adapter.state_dict(keep_vars=True)}, strict=True, assign=True)
    return motion.eval()


class MotionDenoiser(ClipDenoiser):
    """UNetMotionModel wants text embeddings per frame: (B*F, L, D), as AnimateDiffPipeline repeats them."""

    def frame_embeddings(self, embeddings: torch.Tensor, frames: int) -> torch.Tensor:
        return embeddings.repeat_interleave(frames, dim=0)


class AnimateDiff(VideoModel):
    """AnimateDiff with DDIM as its authors recommend for diffusers: linear betas, linspace spacing."""

    @staticmethod
    def scheduler(sd: SD15):
        from diffusers import DDIMScheduler

        return DDIMScheduler.from_config(
            sd.scheduler.config, beta_schedule="linear", clip_sample=False, timestep_spacing="linspace", steps_offset=1
        )

    @classmethod
    def load_adapter(cls, source: str, params, runtime):
        from diffusers import MotionAdapter

        return load(MotionAdapter, source, what="motion adapter", torch_dtype=runtime.dtype)

    @classmethod
    def load(cls, spec, params, sources, runtime):
        sd = SD15.load(sources["base"], runtime)
        adapter = cls.load_adapter(sources[spec.weights[0].role], params, runtime)
        unet = motion_unet(sd.unet, adapter).to(runtime.home, runtime.dtype)
        model = cls(spec, params)
        model.denoiser = MotionDenoiser(unet, cls.scheduler(sd), sd.tokenizer, sd.text_encoder)
        model.codec = VaeCodec(sd.vae, params.decode_batch_size)
        return model


class AnimateDiffLightning(AnimateDiff):
    """ByteDance's distilled checkpoints: Euler with trailing spacing, the checkpoint's step count."""

    @staticmethod
    def scheduler(sd: SD15):
        from diffusers import EulerDiscreteScheduler

        return EulerDiscreteScheduler.from_config(sd.scheduler.config, timestep_spacing="trailing", beta_schedule="linear")

    @classmethod
    def load_adapter(cls, source: str, params, runtime):
        """From a checkpoint file, a folder holding the hub repo's files, or the hub repo itself.

        The hub repo ships no config.json (its checkpoints fit MotionAdapter's defaults); a
        config.json beside the checkpoint, in a folder or a cached snapshot, gives another shape.
        """
        from accelerate import init_empty_weights
        from diffusers import MotionAdapter
        from safetensors.torch import load_file

        filename = LIGHTNING_FILE.format(steps=params.checkpoint_steps)
        path = Path(source)
        if path.is_dir():
            path = path / filename
            if not path.is_file():
                raise VsynthInputError(f"{source} has no {filename}: download it, or pick another -o checkpoint_steps")
        elif not path.is_file():
            from vsynth.core.diffusion.weights import hub_file

            path = Path(hub_file(source, filename))  # the cache, else the hub if reachable: one line when neither
        config_file = path.parent / "config.json"
        config = {}
        if config_file.is_file():
            config = {k: v for k, v in json.loads(config_file.read_text()).items() if not k.startswith("_")}
        with init_empty_weights():  # no memory, no random init: every parameter is the checkpoint's, cast where needed
            adapter = MotionAdapter(**config)
        adapter.load_state_dict({k: v.to(runtime.dtype) for k, v in load_file(str(path)).items()}, strict=True, assign=True)
        return adapter.to(runtime.dtype)  # buffers built with the module


class SDXLMotionDenoiser(SDXLConditions, MotionDenoiser):
    """AnimateDiff-SDXL's motion UNet over whole clips, conditioned as AnimateDiffSDXLPipeline conditions it: both
    text encoders' states per frame, the pooled embedding and the size ids once per clip (the UNet repeats them)."""

    def __init__(self, unet, scheduler, sdxl):
        super().__init__(unet, scheduler, sdxl.tokenizer, sdxl.text_encoder)
        self._take_text(sdxl)

    def unet_kwargs(self, latents: torch.Tensor, cond, cfg: bool) -> dict:
        return {"added_cond_kwargs": self.added_conditions(latents, cond, cfg)}


class AnimateDiffSDXL(AnimateDiff):
    """guoyww's SDXL motion adapter (beta) on SDXL base or a finetune, with DDIM as diffusers' example samples it
    (SDXL's training schedule with linear betas, linspace spacing). Its UNet holds the tensors of the SDXL UNet
    that an SDXL image model of the run loads (one SDXL UNet in memory, not two), its VAE and text encoders are
    that model's too: its latents are SDXL's, so Mixed Inversion mixes both inversions with SDXL IDMs."""

    @staticmethod
    def scheduler(sdxl):
        from diffusers import DDIMScheduler

        from vsynth.core.diffusion.schedules import SDXL_EULER

        # from the repo's scheduler config, as DDIMScheduler.from_pretrained(SDXL base, subfolder="scheduler", ...) reads it
        return DDIMScheduler.from_config(SDXL_EULER, beta_schedule="linear", clip_sample=False, timestep_spacing="linspace", steps_offset=1)

    @classmethod
    def load(cls, spec, params, sources, runtime):
        sdxl = SDXL.load(sources["base"], runtime)
        adapter = cls.load_adapter(sources[spec.weights[0].role], params, runtime)
        unet = motion_unet(sdxl.unet, adapter).to(runtime.home, runtime.dtype)
        model = cls(spec, params)
        model.denoiser = model.motion = SDXLMotionDenoiser(unet, cls.scheduler(sdxl), sdxl)  # motion: unwrapped by windows
        model.codec = VaeCodec(sdxl.vae, params.decode_batch_size)
        return model

    def offload_units(self) -> dict[str, list[torch.nn.Module]]:
        """The second text encoder is a unit of its own for ``--offload model``, after the first."""
        units = super().offload_units()
        first = list(units).index("text_encoder") + 1
        items = list(units.items())
        return dict(items[:first] + [("text_encoder_2", [self.motion.text_encoder_2])] + items[first:])
