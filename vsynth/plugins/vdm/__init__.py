"""Built-in video diffusion models (VDMs): specs and params, no torch."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from vsynth import hookimpl
from vsynth.core.specs import ModelSpec, Params, WeightsSpec


class UNet3DParams(Params):
    decode_batch_size: PositiveInt = Field(8, description="Frames decoded by the VAE at once.")


@hookimpl
def vsynth_register_models(registrar):
    registrar.register_model(
        ModelSpec(
            name="zeroscope",
            kind="vdm",
            description="ZeroScope v2 576w text-to-video (UNet3D, OpenCLIP text encoder); native size 576x320.",
            weights=(WeightsSpec(role="vdm", id="cerspense/zeroscope_v2_576w", size_gb=3.1, tiny="zeroscope"),),
            params=UNet3DParams,
            impl="vsynth.plugins.vdm.unet3d:ZeroScope",
        )
    )
