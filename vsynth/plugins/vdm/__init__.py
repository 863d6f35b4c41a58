"""Built-in video diffusion models (VDMs): specs and params, no torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt

from vsynth import hookimpl
from vsynth.core.host import layouts
from vsynth.core.host.specs import LatentSpace, ModelSpec, VideoParams, WeightsSpec
from vsynth.errors import InvalidParamsError
from vsynth.plugins.idm import SD15


class UNet3DParams(VideoParams):
    decode_batch_size: PositiveInt = Field(8, description="Frames decoded by the VAE at once.")


# Windows default to the clip length each model was trained on.
class ZeroScopeParams(UNet3DParams):
    window: PositiveInt | None = Field(24, description="Frames denoised at once (ZeroScope v2 was trained on 24); longer clips go in overlapping windows.")
    overlap: NonNegativeInt = Field(6, description="Frames neighbouring windows share, at least; below window.")


class ModelScopeParams(UNet3DParams):
    window: PositiveInt | None = Field(16, description="Frames denoised at once (ModelScope was trained on 16); longer clips go in overlapping windows.")


class AnimateDiffParams(VideoParams):
    window: PositiveInt | None = Field(
        16, description="Frames denoised at once (the motion modules were trained on 16, take at most 32); longer clips go in overlapping windows."
    )
    base: str | None = Field(None, description="SD1.5 base or finetune (hub id or directory), e.g. emilianJR/epiCRealism.")
    decode_batch_size: PositiveInt = Field(8, description="Frames decoded by the VAE at once.")


LIGHTNING_FILE = "animatediff_lightning_{steps}step_diffusers.safetensors"
LIGHTNING_STEPS = (1, 2, 4, 8)


class LightningParams(AnimateDiffParams):
    checkpoint_steps: Literal[1, 2, 4, 8] = Field(4, description="Which distilled checkpoint: it samples with exactly this many steps.")

    def sampling(self, steps, guidance, *, shared_steps, shared_guidance):
        """The checkpoint fixes the steps (Euler, trailing spacing) and is distilled for guidance 1.0."""
        if steps is not None and steps != self.checkpoint_steps:
            other = f"use -o checkpoint_steps={steps}" if steps in LIGHTNING_STEPS else "checkpoints exist for 1, 2, 4 and 8 steps"
            raise InvalidParamsError(
                f"animatediff-lightning's {self.checkpoint_steps}-step checkpoint samples with exactly {self.checkpoint_steps} "
                f"steps, not {steps}: {other}, or leave the VDM's steps unset"
            )
        return self.checkpoint_steps, 1.0 if guidance is None else guidance


class WanParams(VideoParams):
    max_sequence_length: PositiveInt = Field(512, le=512, description="Prompt tokens UMT5 encodes (WanPipeline's 512).")

    def sampling(self, steps, guidance, *, shared_steps, shared_guidance):
        """Wan's pipelines default to 50 steps and guidance 5.0 (not SD's 7.5)."""
        guidance = guidance if guidance is not None else shared_guidance
        return super().sampling(steps, WAN_GUIDANCE if guidance is None else guidance, shared_steps=shared_steps, shared_guidance=None)


# Wan 2.2's VAE statistics, as the diffusers conversion script gives them (scripts/convert_wan_to_diffusers.py).
WAN22_LATENTS_MEAN = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098,
    0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502, -0.2055, -0.0322, 0.1109, 0.1567,
    -0.0729, 0.0899, -0.2799, -0.1230, -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748, 0.0152, 0.1957,
    0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
]  # fmt: skip
WAN22_LATENTS_STD = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454,
    0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659, 0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999,
    0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.0600, 0.3943, 0.5537, 0.5444,
    0.4089, 0.7468, 0.7744,
]  # fmt: skip

# Wan 2.1's VAE statistics (AutoencoderKLWan's defaults, as the Wan 2.1 repos ship them).
WAN21_LATENTS_MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517, -0.3632,
                      -0.1922, -0.9497, 0.2503, -0.2921]  # fmt: skip
WAN21_LATENTS_STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579, 1.6382,
                     1.1253, 2.8251, 1.9160]  # fmt: skip

class VaceParams(WanParams):
    control: Literal["canny", "video"] = Field(
        "canny", description="What VACE follows from --video: its canny edges, or the frames themselves (the fill with --mask/--outpaint "
        "always uses the frames; --condition-video gives precomputed maps, e.g. depth or pose)."
    )
    low_threshold: int = Field(100, ge=0, le=255, description="Canny lower hysteresis threshold.")
    high_threshold: int = Field(200, ge=0, le=255, description="Canny upper hysteresis threshold.")
    conditioning_scale: float = Field(1.0, ge=0.0, le=2.0, description="Weight of VACE's control layers (WanVACEPipeline's conditioning_scale).")


WAN_GUIDANCE = 5.0
WAN_IMPL = "vsynth.plugins.vdm.wan:WanVideoModel"
WAN21_LATENTS = LatentSpace(name="wan2.1-vae", channels=16, spatial=8, temporal=4, causal=True, size_multiple=16, scaling=1.0,
                            mean=tuple(WAN21_LATENTS_MEAN), std=tuple(WAN21_LATENTS_STD))  # fmt: skip
WAN22_LATENTS = LatentSpace(name="wan2.2-vae", channels=48, spatial=16, temporal=4, causal=True, size_multiple=32, scaling=1.0,
                            mean=tuple(WAN22_LATENTS_MEAN), std=tuple(WAN22_LATENTS_STD))  # fmt: skip
# (name, hub id, GB in bfloat16 from the parameter counts, tiny stand-in, experts, native (height, width), fps, frames,
#  description)
WAN_MODELS = (
    ("wan2.1-t2v-1.3b", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", 14.7, "wan2.1-t2v", 1, (480, 832), 16, 81,
     "Wan 2.1 text-to-video 1.3B (flow DiT, UMT5-XXL, causal 3D VAE 8x/4x); runs on a consumer GPU."),
    ("wan2.1-t2v-14b", "Wan-AI/Wan2.1-T2V-14B-Diffusers", 40.5, "wan2.1-t2v", 1, (720, 1280), 16, 81,
     "Wan 2.1 text-to-video 14B."),
    ("wan2.2-ti2v-5b", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", 24.2, "wan2.2-ti2v", 1, (704, 1280), 24, 121,
     "Wan 2.2 text(-image)-to-video 5B with its own 16x/4x 48-channel VAE and per-token timesteps."),
    ("wan2.2-t2v-a14b", "Wan-AI/Wan2.2-T2V-A14B-Diffusers", 69.1, "wan2.2-t2v-a14b", 2, (720, 1280), 16, 81,
     "Wan 2.2 text-to-video A14B: a high-noise and a low-noise 14B expert, switched at level 7 (s = 0.875)."),
)  # fmt: skip


WAN_VACE_MODELS = (
    ("wan2.1-vace-1.3b", "Wan-AI/Wan2.1-VACE-1.3B-diffusers", 16.2,
     "Wan 2.1 VACE 1.3B: Wan with control layers, fed the run's canny maps, --condition-video maps, or the source to fill "
     "(--mask, --outpaint): the trained baseline for controllable generation and inpainting."),
    ("wan2.1-vace-14b", "Wan-AI/Wan2.1-VACE-14B-diffusers", 46.6, "Wan 2.1 VACE 14B, as wan2.1-vace-1.3b."),
)  # fmt: skip


UNET3D_IMPL = "vsynth.plugins.vdm.unet3d:UNet3DVideoModel"
MOTION_ADAPTER = WeightsSpec(role="motion_adapter", id="guoyww/animatediff-motion-adapter-v1-5-2", size_gb=1.8, tiny="motion-adapter",
                             files=layouts.diffusers_model())  # fmt: skip
LIGHTNING = WeightsSpec(role="lightning", id="ByteDance/AnimateDiff-Lightning", size_gb=0.9, tiny="animatediff-lightning",
                        files=(LIGHTNING_FILE.replace("{steps}", "{checkpoint_steps}"),))  # fmt: skip


@hookimpl
def vsynth_register_models(registrar):
    registrar.register_model(
        ModelSpec(
            name="zeroscope",
            kind="vdm",
            description="ZeroScope v2 576w text-to-video (UNet3D, OpenCLIP text encoder).",
            weights=(WeightsSpec(role="vdm", id="cerspense/zeroscope_v2_576w", size_gb=3.7, tiny="zeroscope", toy="zeroscope", files=layouts.sd_pipeline()),),
            params=ZeroScopeParams,
            impl=UNET3D_IMPL,
            native_size=(320, 576),
        )
    )
    registrar.register_model(
        ModelSpec(
            name="modelscope",
            kind="vdm",
            description="ModelScope text-to-video 1.7B (UNet3D, OpenCLIP text encoder).",
            weights=(WeightsSpec(role="vdm", id="ali-vilab/text-to-video-ms-1.7b", size_gb=7.3, tiny="modelscope", files=layouts.sd_pipeline()),),
            params=ModelScopeParams,
            impl=UNET3D_IMPL,
            native_size=(256, 256),
        )
    )
    registrar.register_model(
        ModelSpec(
            name="animatediff",
            kind="vdm",
            description="AnimateDiff: SD1.5 (or a finetune, -o base=...) with a motion adapter; shares SD1.5's VAE and text encoder.",
            weights=(MOTION_ADAPTER, SD15),
            params=AnimateDiffParams,
            impl="vsynth.plugins.vdm.animatediff:AnimateDiff",
            native_size=(512, 512),
            max_frames=32,
            sampler="DDIM (linear betas, linspace spacing), 50 steps, guidance 7.5",
        )
    )
    registrar.register_model(
        ModelSpec(
            name="animatediff-lightning",
            kind="vdm",
            description="AnimateDiff-Lightning: a 1/2/4/8-step distilled motion adapter on SD1.5 (or a finetune, -o base=...).",
            weights=(LIGHTNING, SD15),
            params=LightningParams,
            impl="vsynth.plugins.vdm.animatediff:AnimateDiffLightning",
            native_size=(512, 512),
            max_frames=32,
            sampler="Euler (linear betas, trailing spacing), the checkpoint's steps (default 4), guidance 1.0",
            solver="euler",
        )
    )
    for name, hub_id, size, tiny, experts, native, fps, frames, description in WAN_MODELS:
        registrar.register_model(
            ModelSpec(
                name=name,
                kind="vdm",
                description=description,
                weights=(WeightsSpec(role="vdm", id=hub_id, size_gb=size, tiny=tiny, files=layouts.wan_pipeline(experts)),),
                params=WanParams,
                impl=WAN_IMPL,
                native_size=native,
                max_frames=frames,
                fps=fps,
                sampler=f"UniPC on flow sigmas (flow shift {5 if 'ti2v' in name else 3}), 50 steps, guidance 5.0",
                process="flow",
                solver="unipc",
                architecture="transformer",
                latent_space=WAN22_LATENTS if "ti2v" in name else WAN21_LATENTS,
            )
        )
    for name, hub_id, size, description in WAN_VACE_MODELS:
        registrar.register_model(
            ModelSpec(
                name=name,
                kind="vdm",
                description=description,
                weights=(WeightsSpec(role="vdm", id=hub_id, size_gb=size, tiny="wan2.1-vace", files=layouts.wan_pipeline()),),
                params=VaceParams,
                impl="vsynth.plugins.vdm.wan:WanVaceModel",
                accepts=("video", "condition_video", "mask", "outpaint"),
                native_size=(480, 832),
                max_frames=81,
                fps=16,
                sampler="UniPC on flow sigmas (flow shift 3), 50 steps, guidance 5.0",
                process="flow",
                solver="unipc",
                architecture="transformer",
                latent_space=WAN21_LATENTS,
            )
        )
