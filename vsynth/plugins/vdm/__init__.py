"""Built-in video diffusion models (VDMs): specs and params, no torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt

from vsynth import hookimpl
from vsynth.core.host import layouts
from vsynth.core.host.specs import ModelSpec, VideoParams, WeightsSpec
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
