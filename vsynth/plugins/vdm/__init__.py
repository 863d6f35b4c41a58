"""Built-in video diffusion models (VDMs): specs and params, no torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from vsynth import hookimpl
from vsynth.core.host import layouts
from vsynth.core.host.specs import LatentSpace, ModelSpec, VideoParams, WeightsSpec
from vsynth.errors import InvalidParamsError
from vsynth.plugins.idm import DEPTH_ESTIMATOR, SD15, SDXL_BASE, SDXL_LATENTS
from vsynth.plugins.loras import WAN_LORAS
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


class AnimateDiffSDXLParams(AnimateDiffParams):
    base: str | None = Field(None, description="SDXL base or finetune (hub id or directory); default: stabilityai/stable-diffusion-xl-base-1.0.")


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
    max_sequence_length: PositiveInt | None = Field(
        None, le=512, description="Prompt tokens UMT5 encodes, zero-padded; default: the tokenizer's model_max_length, at most WanPipeline's 512."
    )

    def sampling(self, steps, guidance, *, shared_steps, shared_guidance):
        """Wan's pipelines default to 50 steps and guidance 5.0 (not SD's 7.5)."""
        guidance = guidance if guidance is not None else shared_guidance
        return super().sampling(steps, WAN_GUIDANCE if guidance is None else guidance, shared_steps=shared_steps, shared_guidance=None)


def check_first_frame(first_frame: str, inputs: set[str], idm, bridge) -> None:
    """-o first_frame=source needs the source, =idm an image model whose frames the bridge hands over."""
    if first_frame == "source" and "video" not in inputs:
        raise InvalidParamsError("-o first_frame=source holds the first frames at --video's: give --video, or -o first_frame=none")
    if first_frame == "idm" and idm is None:
        raise InvalidParamsError("-o first_frame=idm holds the image model's first frames, and this run has none: add --idm (with "
                                 "--bridge mixed-inversion or flow-edit), or use -o first_frame=source")  # fmt: skip
    if first_frame == "idm" and not bridge.hands_frames:
        raise InvalidParamsError(f"-o first_frame=idm holds the image model's first frames, which bridge '{bridge.name}' does not "
                                 "hand to the video model: use --bridge mixed-inversion or flow-edit, or -o first_frame=source")  # fmt: skip


class TI2VParams(WanParams):
    first_frame: Literal["none", "source", "idm"] = Field(
        "none", description="Image-to-video: hold the first frame at --video's first frame, or at the IDM's first generated frame "
        "(mixed-inversion), as WanImageToVideoPipeline does for Wan 2.2 TI2V; none: text-to-video."
    )

    def check_inputs(self, inputs, idm, bridge, given) -> None:
        check_first_frame(self.first_frame, inputs, idm, bridge)


# VACE's options that make its control maps from --video, and the control each is for (None: any)
VACE_DETECTOR_OPTIONS = {"control": None, "low_threshold": "canny", "high_threshold": "canny", "depth_estimator": "depth", "detector": "pose"}


class VaceParams(WanParams):
    control: Literal["canny", "depth", "pose", "video"] = Field(
        "canny", description="What VACE follows from --video: its canny edges, its depth or its poses (the IDMs' own detectors), "
        "or the frames themselves (the fill with --mask/--outpaint always uses the frames; --condition-video gives "
        "precomputed maps)."
    )
    low_threshold: int = Field(100, ge=0, le=255, description="Canny lower hysteresis threshold.")
    high_threshold: int = Field(200, ge=0, le=255, description="Canny upper hysteresis threshold.")
    depth_estimator: str | None = Field(None, description="Depth-estimation weights for -o control=depth (hub id or directory); default: the spec's.")
    detector: str = Field(
        "lllyasviel/Annotators",
        description="OpenPose body weights for -o control=pose (a hub repo, folder or body_pose_model.pth: a pickle, so another "
        "than the default needs --trust-pickles).",
        json_schema_extra={"weights": "pickle"},
    )
    reference: str | None = Field(
        None, description="A reference image (a file) VACE generates from, e.g. the subject or the style (WanVACEPipeline's "
        "reference_images): it takes a latent frame of its own before the clip, dropped when decoding."
    )
    conditioning_scale: float = Field(1.0, ge=0.0, le=2.0, description="Weight of VACE's control layers (WanVACEPipeline's conditioning_scale).")

    @model_validator(mode="after")
    def _no_windows(self):
        if self.window is not None:
            raise ValueError("VACE's control follows the whole clip (at most 81 frames): it runs without -o window")
        return self

    def check_inputs(self, inputs, idm, bridge, given) -> None:
        """With --mask/--outpaint VACE fills frames (--condition-video's, else --video's): there must be some, and
        -o control has no say."""
        if "mask" in inputs and not inputs & {"video", "condition_video"}:
            raise InvalidParamsError("--mask/--outpaint mark what VACE regenerates in the frames: give --video (or --condition-video)")
        if "mask" in inputs and "control" in given:
            raise InvalidParamsError(f"-o control={self.control} is what VACE follows without --mask/--outpaint; with them it fills "
                                     "the frames themselves: drop one")  # fmt: skip
        detecting = sorted(given & set(VACE_DETECTOR_OPTIONS))
        if detecting and inputs & {"mask", "condition_video"}:
            why = "with --mask/--outpaint VACE fills the frames themselves" if "mask" in inputs else "--condition-video gives the maps precomputed"
            raise InvalidParamsError(f"-o {detecting[0]} says how VACE makes its control maps from --video, and {why}: drop one")
        for option in detecting:
            if VACE_DETECTOR_OPTIONS[option] not in (None, self.control):
                raise InvalidParamsError(f"-o {option} is for -o control={VACE_DETECTOR_OPTIONS[option]}, and this run's control is "
                                         f"{self.control}: drop it, or choose that control")  # fmt: skip

    @field_validator("reference")
    @classmethod
    def _reference_is_an_image(cls, reference):
        if reference is not None:
            from pathlib import Path

            path = Path(reference).expanduser()
            if path.is_dir():
                raise ValueError("is a folder: name one image file in it")
            if not path.is_file():
                raise ValueError("no such image file")
            if path.suffix.lower() not in {".png", ".jpg", ".jpeg", ".webp", ".bmp"}:
                raise ValueError("not an image (.png, .jpg, .jpeg, .webp or .bmp)")
            from PIL import Image, UnidentifiedImageError

            try:  # before loading: the header and the file's structure, not its pixels
                with Image.open(path) as image:
                    image.verify()
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
                raise ValueError("cannot be read as an image (truncated, or not an image despite its name)") from None
        return reference


class LTXParams(VideoParams):
    max_sequence_length: PositiveInt = Field(128, le=512, description="Prompt tokens T5 encodes (LTXPipeline's 128).")
    frame_rate: float = Field(25.0, gt=0, description="The frame rate the transformer's rotary positions are scaled for (LTXPipeline's frame_rate, 25).")
    decode_timestep: float = Field(
        0.0, ge=0.0, le=1.0, description="Timestep the 0.9.1 VAE decoder is conditioned on, and the share of noise mixed into the "
        "latents first (LTXPipeline's decode_timestep and decode_noise_scale, 0)."
    )
    first_frame: Literal["none", "source", "idm"] = Field(
        "none", description="Image-to-video: hold the first frames at --video's, or at the IDM's generated frames (mixed-inversion), "
        "as LTXImageToVideoPipeline holds its image (and LTXConditionPipeline a condition at frame 0); none: text-to-video."
    )
    condition_frames: PositiveInt = Field(1, description="How many frames -o first_frame holds (rounded down to 1 + 8k, whole latent frames, and to the clip's length, with a warning).")
    keyframe_stride: NonNegativeInt = Field(
        0, description="With -o first_frame, also condition on every Nth of those frames as a keyframe at its own position, as "
        "LTXConditionPipeline conditions on images at frame indices (for LTX-Video 0.9.5 and later, e.g. --vdm-weights "
        "Lightricks/LTX-Video-0.9.5); 0: none."
    )

    @model_validator(mode="after")
    def _keyframes_need_frames(self):
        if self.keyframe_stride and self.first_frame == "none":
            raise ValueError("-o keyframe_stride takes its keyframes from the frames -o first_frame names: set -o first_frame=source or idm")
        return self

    def check_inputs(self, inputs, idm, bridge, given) -> None:
        check_first_frame(self.first_frame, inputs, idm, bridge)

    @model_validator(mode="after")
    def _no_windows_when_held(self):
        if self.window is not None and self.first_frame != "none":
            raise ValueError("-o first_frame holds the clip's first frames, which windows would hold in every window: run it without -o window")
        return self

    def sampling(self, steps, guidance, *, shared_steps, shared_guidance):
        """LTXPipeline defaults to 50 steps and guidance 3.0 (not SD's 7.5); one step cannot be stretched to its terminal sigma."""
        guidance = guidance if guidance is not None else shared_guidance
        steps, guidance = super().sampling(steps, LTX_GUIDANCE if guidance is None else guidance, shared_steps=shared_steps, shared_guidance=None)
        if steps < 2:
            raise InvalidParamsError("ltx-video samples with 2 steps or more: its schedule stretches the last sigma to 0.1, which one step "
                                     "cannot do (LTXPipeline gives NaN); raise --vdm-steps")
        return steps, guidance


class HunyuanParams(VideoParams):
    max_sequence_length: PositiveInt = Field(256, le=256, description="Prompt tokens the Llama encodes after the template (HunyuanVideoPipeline's 256).")

    def sampling(self, steps, guidance, *, shared_steps, shared_guidance):
        """HunyuanVideoPipeline defaults to 50 steps and an embedded guidance of 6.0."""
        guidance = guidance if guidance is not None else shared_guidance
        return super().sampling(steps, HUNYUAN_GUIDANCE if guidance is None else guidance, shared_steps=shared_steps, shared_guidance=None)


HUNYUAN_GUIDANCE = 6.0
HUNYUAN_LATENTS = LatentSpace(name="hunyuanvideo-vae", channels=16, spatial=8, temporal=4, causal=True, size_multiple=16, scaling=0.476986)
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
     "Wan 2.1 VACE 1.3B: Wan with control layers, fed the run's canny, depth or pose maps, --condition-video maps, or the "
     "source to fill (--mask, --outpaint), and a reference image: the trained baseline for controllable generation and inpainting."),
    ("wan2.1-vace-14b", "Wan-AI/Wan2.1-VACE-14B-diffusers", 81.2, "Wan 2.1 VACE 14B, as wan2.1-vace-1.3b."),
)  # fmt: skip


