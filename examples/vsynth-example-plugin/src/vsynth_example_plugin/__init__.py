"""vsynth-example-plugin: an image model, a video model, a bridge and a metric, registered the way every vsynth plugin does.

This module is what the entry point names. It registers specs only (metadata: no torch), so
``vsynth --help`` and ``vsynth models`` stay fast; the modules named by ``impl`` are imported
when a run needs them.
"""

from __future__ import annotations

from pydantic import Field

from vsynth import hookimpl
from vsynth.core.host.specs import BridgeSpec, MetricSpec, ModelSpec, Params, WeightsSpec
from vsynth.plugins.idm import SD15, CannyParams
from vsynth.plugins.vdm import ZeroScopeParams

CANNY = WeightsSpec(role="controlnet", id="lllyasviel/control_v11p_sd15_canny", size_gb=1.4, tiny="controlnet-canny")
ZEROSCOPE = WeightsSpec(role="vdm", id="cerspense/zeroscope_v2_576w", size_gb=3.1, tiny="zeroscope")


class MixedNoiseParams(ZeroScopeParams):
    shared_noise: float = Field(
        0.2, ge=0.0, le=1.0, description="Share of every frame's initial noise common to all frames: 0 is ZeroScope's noise."
    )


class SDEditParams(Params):
    strength: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="How far the IDM frames are noised before the VDM denoises them: 0 keeps them as they are, "
        "1 starts the VDM from (nearly) pure noise.",
    )


@hookimpl
def vsynth_register_models(registrar):
    registrar.register_model(
        ModelSpec(
            name="canny-crossframe",
            kind="idm",
            task="controllable-generation",
            description="ControlNet canny whose self-attention attends to the first frame (Text2Video-Zero's "
            "cross-frame attention): consistent appearance across frames. With batch_size, per chunk.",
            weights=(CANNY, SD15),
            params=CannyParams,
            impl="vsynth_example_plugin.cross_frame:CrossFrameCanny",
            needs=("video|condition_video",),  # edges of the source video, or edge maps given as --condition-video
            bridge_defaults={"mixed-inversion": {"mixing_ratio": 1.0}},
        )
    )
    registrar.register_model(
        ModelSpec(
            name="zeroscope-mixednoise",
            kind="vdm",
            description="ZeroScope whose initial noise is partly shared by all frames (PYoCo's mixed noise): less flicker.",
            weights=(ZEROSCOPE,),
            params=MixedNoiseParams,
            impl="vsynth_example_plugin.mixed_noise:MixedNoiseZeroScope",
            native_size=(320, 576),
        )
    )


@hookimpl
def vsynth_register_bridges(registrar):
    registrar.register_bridge(
        BridgeSpec(
            name="sdedit",
            description="Frame-wise IDM generation, then SDEdit with the VDM: the IDM latents are noised to "
            "`strength` and the VDM denoises the rest (cheap temporal smoothing, no inversion).",
            paper="SDEdit, ICLR 2022 (arXiv:2108.01073)",
            params=SDEditParams,
            impl="vsynth_example_plugin.sdedit:SDEdit",
        )
    )


@hookimpl
def vsynth_register_metrics(registrar):
    registrar.register_metric(
        MetricSpec(
            name="sharpness",
            description="Variance of each frame's Laplacian (grey levels squared): low for blurred or washed-out frames.",
            impl="vsynth_example_plugin.sharpness:Sharpness",
            higher_is_better=True,
            unit="grey levels squared",
            # needs=("prompt",) / ("source",) / ("condition",) / ("truth",): what else it reads, from vsynth.core.run.measure.Sample
            # default=True would measure it on every run; without it, `--metrics default,sharpness` asks for it
        )
    )
