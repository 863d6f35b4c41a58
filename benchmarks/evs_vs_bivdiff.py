"""EVS (encapsulated) versus BIVDiff (mixed-inversion) on one input: UNet frame evaluations and wall time.

Both run through the library as ``vsynth run`` would, on the same source video, frames, size,
prompt and seed, with AnimateDiff-Lightning's 8-step checkpoint as the VDM (the paper's T_V = 8):

- EVS with its defaults: T2I SDEdit at strength 0.4 of 50 steps (20 steps, plus the one re-run
  after the block), one [T2V] block of 4 Lightning steps from t_V = step 4 of 8.
- BIVDiff at its official defaults: 50 frame-wise IDM steps from noise, 50 image-inversion steps
  (mixing ratio 1.0 for ControlNet), 8 steps of temporal smoothing. An IDM with an SDEdit
  ``strength`` (sd15) generates from noise, strength 1.0, as the EVS paper runs BIVDiff.

A frame evaluation is one frame through one network call (classifier-free guidance counts twice).
The UNets' are reported apart from those of the networks that condition them (``idm.controlnet``,
``idm.adapter`` in run.json), and the ratio is given for both: all networks, and UNets alone.
Synthesis time is every stage of the run except loading the models and writing the outputs.

    python benchmarks/evs_vs_bivdiff.py                 # tiny models on the CPU, under 3 minutes
    python benchmarks/evs_vs_bivdiff.py --json out.json
    python benchmarks/evs_vs_bivdiff.py --vdm wan2.1-t2v-1.3b --frames 5   # with Wan (flow, its own latent space)
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from vsynth.core.run.config import make_config
from vsynth.core.run.pipeline import run

ROOT = Path(__file__).resolve().parents[1]
NOT_SYNTHESIS = ("loading models", "writing")
UNETS = ("idm", "vdm")  # run.json's other keys (ROLE.NAME) count ControlNets and adapters
LIGHTNING = "animatediff-lightning"


def method(name: str, bridge: str, idm: str, **options) -> dict:
    return {"name": name, "bridge": bridge, "idm": idm, "options": options}


def from_noise(idm: str) -> dict:
    """``idm.strength=1.0`` for an IDM that would otherwise SDEdit the source (BIVDiff's s_I = 1.0)."""
    from vsynth.core.host.registry import get_registry

    return {"idm.strength": 1.0} if "strength" in get_registry().model(idm, "idm").params.model_fields else {}


def run_one(spec: dict, args, out: Path) -> dict:
    config = make_config(
        {
            "idm": spec["idm"],
            "vdm": args.vdm,
            "bridge": spec["bridge"],
            "video": args.video,
            "prompt": args.prompt,
            "frames": args.frames,
            "height": args.size,
            "width": args.size,
            "steps": args.steps,
            "seed": args.seed,
            "options": {**({"checkpoint_steps": 8} if args.vdm == LIGHTNING else {}), **spec["options"]},
            **({} if args.vdm == LIGHTNING else {"vdm_steps": 8}),
            "tiny": args.tiny,
            "device": args.device,
            "out": out,
        }
    )
    record = run(config).record
    timings = record["timings"]
    return {
        **spec,
        "nfe": record["nfe"],
        "frame_evals": record["frame_evals"],
        "unet_frame_evals": sum(n for key, n in record["frame_evals"].items() if key in UNETS),
        "total_frame_evals": sum(record["frame_evals"].values()),
        "synthesis_seconds": round(sum(s for stage, s in timings.items() if stage not in NOT_SYNTHESIS), 3),
        "timings": timings,
        "bridge_params": record["bridge"]["params"],
    }


def table(evs: dict, bivdiff: dict, ratios: dict) -> str:
    def roles(values: dict) -> str:
        return " / ".join(str(values.get(role, 0)) for role in UNETS)

    def conditioning(result: dict) -> int:
        return result["total_frame_evals"] - result["unet_frame_evals"]

    rows = [
        ("", "EVS", "BIVDiff"),
        ("bridge", evs["bridge"], bivdiff["bridge"]),
        ("IDM", evs["idm"], bivdiff["idm"]),
        ("UNet calls idm / vdm", roles(evs["nfe"]), roles(bivdiff["nfe"])),
        ("UNet frame evals idm / vdm", roles(evs["frame_evals"]), roles(bivdiff["frame_evals"])),
        ("ControlNet/adapter frame evals", conditioning(evs), conditioning(bivdiff)),
        ("frame evals, all networks", evs["total_frame_evals"], bivdiff["total_frame_evals"]),
        ("synthesis seconds", evs["synthesis_seconds"], bivdiff["synthesis_seconds"]),
    ]
    width = max(len(str(r[0])) for r in rows) + 2
    lines = [f"{r[0]:<{width}}{r[1]!s:>18}{r[2]!s:>18}" for r in rows]
    lines.append(
        f"BIVDiff / EVS: {ratios['frame_evals']:.2f}x frame evaluations of all networks "
        f"({ratios['unet_frame_evals']:.2f}x of the UNets alone), {ratios['wall_time']:.2f}x wall time"
    )
    for result in (evs, bivdiff):
        stages = ", ".join(f"{stage} {s:.2f}" for stage, s in result["timings"].items() if stage not in NOT_SYNTHESIS)
        lines.append(f"{result['name']} stages (s): {stages}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=ROOT / "examples" / "shapes.mp4")
    parser.add_argument("--prompt", default="a red ball and a blue box, high quality")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=128, help="height and width (default 128)")
    parser.add_argument("--steps", type=int, default=50, help="IDM steps of both methods (default 50, the papers')")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--bivdiff-idm", default="controlnet-canny", help="BIVDiff's IDM (default controlnet-canny)")
    parser.add_argument("--evs-idm", default="sd15", help="EVS's IDM (default sd15; the paper uses the SD1.5 finetune epiCRealism)")
    parser.add_argument("--vdm", default=LIGHTNING, help="the VDM of both (default animatediff-lightning with its 8-step checkpoint; "
                        "another VDM samples 8 steps too, e.g. wan2.1-t2v-1.3b; Wan needs 1 + 4k frames)")
    parser.add_argument("--tiny", action=argparse.BooleanOptionalAction, default=True, help="tiny offline models (default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        evs = run_one(method("EVS", "encapsulated", args.evs_idm), args, Path(tmp) / "evs")
        bivdiff_method = method("BIVDiff", "mixed-inversion", args.bivdiff_idm, **from_noise(args.bivdiff_idm))
        bivdiff = run_one(bivdiff_method, args, Path(tmp) / "bivdiff")
    ratios = {
        "frame_evals": round(bivdiff["total_frame_evals"] / evs["total_frame_evals"], 3),
        "unet_frame_evals": round(bivdiff["unet_frame_evals"] / evs["unet_frame_evals"], 3),
        "wall_time": round(bivdiff["synthesis_seconds"] / evs["synthesis_seconds"], 3),
    }
    print(table(evs, bivdiff, ratios))
    figures = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "json"},
        "evs": evs,
        "bivdiff": bivdiff,
        "ratios": ratios,
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
