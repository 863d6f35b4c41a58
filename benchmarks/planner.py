"""The memory planner's figures for the large models at their native size, from their real configs
(vsynth/configs): estimated peak per --offload mode, in GiB, on a GPU in bfloat16. Nothing is
downloaded or loaded: weights are counted from the configs' parameter counts on the meta device.

    python benchmarks/planner.py [--quantize int8|fp8|nf4] [NAME ...]
"""

from __future__ import annotations

import sys

from vsynth.core.host.registry import get_registry
from vsynth.core.run.memory import estimate

DEFAULT = ["wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.2-ti2v-5b", "wan2.2-t2v-a14b", "wan2.1-vace-1.3b", "wan2.1-vace-14b", "ltx-video",
           "cogvideox-2b", "cogvideox-5b"]  # fmt: skip
DEFAULT += ["hunyuanvideo", "animatediff-sdxl"]


def figures(name: str, quantize: str = "none") -> dict:
    spec = get_registry().model(name)
    params = spec.params()
    frames = spec.max_frames or 16
    height, width = spec.native_size or (512, 512)
    sources = {"vdm": {w.role: w.id for w in spec.weights}}
    guidance = {"vdm": 5.0}
    plan = estimate({"vdm": spec}, sources, {"vdm": params}, frames=frames, height=height, width=width, guidance=guidance,
                    dtype="bfloat16", device="mps", offload="none", quantize=quantize)  # fmt: skip  (a device whose free memory is not measured)
    gib = lambda b: round(b / 2**30, 1)  # noqa: E731
    return {"model": name, "size": f"{frames} x {height}x{width}", "weights": gib(plan.weights), "activations": gib(plan.activations),
            **{f"peak, offload {mode}": gib(peak) for mode, peak in plan.peaks.items()}}  # fmt: skip


def main(args: list[str]) -> None:
    quantize = "none"
    if args[:1] == ["--quantize"]:
        quantize, args = args[1], args[2:]
    rows = [figures(name, quantize) for name in args or DEFAULT]
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