LTX_GUIDANCE = 3.0
LTX_SIZE_GB = 30.5  # float32, as the conversion script saves it: transformer 1.92 B, VAE 0.93 B, T5-XXL encoder 4.76 B parameters
# LTX-Video's VAE: 32x spatial (4x4 patches, three 2x stages), 8x temporal with the first frame alone, 128 channels normalized
# by the VAE's own per-channel statistics (buffers in its weights, not in its config: mean/std are not declared here).
LTX_LATENTS = LatentSpace(name="ltx-video-vae", channels=128, spatial=32, temporal=8, causal=True, size_multiple=32, scaling=1.0)


class CogVideoXParams(VideoParams):
    window: PositiveInt | None = Field(
        13, le=13, description="Latent frames denoised at once, at most the 13 (49 frames) CogVideoX was trained on; longer clips go in "
        "overlapping windows."
    )
    overlap: NonNegativeInt = Field(4, description="Latent frames (4 frames each) neighbouring windows share, at least; below window.")
    dynamic_cfg: bool = Field(
        False, description="CogVideoXPipeline's use_dynamic_cfg: the guidance scale rises along the schedule (THUDM's demo uses it with "
        "--vdm-scheduler dpm++ for 5b); off: the fixed scale, the pipeline's default."
    )

    def sampling(self, steps, guidance, *, shared_steps, shared_guidance):
        """CogVideoXPipeline's defaults: 50 steps and guidance 6.0."""
        guidance = guidance if guidance is not None else shared_guidance
        return super().sampling(steps, COGVIDEOX_GUIDANCE if guidance is None else guidance, shared_steps=shared_steps, shared_guidance=None)


