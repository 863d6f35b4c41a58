"""Built-in bridges: specs and params, no torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vsynth import hookimpl
from vsynth.core.specs import BridgeSpec, Params


class MixedInversionParams(Params):
    mixing_ratio: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="r in z = r*z_image + (1-r)*z_video; the IDM supplies BIVDiff's per-task default.",
    )
    inversion_prompt: Literal["negative", "prompt"] = Field(
        "negative",
        description="Text embedding both inversions use: the negative prompt (as the official code does) or the prompt.",
    )
    reencode: bool = Field(
        True,
        description="Re-encode the decoded IDM frames with the VAE before inversion, as the official code passes frames "
        "between stages; false passes the IDM latents straight through.",
    )


class NoParams(Params):
    pass


@hookimpl
def vsynth_register_bridges(registrar):
    registrar.register_bridge(
        BridgeSpec(
            name="none",
            description="No bridge: the VDM alone generates a video from the prompt (plain text-to-video), "
            "e.g. the low-quality source that an enhancement bridge later improves.",
            params=NoParams,
            impl="vsynth.plugins.bridges.text_to_video:TextToVideo",
            needs_idm=False,
            video="unused",
            task="text-to-video",
        )
    )
    registrar.register_bridge(
        BridgeSpec(
            name="mixed-inversion",
            description="BIVDiff: frame-wise IDM generation, Mixed Inversion (image and video DDIM inversion mixed once), "
            "then temporal smoothing by full VDM denoising.",
            paper="BIVDiff, CVPR 2024 (arXiv:2312.02813)",
            params=MixedInversionParams,
            impl="vsynth.plugins.bridges.mixed_inversion:MixedInversion",
        )
    )
