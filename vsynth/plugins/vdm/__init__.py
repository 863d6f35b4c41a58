"""Built-in video diffusion models (VDMs): specs and params, no torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from vsynth import hookimpl
from vsynth.core.host import layouts
from vsynth.core.host.specs import LatentSpace, ModelSpec, VideoParams, WeightsSpec
from vsynth.errors import InvalidParamsError
from vsynth.plugins.idm import SD15
from vsynth.plugins.vdm.wan_latents import WAN21_LATENTS_MEAN, WAN21_LATENTS_STD, WAN22_LATENTS_MEAN, WAN22_LATENTS_STD


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


class TI2VParams(WanParams):
    first_frame: Literal["none", "source", "idm"] = Field(
        "none", description="Image-to-video: hold the first frame at --video's first frame, or at the IDM's first generated frame "
        "(mixed-inversion), as WanImageToVideoPipeline does for Wan 2.2 TI2V; none: text-to-video."
    )


class VaceParams(WanParams):
    control: Literal["canny", "video"] = Field(
        "canny", description="What VACE follows from --video: its canny edges, or the frames themselves (the fill with --mask/--outpaint "
        "always uses the frames; --condition-video gives precomputed maps, e.g. depth or pose)."
    )
    low_threshold: int = Field(100, ge=0, le=255, description="Canny lower hysteresis threshold.")
    high_threshold: int = Field(200, ge=0, le=255, description="Canny upper hysteresis threshold.")
    conditioning_scale: float = Field(1.0, ge=0.0, le=2.0, description="Weight of VACE's control layers (WanVACEPipeline's conditioning_scale).")

    @model_validator(mode="after")
    def _no_windows(self):
        if self.window is not None:
            raise ValueError("VACE's control follows the whole clip (at most 81 frames): it runs without -o window")
        return self


WAN_GUIDANCE = 5.0
WAN_IMPL = "vsynth.plugins.vdm.wan:WanVideoModel"
WAN21_LATENTS = LatentSpace(name="wan2.1-vae", channels=16, spatial=8, temporal=4, causal=True, size_multiple=16, scaling=1.0,
                            mean=tuple(WAN21_LATENTS_MEAN), std=tuple(WAN21_LATENTS_STD))  # fmt: skip
WAN_TOY = {"wan2.1-t2v-1.3b": "wan2.1-t2v"}  # the moving toy world's Wan (vsynth/toy/train_wan.py): 8x VAE without temporal compression
WAN22_LATENTS = LatentSpace(name="wan2.2-vae", channels=48, spatial=16, temporal=4, causal=True, size_multiple=32, scaling=1.0,
                            mean=tuple(WAN22_LATENTS_MEAN), std=tuple(WAN22_LATENTS_STD))  # fmt: skip
# (name, hub id, download GB: the parameter counts in the dtypes diffusers' conversion script saves (transformers and
#  VAE float32, UMT5 bfloat16), tiny stand-in, experts, native (height, width), fps, frames,
#  description)
WAN_MODELS = (
    ("wan2.1-t2v-1.3b", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", 17.6, "wan2.1-t2v", 1, (480, 832), 16, 81,
     "Wan 2.1 text-to-video 1.3B (flow DiT, UMT5-XXL, causal 3D VAE 8x/4x); runs on a consumer GPU."),
    ("wan2.1-t2v-14b", "Wan-AI/Wan2.1-T2V-14B-Diffusers", 69.0, "wan2.1-t2v", 1, (720, 1280), 16, 81,
     "Wan 2.1 text-to-video 14B."),
    ("wan2.2-ti2v-5b", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", 34.2, "wan2.2-ti2v", 1, (704, 1280), 24, 121,
     "Wan 2.2 text(-image)-to-video 5B with its own 16x/4x 48-channel VAE and per-token timesteps."),
    ("wan2.2-t2v-a14b", "Wan-AI/Wan2.2-T2V-A14B-Diffusers", 126.2, "wan2.2-t2v-a14b", 2, (720, 1280), 16, 81,
     "Wan 2.2 text-to-video A14B: a high-noise and a low-noise 14B expert, switched at level 7 (s = 0.875)."),
)  # fmt: skip


WAN_VACE_MODELS = (
    ("wan2.1-vace-1.3b", "Wan-AI/Wan2.1-VACE-1.3B-diffusers", 20.5,
     "Wan 2.1 VACE 1.3B: Wan with control layers, fed the run's canny maps, --condition-video maps, or the source to fill "
     "(--mask, --outpaint): the trained baseline for controllable generation and inpainting."),
    ("wan2.1-vace-14b", "Wan-AI/Wan2.1-VACE-14B-diffusers", 81.2, "Wan 2.1 VACE 14B, as wan2.1-vace-1.3b."),
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
                weights=(WeightsSpec(role="vdm", id=hub_id, size_gb=size, tiny=tiny, toy=WAN_TOY.get(name), files=layouts.wan_pipeline(experts)),),
                params=TI2VParams if "ti2v" in name else WanParams,
                impl=WAN_IMPL,
                accepts=("video",) if "ti2v" in name else (),
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