COGVIDEOX_GUIDANCE = 6.0
# (name, hub id, download GB: the parameter counts (layouts.json) in the repos' dtype, float16 (2b) or bfloat16 (5b),
#  VAE scaling factor, description); configs and sources in vsynth/configs/README.md
COGVIDEOX_MODELS = (
    ("cogvideox-2b", "THUDM/CogVideoX-2b", 13.3, 1.15258426,
     "CogVideoX 2B text-to-video (v-prediction on a VP schedule, T5-XXL, causal 3D VAE 8x/4x, 49 frames at 480x720, 8 fps)."),
    ("cogvideox-5b", "THUDM/CogVideoX-5b", 21.1, 0.7,
     "CogVideoX 5B text-to-video: cogvideox-2b's design, larger, with 3D rotary position embeddings."),
)  # fmt: skip


class CogVideoXLatentSpace(LatentSpace):
    """CogVideoX's VAE space: 16 channels, 8x in space and 4x in time, 2x2 transformer patches (sides multiples of 16).

    It encodes 1 + 4k frames to 1 + k latent frames, but its decoder doubles time twice and keeps a first frame
    alone only when the latent frames are odd (2 latent frames decode to 8 frames, 3 to 9): a clip it returns
    whole holds 1 + 8k frames (the released 49 are 13 latent frames)."""

    def fit_frames(self, frames: int) -> int:
        return 1 + (frames - 1) // (2 * self.temporal) * (2 * self.temporal)

    def frame_rule(self) -> str:
        return f"1 + {2 * self.temporal}k frames (its VAE decodes an odd number of latent frames)"


def cogvideox_latents(scaling: float) -> LatentSpace:
    return CogVideoXLatentSpace(name="cogvideox-vae", channels=16, spatial=8, temporal=4, causal=True, size_multiple=16, scaling=scaling)


UNET3D_IMPL = "vsynth.plugins.vdm.unet3d:UNet3DVideoModel"
MOTION_ADAPTER = WeightsSpec(role="motion_adapter", id="guoyww/animatediff-motion-adapter-v1-5-2", size_gb=1.8, tiny="motion-adapter",
                             files=layouts.diffusers_model())  # fmt: skip
