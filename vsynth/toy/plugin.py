"""The toy world as a plugin: its ground truth (a world) and the metrics that read it, registered through the
same hook as every metric, so that the run pipeline measures toy clips without knowing the toy world.

Specs only; the implementations are in :mod:`vsynth.toy.measures`.
"""

from __future__ import annotations

from vsynth import hookimpl
from vsynth.core.host.specs import MetricSpec, WorldSpec

IMPL = "vsynth.toy.measures"


@hookimpl
def vsynth_register_metrics(registrar):
    registrar.register_world(
        WorldSpec(
            name="toy",
            description="Procedural clips of coloured shapes with their ground truth (a NAME.json beside NAME.mp4), and "
            "the trained 64x64 toy models (`vsynth run --toy`).",
            impl=f"{IMPL}:ToyWorld",
            size=(64, 64),
            stride=1,
        )
    )
    for name, needs, higher, description in (
        ("warping_error", ("truth",), False, "Toy clips: shape pixels against the previous frame moved by the known motion (0..1)."),
        ("background_flicker", ("truth",), False, "Toy clips: mean change of the background pixels between frames (0..1)."),
        ("colour_adherence", ("truth", "prompt"), True, "Toy clips: share of shape pixels of the prompted colour."),
        ("background_adherence", ("truth", "prompt"), True, "Toy clips: share of background pixels of the prompted background."),
        ("detected_colour_adherence", ("prompt",), True, "Toy prompts: share of non-background pixels of a prompted colour."),
        ("shape_speed", ("prompt",), None, "Toy prompts: how far the prompted colours' centroids move per frame (pixels)."),
        ("classifier_accuracy", ("prompt",), True, "One-shape toy prompts: share of frames the toy classifier sees as prompted."),
        ("direction_agreement", ("prompt",), True, "Toy motion prompts: 1 when the prompted object moves the prompted way."),
        ("speed_agreement", ("prompt",), True, "Toy motion prompts: 1 - |measured - prompted speed| / prompted speed."),
    ):
        impl = "".join(part.title() for part in name.split("_"))
        registrar.register_metric(
            MetricSpec(name=name, description=description, impl=f"{IMPL}:{impl}", needs=needs, default=True, higher_is_better=higher)
        )
