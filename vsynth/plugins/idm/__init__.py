"""Built-in image diffusion models (IDMs): specs and params, no torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from vsynth import hookimpl
from vsynth.core.host import layouts
from vsynth.core.host.specs import LatentSpace, ModelSpec, Params, WeightsSpec
from vsynth.errors import InvalidParamsError
from vsynth.plugins.loras import HYPER_FLUX, LCM_SD15, LCM_SDXL

# Sizes are the files a run reads (float32; the fp16 variants a float16 run prefers are about half):
# from vsynth/configs/layouts.json where it has them, else as measured on the hub (issue 14).
SD15 = WeightsSpec(role="base", id="stable-diffusion-v1-5/stable-diffusion-v1-5", size_gb=4.27, tiny="sd15", toy="sd15", files=layouts.sd_pipeline())
# T2I-Adapter features enter the UNet's first down block before it downsamples, which needs
# cross-attention there as in real SD1.5; the faster default tiny UNet has it only in its second.
SD15_ADAPTER_BASE = SD15.model_copy(update={"tiny": "sd15-adapter-base"})
SD15_INVERSION = SD15.model_copy(update={"inversion_only": True})  # beside an IDM with its own UNet: BIVDiff inverts with it
DEPTH_ESTIMATOR = WeightsSpec(
    role="depth_estimator",
    id="Intel/dpt-hybrid-midas",
    size_gb=0.5,
    tiny="depth-estimator",
    files=(*layouts.transformers_model(), "preprocessor_config.json"),
)
CONTROLLABLE = "controllable-generation"
EDITING = "editing"
INPAINTING = "inpainting"
GENERATION = "generation"


class ControlNetParams(Params):
    base: str | None = Field(None, description="SD1.5 base weights (hub id or directory); default: the spec's base.")
    conditioning_scale: float = Field(1.0, ge=0, description="Strength of the control residuals.")
    batch_size: PositiveInt | None = Field(None, description="Frames per UNet batch (lower it to save memory); default: all frames.")


class CannyParams(ControlNetParams):
    low_threshold: int = Field(100, ge=0, le=255, description="Canny lower hysteresis threshold.")
    high_threshold: int = Field(200, ge=0, le=255, description="Canny upper hysteresis threshold.")


class DepthParams(ControlNetParams):
    depth_estimator: str | None = Field(None, description="Depth-estimation weights (hub id or directory); default: the spec's.")


class BatchParams(Params):
    batch_size: PositiveInt | None = Field(None, description="Frames per UNet batch (lower it to save memory); default: all frames.")


class OpenposeParams(ControlNetParams):
    detector: str = Field(
        "lllyasviel/Annotators",
        description="OpenPose body weights (a hub repo, folder or body_pose_model.pth: a pickle, so another than the default "
        "needs --trust-pickles), when poses are detected.",
        json_schema_extra={"weights": "pickle"},
    )


class AdapterParams(BatchParams):
    base: str | None = Field(None, description="SD1.5 base weights (hub id or directory); default: the spec's base.")
    conditioning_scale: float = Field(1.0, ge=0, description="Scale of the adapter's features.")


class AdapterCannyParams(AdapterParams):
    low_threshold: int = Field(100, ge=0, le=255, description="Canny lower hysteresis threshold.")
    high_threshold: int = Field(200, ge=0, le=255, description="Canny upper hysteresis threshold.")


class AdapterDepthParams(AdapterParams):
    depth_estimator: str | None = Field(None, description="Depth-estimation weights (hub id or directory); default: the spec's.")


class Pix2PixParams(BatchParams):
    base: str | None = Field(None, description="SD1.5 base for the image-side inversion; default: the spec's base.")
    image_guidance: float = Field(1.5, ge=1.0, description="Image guidance scale (text guidance is --guidance).")


class Prompt2PromptParams(BatchParams):
    edit: Literal["auto", "replace", "refine"] = Field(
        "auto", description="Attention edit: replace (same token count, words swapped), refine (words added), auto picks."
    )
    cross_replace: float = Field(0.4, ge=0.0, le=1.0, description="Fraction of steps whose cross-attention maps are edited.")
    self_replace: float = Field(0.4, ge=0.0, le=1.0, description="Fraction of steps whose self-attention maps come from the source.")

    def check_inputs(self, inputs, idm, bridge, given) -> None:
        """The edit is the model's own frame-wise generation (inversion with --source-prompt, then attention control),
        which a bridge that refines the source by SDEdit with the IDM's denoiser alone never runs."""
        if not bridge.image_inversion:
            raise InvalidParamsError(
                f"prompt2prompt edits by inverting the source frames with --source-prompt and controlling attention, which "
                f"bridge '{bridge.name}' does not run (it refines the source with --prompt alone): use --bridge mixed-inversion"
            )


