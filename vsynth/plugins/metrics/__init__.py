"""Built-in metrics: specs only (no torch). The implementations are in :mod:`vsynth.plugins.metrics.builtin`.

The field's video-synthesis numbers: CLIP text alignment and frame consistency (transformers'
CLIPModel), flow warping error (torchvision's RAFT), flicker, and control adherence (the condition
re-detected on the output by the run's own detector). The ``default`` ones are cheap (no weights)
and measured on every run; ``vsynth eval`` measures every metric a video's inputs allow.
"""

from __future__ import annotations

from vsynth import hookimpl
from vsynth.core.host import layouts
from vsynth.core.host.specs import MetricSpec, WeightsSpec

IMPL = "vsynth.plugins.metrics.builtin"

CLIP = WeightsSpec(
    role="clip",
    id="openai/clip-vit-base-patch32",
    size_gb=0.6,
    tiny="clip",
    files=(*layouts.transformers_model(), "preprocessor_config.json"),
)
RAFT = WeightsSpec(
    role="raft",
    # torchvision's published RAFT-large (C+T+S+K+H, v2), downloaded by torchvision into torch's hub cache;
    # or a local folder with model.safetensors (+ config.json {"arch": "raft_large" | "raft_small"}) or a .pth file.
    id="torchvision:raft_large",
    size_gb=0.02,
    tiny="raft",
)


@hookimpl
def vsynth_register_metrics(registrar):
    for spec in (
        MetricSpec(
            name="mean_abs_frame_difference",
            description="Mean absolute change between consecutive frames (0..1): motion and flicker together.",
            impl=f"{IMPL}:FrameDifference",
            default=True,
            higher_is_better=None,
            unit="0..1",
        ),
        MetricSpec(
            name="flicker",
            description="Mean absolute change of a frame's mean brightness between consecutive frames (0..1): global "
            "flicker, blind to motion.",
            impl=f"{IMPL}:Flicker",
            default=True,
            higher_is_better=False,
            unit="0..1",
        ),
        MetricSpec(
            name="edge_f1",
            description="F1 of the output's Canny edges against a Canny condition's, within 2 pixels (the run's thresholds).",
            impl=f"{IMPL}:EdgeF1",
            needs=("condition",),
            default=True,
            higher_is_better=True,
            unit="0..1",
        ),
        MetricSpec(
            name="control_adherence",
            description="The condition re-detected on the output with the run's own detector, against the source's: "
            "edge F1 (canny), 1 - mean depth error (depth), F1 of the drawn skeletons within 4 pixels (pose), 1 - mean "
            "map difference (another detector).",
            impl=f"{IMPL}:ControlAdherence",
            needs=("condition",),
            higher_is_better=True,
            unit="0..1",
        ),
        MetricSpec(
            name="text_alignment",
            description="CLIP score of each frame against the prompt: 100 x max(cosine, 0) of CLIP's image and text "
            "embeddings (as torchmetrics' CLIPScore), averaged over frames.",
            impl=f"{IMPL}:TextAlignment",
            needs=("prompt",),
            weights=(CLIP,),
            higher_is_better=True,
            unit="CLIP score, 0..100",
        ),
        MetricSpec(
            name="frame_consistency",
            description="Cosine similarity x 100 of the CLIP image embeddings of consecutive frames, averaged.",
            impl=f"{IMPL}:FrameConsistency",
            weights=(CLIP,),
            higher_is_better=True,
            unit="cosine x 100",
        ),
        MetricSpec(
            name="flow_warping_error",
            description="Each frame warped onto the next along RAFT's optical flow (torchvision), mean absolute error "
            "(0..1) where the flow is forward-backward consistent. Without torchvision: OpenCV's DIS flow, said in the record.",
            impl=f"{IMPL}:FlowWarpingError",
            weights=(RAFT,),
            higher_is_better=False,
            unit="0..1",
        ),
    ):
        registrar.register_metric(spec)
