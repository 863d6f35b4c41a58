"""Built-in image diffusion models (IDMs): specs and params, no torch."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from vsynth import hookimpl
from vsynth.core.specs import ModelSpec, Params, WeightsSpec

SD15 = WeightsSpec(role="base", id="stable-diffusion-v1-5/stable-diffusion-v1-5", size_gb=5.2, tiny="sd15")
DEPTH_ESTIMATOR = WeightsSpec(role="depth_estimator", id="Intel/dpt-hybrid-midas", size_gb=0.5, tiny="depth-estimator")
CONTROLLABLE = "controllable-generation"


class ControlNetParams(Params):
    base: str | None = Field(None, description="SD1.5 base weights (hub id or directory); default: the spec's base.")
    conditioning_scale: float = Field(1.0, ge=0, description="Strength of the control residuals.")
    batch_size: PositiveInt | None = Field(None, description="Frames per UNet batch (lower it to save memory); default: all frames.")


class CannyParams(ControlNetParams):
    low_threshold: int = Field(100, ge=0, le=255, description="Canny lower hysteresis threshold.")
    high_threshold: int = Field(200, ge=0, le=255, description="Canny upper hysteresis threshold.")


class DepthParams(ControlNetParams):
    depth_estimator: str | None = Field(None, description="Depth-estimation weights (hub id or directory); default: the spec's.")


# BIVDiff's official mixing ratio for controllable generation: pure image inversion.
_MIXED_INVERSION = {"mixed-inversion": {"mixing_ratio": 1.0}}


@hookimpl
def vsynth_register_models(registrar):
    registrar.register_model(
        ModelSpec(
            name="controlnet-canny",
            kind="idm",
            task=CONTROLLABLE,
            description="ControlNet v1.1 on SD1.5, conditioned on Canny edges of the source video (OpenCV).",
            weights=(WeightsSpec(role="controlnet", id="lllyasviel/control_v11p_sd15_canny", size_gb=1.4, tiny="controlnet-canny"), SD15),
            params=CannyParams,
            impl="vsynth.plugins.idm.controlnet:ControlNetCanny",
            bridge_defaults=_MIXED_INVERSION,
        )
    )
    registrar.register_model(
        ModelSpec(
            name="controlnet-depth",
            kind="idm",
            task=CONTROLLABLE,
            description="ControlNet v1.1 on SD1.5, conditioned on depth maps estimated from the source video (DPT).",
            weights=(
                WeightsSpec(role="controlnet", id="lllyasviel/control_v11f1p_sd15_depth", size_gb=1.4, tiny="controlnet-depth"),
                SD15,
                DEPTH_ESTIMATOR,
            ),
            params=DepthParams,
            impl="vsynth.plugins.idm.controlnet:ControlNetDepth",
            bridge_defaults=_MIXED_INVERSION,
        )
    )