class InpaintParams(BatchParams):
    base: str | None = Field(None, description="SD1.5 base for the image-side inversion; default: the spec's base.")


class SD15Params(BatchParams):
    strength: float = Field(0.75, gt=0.0, le=1.0, description="SDEdit strength when a source video is given (1 = ignore it).")


def _mixing_ratio(ratio: float) -> dict:
    """BIVDiff's official per-task mixing ratio for the mixed-inversion bridge."""
    return {"mixed-inversion": {"mixing_ratio": ratio}}


# BIVDiff's official mixing ratio for controllable generation: pure image inversion.
_MIXED_INVERSION = _mixing_ratio(1.0)


# SDXL (issue 25). Its VAE is SD's architecture with its own weights and scaling: latents in another space
# than SD1.5's, ZeroScope's and AnimateDiff's, so bridges transcode through pixels between them.
SDXL_LATENTS = LatentSpace(name="sdxl-vae", scaling=0.13025)
SDXL_BASE = WeightsSpec(role="base", id="stabilityai/stable-diffusion-xl-base-1.0", size_gb=13.88, tiny="sdxl", files=layouts.sdxl_pipeline())
SDXL_SAMPLER = (
    "Euler (its repo's EulerDiscreteScheduler: SD1.5's scaled-linear training schedule, leading spacing), 50 steps, "
    "classifier-free guidance 7.5, size conditioning = the frame size; Euler because StableDiffusionXLPipeline samples "
    "the checkpoint with it, so one seed gives diffusers' own frames (--idm-scheduler ddim gives BIVDiff's DDIM on the same schedule)"
)
# Mixed Inversion: BIVDiff's per-task ratios, as for SD1.5 (1.0 for controllable generation, the bridge's own
# 1.0 for generation). They apply with a VDM in SDXL's latent space (AnimateDiff-SDXL); with any VDM of another
# space, SD's included, the bridge turns this default into 0 (video-side inversion only) and says so
# (MixedInversionParams.for_models), and refuses a mixing_ratio above 0 that the user gives.


class SDXLParams(BatchParams):
    strength: float = Field(0.75, gt=0.0, le=1.0, description="SDEdit strength when a source video is given (1 = ignore it).")


class SDXLControlNetParams(BatchParams):
    base: str | None = Field(None, description="SDXL base weights (hub id or directory); default: the spec's base.")
    conditioning_scale: float = Field(1.0, ge=0, description="Strength of the control residuals.")


class SDXLCannyParams(SDXLControlNetParams):
    low_threshold: int = Field(100, ge=0, le=255, description="Canny lower hysteresis threshold.")
    high_threshold: int = Field(200, ge=0, le=255, description="Canny upper hysteresis threshold.")


class SDXLDepthParams(SDXLControlNetParams):
    depth_estimator: str | None = Field(None, description="Depth-estimation weights (hub id or directory); default: the spec's.")