# float32 size of the config's 236,779,200 parameters (layouts.json), as the hub's file holds them
MOTION_ADAPTER_SDXL = WeightsSpec(role="motion_adapter", id="guoyww/animatediff-motion-adapter-sdxl-beta", size_gb=0.95,
                                  tiny="motion-adapter-sdxl", files=layouts.diffusers_model())  # fmt: skip
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
    registrar.register_model(
        ModelSpec(
            name="animatediff-sdxl",
            kind="vdm",
            description="AnimateDiff-SDXL (beta motion adapter) on SDXL base 1.0 (or a finetune, -o base=...); shares SDXL's UNet, "
            "VAE and text encoders with SDXL image models.",
            weights=(MOTION_ADAPTER_SDXL, SDXL_BASE),
            params=AnimateDiffSDXLParams,
            impl="vsynth.plugins.vdm.animatediff:AnimateDiffSDXL",
            native_size=(1024, 1024),
            max_frames=32,
            sampler="DDIM (SDXL's training schedule with linear betas, linspace spacing), 50 steps, guidance 7.5",
            latent_space=SDXL_LATENTS,
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
                loras=WAN_LORAS.get(name, ()),
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
    registrar.register_model(
        ModelSpec(
            name="hunyuanvideo",
            kind="vdm",
            description="HunyuanVideo 13B text-to-video (flow DiT, Llama 3 8B + CLIP-L text encoders, causal 3D VAE 8x/4x), "
            "guidance-distilled: --guidance is its embedded guidance.",
            # the parameter counts in the dtypes the conversion script saves (transformer bfloat16, VAE float32, text encoders float16)
            weights=(WeightsSpec(role="vdm", id="hunyuanvideo-community/HunyuanVideo", size_gb=41.9, tiny="hunyuanvideo",
                                 files=layouts.hunyuan_video_pipeline()),),  # fmt: skip
            params=HunyuanParams,
            impl="vsynth.plugins.vdm.hunyuan:HunyuanVideoModel",
            native_size=(720, 1280),
            max_frames=129,
            fps=24,
            sampler="Euler on flow sigmas linspace(1, 0) (flow shift 7), 50 steps, embedded guidance 6.0",
            process="flow",
            solver="euler",
            architecture="transformer",
            latent_space=HUNYUAN_LATENTS,
            guidance="distilled",
        )
    )
    for name, hub_id, size, description in WAN_VACE_MODELS:
        registrar.register_model(
            ModelSpec(
                name=name,
                kind="vdm",
                description=description,
                weights=(WeightsSpec(role="vdm", id=hub_id, size_gb=size, tiny="wan2.1-vace", files=layouts.wan_pipeline()),
                         DEPTH_ESTIMATOR.model_copy(update={"only_with": ("control", "depth")})),
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
    registrar.register_model(
        ModelSpec(
            name="ltx-video",
            kind="vdm",
            description="LTX-Video 2B (0.9.1): a fast flow DiT over a 32x/8x 128-channel VAE with T5-XXL; follows given first frames "
            "(-o first_frame) as its image-to-video does.",
            # LTXPipeline's folder: the Wan layout (model_index, transformer, vae, sharded T5 text_encoder, tokenizer, scheduler)
            weights=(WeightsSpec(role="vdm", id="Lightricks/LTX-Video", size_gb=LTX_SIZE_GB, tiny="ltx-video", files=layouts.wan_pipeline()),),
            params=LTXParams,
            impl="vsynth.plugins.vdm.ltx:LTXVideoModel",
            accepts=("video",),
            native_size=(480, 704),
            max_frames=257,
            fps=24,
            sampler="Euler on flow sigmas shifted by the clip's token count (0.95 at 1024 tokens to 2.05 at 4096, terminal 0.1), "
            "50 steps, guidance 3.0",
            process="flow",
            solver="euler",
            architecture="transformer",
            latent_space=LTX_LATENTS,
        )
    )


    for name, hub_id, size, scaling, description in COGVIDEOX_MODELS:
        registrar.register_model(
            ModelSpec(
                name=name,
                kind="vdm",
                description=description,
                weights=(WeightsSpec(role="vdm", id=hub_id, size_gb=size, tiny=name, files=layouts.cogvideox_pipeline()),),
                params=CogVideoXParams,
                impl="vsynth.plugins.vdm.cogvideox:CogVideoXModel",
                native_size=(480, 720),
                max_frames=49,
                fps=8,
                sampler="CogVideoX DDIM (v-prediction, SNR shift 3, zero terminal SNR, trailing spacing), 50 steps, guidance 6.0",
                process="vp-v",
                solver="ddim",
                architecture="transformer",
                latent_space=cogvideox_latents(scaling),
            )
        )
