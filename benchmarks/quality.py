"""Do the papers' claims hold in the toy world? Every bridge on the same toy clips, measured against ground truth.

The toy models (``--toy``: a VAE, CLIP text encoder, SD1.5-layout T2I, a canny ControlNet and a
ZeroScope-slot UNet3D, trained on the toy world) run every bridge on the same seeded clips,
prompts and seed, as ``vsynth run`` would. Each run's run.json holds the metrics its inputs allow
(vsynth.metrics.report); this script averages them over the clips, one row per bridge:

- edge F1: control adherence, the output's Canny edges against the source's (tolerance 2 px);
- colour / background: prompt adherence on the ground-truth shape masks;
- warping error and background flicker: temporal consistency under the known rigid motion;
- mean |dF|: the mean absolute difference of consecutive frames (every run.json has it);
- shape speed: how far the shapes' centroids move per frame (the source moves them 1-3 px);
- classifier: frame quality, the share of frames in which the toy classifier sees the prompted
  shape, colour and background (single-shape clips only);
- frame evals: UNet (and ControlNet) frame evaluations; seconds: synthesis time.

BIVDiff's claim: Mixed Inversion makes the frame-wise IDM's result temporally coherent (warping
error and flicker fall) while keeping most of its control adherence, and the mixing ratio trades
one for the other. EVS's claim: the T2I's look (colour adherence) with the T2V's motion; its last
row runs EVS as its paper does, enhancing the T2V model's own generation (no source clip; SD1.5 as
the T2I), to compare with the plain text-to-video row (the same generation before enhancement).

    python benchmarks/quality.py                       # 3 clips x 8 frames, 20 steps: about 5 minutes on 2 cores
    python benchmarks/quality.py --clips 8 --steps 50  # closer to the papers' settings, slower
    python benchmarks/quality.py --vdm wan2.1-t2v-1.3b --motion   # the flow-matching Wan toy on moving clips
    python benchmarks/quality.py --vdm wan2.1-t2v-1.3b --motion --idm flux-canny --t2i flux-dev   # flow models only

``--motion`` uses clips of one shape crossing a white frame ("a red circle moving left on a white
background", 9 frames) and adds direction and speed agreement with the prompt (vsynth.metrics.motion):
the columns that show whether a result has the T2V model's motion. With a VDM of another latent space
than the IDM's (Wan's), Mixed Inversion runs video-side only (mixing ratio 0).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from vsynth.core.run.config import make_config
from vsynth.core.run.pipeline import run

ROOT = Path(__file__).resolve().parents[1]
NOT_SYNTHESIS = ("loading models", "writing", "reading inputs")
IDM_STAGES = ("preparing conditions", "frame-wise generation", "decoding IDM frames")
METRICS = (
    ("edge_f1", "edge F1 ↑"),
    ("colour_adherence", "colour ↑"),
    ("background_adherence", "background ↑"),
    ("warping_error", "warp err ↓"),
    ("background_flicker", "bg flicker ↓"),
    ("mean_abs_frame_difference", "mean abs dF"),
    ("shape_speed", "speed px/f"),
    ("classifier_accuracy", "classifier ↑"),
    ("direction_agreement", "direction ↑"),
    ("speed_agreement", "speed agr ↑"),
)


def rows(args) -> list[dict]:
    """name, bridge, idm, options, which video of the run the row reads ("final" or "idm"), needs a source."""
    canny = args.idm
    out = [
        {"name": f"{canny} frame-wise (BIVDiff stage 1)", "video": "idm", "reuse": f"mixed-inversion r={args.ratios[0]}"},
    ]
    for ratio in args.ratios:
        out.append({"name": f"mixed-inversion r={ratio}", "bridge": "mixed-inversion", "idm": canny, "options": {"mixing_ratio": ratio}})
    out += [
        {"name": "idm-only (T2I SDEdit)", "bridge": "idm-only", "idm": canny},
        {"name": "vdm-only (T2V SDEdit)", "bridge": "vdm-only", "idm": None},
        {"name": "idm-then-vdm", "bridge": "idm-then-vdm", "idm": canny},
        {"name": "vdm-then-idm", "bridge": "vdm-then-idm", "idm": canny},
        {"name": "encapsulated (EVS)", "bridge": "encapsulated", "idm": canny},
        *([] if getattr(args, "vdm_transformer", False) else  # SFI injects into a UNet decoder's self-attention
          [{"name": "encapsulated + SFI", "bridge": "encapsulated", "idm": canny, "options": {"injection": "sfi"}}]),
        {"name": "plain text-to-video", "bridge": "none", "idm": None, "source": False},
        {"name": f"encapsulated on its T2V (EVS's setting, {args.t2i})", "bridge": "encapsulated", "idm": args.t2i, "source": False},
    ]
    return out


def make_clips(folder: Path, count: int, frames: int, motion: bool = False) -> list[Path]:
    from vsynth.toy.truth import save_clip
    from vsynth.toy.world import DIRECTIONS

    paths = []
    for i in range(count):
        path = folder / f"clip{i}.mp4"
        if motion:
            save_clip(path, 100 + i, generator="make_motion_clip", frames=frames, motion=DIRECTIONS[i % 4], background="white")
        else:
            save_clip(path, 100 + i, frames=frames, n_shapes=1 + i % 2, background=("white", "gray", "black", "gradient")[i % 4])
        paths.append(path)
    return paths


def run_row(row: dict, clip: Path, caption: str, args, out: Path) -> dict:
    values = {
        "idm": row["idm"],
        "vdm": args.vdm,
        "bridge": row["bridge"],
        "prompt": caption,
        "frames": args.frames,
        "stride": 1,
        "height": args.size,
        "width": args.size,
        "steps": args.steps,
        "seed": args.seed,
        "options": row.get("options", {}),
        "toy": True,
        "device": args.device,
        "out": out,
    }
    if row.get("source", True):
        values["video"] = clip
    start = time.perf_counter()
    record = run(make_config(values)).record
    wall = time.perf_counter() - start
    return {
        "metrics": record["metrics"],  # {metric: {video: value}}
        "frame_evals": record["frame_evals"],  # {role or role.network: count}
        "timings": record["timings"],
        "wall": wall,
        "stage1_frame_evals": stage1_frame_evals(record, args),
    }


def stage1_frame_evals(record: dict, args) -> int:
    """Frame evaluations of a BIVDiff run's frame-wise stage: steps x frames, twice with classifier-free guidance (not
    FLUX's distilled guidance), twice again for a ControlNet's own network."""
    from vsynth.core.host.registry import get_registry

    spec = get_registry().model(args.idm)
    cfg = 2 if spec.guidance == "classifier-free" and record["sampling"]["guidance"] > 1 else 1
    return record["sampling"]["steps"] * args.frames * cfg * (2 if spec.architecture != "transformer" else 1)


def cost(result: dict, video: str) -> tuple[int, float]:
    """(frame evaluations, synthesis seconds) of what produced ``video``: the whole run, or its frame-wise IDM stage."""
    if video == "idm":  # stage 1 of a BIVDiff run: steps x frames x 2 (guidance), each with one ControlNet call
        return result["stage1_frame_evals"], sum(result["timings"].get(stage, 0.0) for stage in IDM_STAGES)
    return sum(result["frame_evals"].values()), sum(s for stage, s in result["timings"].items() if stage not in NOT_SYNTHESIS)


def slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-=." else "_" for c in name).strip("_")


def mean(values: list) -> float | None:
    values = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(values)) if values else None


def markdown(results: list[dict], args) -> str:
    head = ["bridge", *(label for _, label in METRICS), "frame evals", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r["name"]]
        for key, _ in METRICS:
            value = r["metrics"].get(key)
            cells.append("—" if value is None else f"{value:.3f}")
        cells += [str(r["frame_evals"]), f"{r['seconds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--frames", type=int, default=None, help="default 8, or 9 with --motion")
    parser.add_argument("--motion", action="store_true", help="clips of one shape moving as its caption says; direction and speed agreement")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps of every model (default 20: the toy models need no more)")
    parser.add_argument("--ratios", type=float, nargs="+", default=None, help="mixing ratios of Mixed Inversion (default 1.0 0.5 0.0; 0.0 for a VDM of another latent space)")
    parser.add_argument("--vdm", default="zeroscope")
    parser.add_argument("--idm", default="controlnet-canny", help="the control IDM of the bridge rows (flux-canny: the FLUX toy)")
    parser.add_argument("--t2i", default="sd15", help="the T2I of EVS's own setting (flux-dev: the FLUX toy)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quality")
    args = parser.parse_args(argv)
    args.frames = args.frames or (9 if args.motion else 8)
    from vsynth.core.host.registry import get_registry

    registry = get_registry()
    args.vdm_transformer = registry.model(args.vdm).architecture == "transformer"
    args.frames = registry.model(args.vdm).latent_space.fit_frames(args.frames)  # every row runs these (idm-only loads no VDM to round them)
    if args.ratios is None:
        same = registry.model(args.idm).latent_space == registry.model(args.vdm).latent_space
        args.ratios = [1.0, 0.5, 0.0] if same else [0.0]

    shutil.rmtree(args.out, ignore_errors=True)
    (args.out / "grids").mkdir(parents=True)
    clips = make_clips(args.out / "clips", args.clips, args.frames, args.motion)
    captions = [json.loads(c.with_suffix(".json").read_text())["caption"] for c in clips]
    done: dict[str, list[dict]] = {}
    for row in rows(args):
        if "reuse" in row:
            continue
        done[row["name"]] = []
        for i, (clip, caption) in enumerate(zip(clips, captions)):
            folder = args.out / "runs" / slug(row["name"]) / clip.stem
            done[row["name"]].append(run_row(row, clip, caption, args, folder))
            if i == 0:
                shutil.copy(folder / "grid.png", args.out / "grids" / f"{slug(row['name'])}.png")
        print(f"{row['name']}: done", flush=True)
    results = []
    for row in rows(args):
        per_clip = done[row.get("reuse", row["name"])]  # a reusing row reads another row's runs at another video
        video = row.get("video", "final")
        results.append(
            {
                "name": row["name"],
                "metrics": {key: mean([r["metrics"].get(key, {}).get(video) for r in per_clip]) for key, _ in METRICS},
                "frame_evals": int(mean([cost(r, video)[0] for r in per_clip])),
                "seconds": mean([cost(r, video)[1] for r in per_clip]),
            }
        )
    table = markdown(results, args)
    (args.out / "results.json").write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "rows": results}, indent=2) + "\n")
    (args.out / "summary.md").write_text(table + "\n")
    print(table)
    return results


if __name__ == "__main__":
    main()