@hookimpl
def vsynth_register_models(registrar):
    registrar.register_model(
        ModelSpec(
            name="controlnet-canny",
            loras=LCM_SD15,
            kind="idm",
            task=CONTROLLABLE,
            description="ControlNet v1.1 on SD1.5, conditioned on Canny edges of the source video (OpenCV).",
            weights=(WeightsSpec(role="controlnet", id="lllyasviel/control_v11p_sd15_canny", size_gb=1.45, tiny="controlnet-canny", toy="controlnet-canny", files=layouts.diffusers_model()), SD15),
            params=CannyParams,
            impl="vsynth.plugins.idm.controlnet:ControlNetCanny",
            needs=("video|condition_video",),
            bridge_defaults=_MIXED_INVERSION,
        )
    )
    registrar.register_model(
        ModelSpec(
            name="controlnet-depth",
            loras=LCM_SD15,
            kind="idm",
            task=CONTROLLABLE,
            description="ControlNet v1.1 on SD1.5, conditioned on depth maps estimated from the source video (DPT).",
            weights=(
                WeightsSpec(role="controlnet", id="lllyasviel/control_v11f1p_sd15_depth", size_gb=1.45, tiny="controlnet-depth", files=layouts.diffusers_model()),
                SD15,
                DEPTH_ESTIMATOR,
            ),
            params=DepthParams,
            impl="vsynth.plugins.idm.controlnet:ControlNetDepth",
            needs=("video|condition_video",),
            bridge_defaults=_MIXED_INVERSION,
        )
    )
    registrar.register_model(
        ModelSpec(
            name="controlnet-openpose",
            loras=LCM_SD15,
            kind="idm",
            task=CONTROLLABLE,
            description="ControlNet v1.1 on SD1.5, conditioned on OpenPose skeletons (--condition-video, or detected from the "
            "video with the OpenPose body network of lllyasviel/Annotators).",
            weights=(WeightsSpec(role="controlnet", id="lllyasviel/control_v11p_sd15_openpose", size_gb=1.45, tiny="controlnet-openpose", files=layouts.diffusers_model()), SD15),
            params=OpenposeParams,
            impl="vsynth.plugins.idm.controlnet:ControlNetOpenpose",
            needs=("video|condition_video",),
            bridge_defaults=_MIXED_INVERSION,
        )
    )
    for kind, params, extra in (("canny", AdapterCannyParams, ()), ("depth", AdapterDepthParams, (DEPTH_ESTIMATOR,))):
        registrar.register_model(
            ModelSpec(
                name=f"t2i-adapter-{kind}",
                loras=LCM_SD15,
                kind="idm",
                task=CONTROLLABLE,
                description=f"T2I-Adapter on SD1.5, conditioned on {kind} maps of the source video.",
                weights=(
                    WeightsSpec(role="adapter", id=f"TencentARC/t2iadapter_{kind}_sd15v2", size_gb=0.3, tiny=f"t2i-adapter-{kind}",
                                files=layouts.diffusers_model()),  # fmt: skip
                    SD15_ADAPTER_BASE,
                    *extra,
                ),
                params=params,
                impl=f"vsynth.plugins.idm.t2i_adapter:T2IAdapter{kind.capitalize()}",
                needs=("video|condition_video",),
                bridge_defaults=_MIXED_INVERSION,
            )
        )
    registrar.register_model(
        ModelSpec(
            name="instruct-pix2pix",
            kind="idm",
            task=EDITING,
            description="InstructPix2Pix: edits each source frame by an instruction (--idm-prompt), with text and image guidance.",
            weights=(WeightsSpec(role="pix2pix", id="timbrooks/instruct-pix2pix", size_gb=4.3, tiny="instruct-pix2pix", files=layouts.sd_pipeline()), SD15_INVERSION),
            params=Pix2PixParams,
            impl="vsynth.plugins.idm.instruct_pix2pix:InstructPix2Pix",
            needs=("video",),
            bridge_defaults=_mixing_ratio(1.0),
        )
    )
    registrar.register_model(
        ModelSpec(
            name="prompt2prompt",
            kind="idm",
            task=EDITING,
            description="Prompt-to-Prompt on SD1.5: the source frames are DDIM-inverted with --source-prompt, then regenerated "
            "with --prompt under replace/refine attention control.",
            weights=(SD15,),
            params=Prompt2PromptParams,
            impl="vsynth.plugins.idm.prompt2prompt:Prompt2Prompt",
            needs=("video", "source_prompt"),
            bridge_defaults=_mixing_ratio(0.25),
        )
    )
    registrar.register_model(
        ModelSpec(
            name="sd-inpaint",
            loras=LCM_SD15,
            kind="idm",
            task=INPAINTING,
            description="SD1.5 inpainting: regenerates the masked part of each frame (--mask), or extends the frame (--outpaint).",
            weights=(WeightsSpec(role="inpaint", id="stable-diffusion-v1-5/stable-diffusion-inpainting", size_gb=4.3, tiny="sd15-inpaint", files=layouts.sd_pipeline()), SD15_INVERSION),
            params=InpaintParams,
            impl="vsynth.plugins.idm.inpaint:Inpaint",
            needs=("video", "mask|outpaint"),
            bridge_defaults=_mixing_ratio(0.1),
        )
    )
    registrar.register_model(
        ModelSpec(
            name="sd15",
            loras=LCM_SD15,
            kind="idm",
            task=GENERATION,
            description="Stable Diffusion 1.5 or any SD1.5 finetune (--idm-weights): text-to-image, or SDEdit of the source "
            "video when one is given (-o strength).",
            weights=(SD15,),
            params=SD15Params,
            impl="vsynth.plugins.idm.sd15:SD15Model",
            accepts=("video",),
        )
    )
    for kind, params, extra, maps in (("canny", SDXLCannyParams, (), "Canny edges of the source video (OpenCV)"),
                                      ("depth", SDXLDepthParams, (DEPTH_ESTIMATOR,), "depth maps of the source video (DPT)")):  # fmt: skip
        registrar.register_model(
            ModelSpec(
                name=f"controlnet-sdxl-{kind}",
                loras=LCM_SDXL,
                kind="idm",
                task=CONTROLLABLE,
                description=f"diffusers' SDXL ControlNet on SDXL base 1.0, conditioned on {maps}.",
                weights=(
                    WeightsSpec(role="controlnet", id=f"diffusers/controlnet-{kind}-sdxl-1.0", size_gb=5.0, tiny=f"controlnet-sdxl-{kind}",
                                files=layouts.diffusers_model()),  # fmt: skip
                    SDXL_BASE,
                    *extra,
                ),
                params=params,
                impl=f"vsynth.plugins.idm.sdxl:SDXLControlNet{kind.capitalize()}",
                needs=("video|condition_video",),
                bridge_defaults=_MIXED_INVERSION,
                sampler=SDXL_SAMPLER,
                solver="euler",
                latent_space=SDXL_LATENTS,
                guidance="classifier-free",
            )
        )
    registrar.register_model(
        ModelSpec(
            name="sdxl",
            loras=LCM_SDXL,
            kind="idm",
            task=GENERATION,
            description="Stable Diffusion XL base 1.0 or an SDXL finetune (--idm-weights): text-to-image, or SDEdit of the source "
            "video when one is given (-o strength).",
            weights=(SDXL_BASE,),
            params=SDXLParams,
            impl="vsynth.plugins.idm.sdxl:SDXLModel",
            accepts=("video",),
            sampler=SDXL_SAMPLER,
            solver="euler",
            latent_space=SDXL_LATENTS,
            guidance="classifier-free",
        )
    )
    _register_flux(registrar)


from vsynth.core.host.specs import LatentSpace  # noqa: E402  (kept beside the FLUX specs that use it)

# FLUX.1 (black-forest-labs): frame-wise rectified-flow transformers over the 16-channel FLUX VAE.
FLUX_LATENTS = LatentSpace(name="flux-vae", channels=16, spatial=8, packing=2, size_multiple=16, scaling=0.3611, shift=0.1159)
# bf16 files of the diffusers-format repos (transformer 23.8 GB, T5-XXL 9.5, CLIP-L 0.25, VAE 0.17).
FLUX_SIZE_GB = 33.7
FLUX_SAMPLER = "Euler (flow matching, FluxPipeline's sigmas shifted by the resolution's mu)"


# The toy world's FLUX-architecture models (vsynth/toy/train_flux.py): the toy SD1.5 VAE (4 channels, 4x) and CLIP.
FLUX_TOY = ("flux-dev", "flux-canny")


def _flux_weights(repo: str, tiny: str) -> WeightsSpec:
    return WeightsSpec(role="flux", id=f"black-forest-labs/{repo}", size_gb=FLUX_SIZE_GB, tiny=tiny, toy=tiny if tiny in FLUX_TOY else None,
                       files=layouts.flux_pipeline())  # fmt: skip


# Mixed Inversion mixes an image-side and a video-side inversion of one latent; FLUX's latent space is
# no VDM's today (ZeroScope, AnimateDiff: sd-vae; Wan: its own), so only the video side can run.
_FLUX_MIXED_INVERSION = _mixing_ratio(0.0)


class FluxParams(BatchParams):
    max_sequence_length: int | None = Field(
        None, ge=1, le=512, description="T5 tokens the prompt is padded or cut to; default: the T5 tokenizer's model_max_length (512 in "
        "every FLUX.1 repo, the pipelines' default)."
    )


class FluxGenerationParams(FluxParams):
    strength: float = Field(0.6, gt=0.0, le=1.0, description="SDEdit strength when a source video is given, as FluxImg2ImgPipeline (1 = ignore it).")


class FluxCannyParams(FluxParams):
    low_threshold: int = Field(50, ge=0, le=255, description="Canny lower hysteresis threshold.")
    high_threshold: int = Field(200, ge=0, le=255, description="Canny upper hysteresis threshold.")


class FluxDepthParams(FluxParams):
    depth_estimator: str | None = Field(None, description="Depth-estimation weights (hub id or directory); default: the spec's.")


def _flux_spec(name: str, **fields) -> ModelSpec:
    family = dict(
        process="flow",
        solver="euler",
        architecture="transformer",
        latent_space=FLUX_LATENTS,
        guidance="distilled",
        sampler=FLUX_SAMPLER,
        bridge_defaults=_FLUX_MIXED_INVERSION,
    )
    return ModelSpec(name=name, kind="idm", **{**family, **fields})


def _register_flux(registrar) -> None:
    registrar.register_model(
        _flux_spec(
            "flux-dev",
            loras=HYPER_FLUX,
            task=GENERATION,
            description="FLUX.1 [dev]: text-to-image, or SDEdit of the source video when one is given (-o strength); "
            "--guidance is its distilled guidance embedding.",
            weights=(_flux_weights("FLUX.1-dev", "flux-dev"),),
            params=FluxGenerationParams,
            impl="vsynth.plugins.idm.flux:FluxModel",
            accepts=("video",),
            default_steps=28,
            default_guidance=3.5,
        )
    )
    registrar.register_model(
        _flux_spec(
            "flux-schnell",
            task=GENERATION,
            description="FLUX.1 [schnell], timestep-distilled: text-to-image in 4 steps without guidance, or SDEdit of the source "
            "video (-o strength).",
            weights=(_flux_weights("FLUX.1-schnell", "flux-schnell"),),
            params=FluxGenerationParams,
            impl="vsynth.plugins.idm.flux:FluxModel",
            accepts=("video",),
            guidance="none",
            sampler="Euler (flow matching, FluxPipeline's sigmas shifted by the resolution's mu), 4 steps, no guidance",
            default_steps=4,
            default_guidance=1.0,
        )
    )
    registrar.register_model(
        _flux_spec(
            "flux-canny",
            task=CONTROLLABLE,
            description="FLUX.1 Canny [dev]: conditioned on Canny edges of the source video, their latents concatenated to the "
            "packed latents (FluxControlPipeline).",
            weights=(_flux_weights("FLUX.1-Canny-dev", "flux-canny"),),
            params=FluxCannyParams,
            impl="vsynth.plugins.idm.flux:FluxCanny",
            needs=("video|condition_video",),
            default_steps=50,
            default_guidance=30.0,
        )
    )
    registrar.register_model(
        _flux_spec(
            "flux-depth",
            task=CONTROLLABLE,
            description="FLUX.1 Depth [dev]: conditioned on depth maps estimated from the source video (DPT), their latents "
            "concatenated to the packed latents (FluxControlPipeline).",
            weights=(_flux_weights("FLUX.1-Depth-dev", "flux-depth"), DEPTH_ESTIMATOR),
            params=FluxDepthParams,
            impl="vsynth.plugins.idm.flux:FluxDepth",
            needs=("video|condition_video",),
            default_steps=30,
            default_guidance=10.0,
        )
    )
    registrar.register_model(
        _flux_spec(
            "flux-fill",
            task=INPAINTING,
            description="FLUX.1 Fill [dev]: regenerates the masked part of each frame (--mask), or extends the frame (--outpaint).",
            weights=(_flux_weights("FLUX.1-Fill-dev", "flux-fill"),),
            params=FluxParams,
            impl="vsynth.plugins.idm.flux:FluxFill",
            needs=("video", "mask|outpaint"),
            default_steps=50,
            default_guidance=30.0,
        )
    )
    registrar.register_model(
        _flux_spec(
            "flux-kontext",
            task=EDITING,
            description="FLUX.1 Kontext [dev]: edits each source frame by an instruction (--idm-prompt), the frame's latents "
            "as its reference tokens.",
            weights=(_flux_weights("FLUX.1-Kontext-dev", "flux-kontext"),),
            params=FluxParams,
            impl="vsynth.plugins.idm.flux:FluxKontext",
            needs=("video",),
            default_steps=28,
            default_guidance=2.5,
        )
    )
