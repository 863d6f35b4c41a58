"""FlowEdit in the toy world: a red-to-blue edit of a moving circle, against Mixed Inversion with the same models.

Each clip is one of the moving toy world's (the Wan toy's training distribution): a red circle crossing a
white frame right, left or up; the source prompt is its caption ("a red circle moving right on a white
background"), the target the same with "blue" for "red". Every row edits the same clips with the same
seed, as ``vsynth run`` would, and is measured against the clip's ground truth:

- blue share ↑: the share of the circle's ground-truth pixels (the source's track) whose nearest named
  colour is blue: the edit done where it should be;
- track ↑: the share of frames in which the centroid of the blue pixels lies within the circle's radius
  of its true centre: the source's motion kept;
- square kept ↑: with a second shape in the clip (a green square: ``--two-shapes``), the share of its
  pixels still nearest green;
- bg edges ↑: F1 (2 px) of the output's Canny edges against the source's, outside the circle (dilated
  by 3 px): the rest of the picture kept;
- bg |Δ| ↓: the mean absolute difference from the source outside the circle, in grey levels /255;
- frame evals (every network, run.json) and seconds (synthesis, without loading and writing).

Rows: flow-edit with the VDM alone, flow-edit with an IDM (a text-to-image flow IDM editing by FlowEdit
frame-wise; a control IDM by its own generation), Mixed Inversion with those IDMs, and the VDM's plain
SDEdit (vdm-only) for scale.

    python benchmarks/flow_edit.py            # the toy flow models (--toy: flux-dev, flux-canny, wan2.1-t2v-1.3b)
    python benchmarks/flow_edit.py --tiny     # random tiny weights: only the costs (evaluations, seconds) mean something

Without toy weights for the flow models (they come with the moving toy world), it says so and stops;
``--tiny`` still measures the costs at the models' default steps.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from vsynth.core.run.config import make_config
from vsynth.core.run.pipeline import run

ROOT = Path(__file__).resolve().parents[1]
NOT_SYNTHESIS = ("loading models", "writing", "reading inputs")
VDM = "wan2.1-t2v-1.3b"
TOY_MODELS = (VDM, "flux-dev", "flux-canny", "controlnet-canny")
COLUMNS = (("blue_share", "blue share ↑"), ("track", "track ↑"), ("square_kept", "square kept ↑"),
           ("bg_edges", "bg edges ↑"), ("bg_diff", "bg |Δ| ↓"))  # fmt: skip


def rows() -> list[dict]:
    """name, bridge, idm, options."""
    return [
        {"name": "flow-edit (VDM alone)", "bridge": "flow-edit", "idm": None},
        {"name": "flow-edit + flux-dev (FlowEdit frame-wise)", "bridge": "flow-edit", "idm": "flux-dev"},
        {"name": "flow-edit + flux-canny (own generation)", "bridge": "flow-edit", "idm": "flux-canny"},
        {"name": "mixed-inversion + flux-canny", "bridge": "mixed-inversion", "idm": "flux-canny"},
        {"name": "mixed-inversion + flux-dev (SDEdit)", "bridge": "mixed-inversion", "idm": "flux-dev"},
        # across processes (a VP image model): the toy world's trained ControlNet, while no toy FLUX ships
        {"name": "mixed-inversion + controlnet-canny (VP)", "bridge": "mixed-inversion", "idm": "controlnet-canny"},
        {"name": "vdm-only (T2V SDEdit)", "bridge": "vdm-only", "idm": None},
    ]


def toy_models_missing() -> list[str]:
    """The models of this benchmark without shipped toy weights."""
    from vsynth.core.host.registry import get_registry
    from vsynth.toy.shipped import toy_models

    registry, shipped = get_registry(), set(toy_models())
    missing = []
    for name in TOY_MODELS:
        spec = registry.model(name, "vdm" if name == VDM else "idm")
        if any(w.toy is None or w.toy not in shipped for w in spec.weights):
            missing.append(name)
    return missing


def make_clips(folder: Path, count: int, frames: int, size: int, two_shapes: bool = False) -> list[Path]:
    from vsynth.toy.truth import save_clip

    paths = []
    for i in range(count):
        path = folder / f"clip{i}.mp4"
        if two_shapes:  # the first toy world's drifting shapes, which the Wan toy never saw
            background = ("white", "gray", "black")[i % 3]
            save_clip(path, 200 + i, frames=frames, size=size, shapes=[("circle", "red"), ("square", "green")], background=background)
        else:
            motion = ("right", "left", "up")[i % 3]
            save_clip(path, 200 + i, generator="make_motion_clip", frames=frames, size=size, motion=motion, background="white",
                      colour="red", shape="circle")  # fmt: skip
        paths.append(path)
    return paths


def edge_agreement_outside(frames: np.ndarray, source: np.ndarray, masks: np.ndarray, tolerance: int = 2, margin: int = 3) -> float:
    """F1 of ``frames``' Canny edges against ``source``'s, outside ``masks`` (bool (F, H, W)) dilated by ``margin`` px;
    NaN when the source has no edges there (a plain background: then bg |Δ| alone says whether it was kept)."""
    import cv2

    from vsynth.metrics.control import canny_edges

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance + 1, 2 * tolerance + 1))
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    scores, any_ref = [], False
    for out, ref, mask in zip(canny_edges(frames), canny_edges(source), masks):
        outside = cv2.dilate(mask.astype(np.uint8), grow) == 0
        out, ref = out & outside, ref & outside
        any_ref |= bool(ref.any())
        if not out.any() and not ref.any():
            scores.append(1.0)
            continue
        precision = (out & (cv2.dilate(ref.astype(np.uint8), kernel) > 0)).sum() / max(out.sum(), 1)
        recall = (ref & (cv2.dilate(out.astype(np.uint8), kernel) > 0)).sum() / max(ref.sum(), 1)
        scores.append(0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall)))
    return float(np.mean(scores)) if any_ref else float("nan")


def measure(frames: np.ndarray, truth) -> dict[str, float]:
    """The edit's scores against the clip's ground truth (circle: shape 0, square: shape 1)."""
    from vsynth.toy.world import NAMED_COLOURS, nearest_colour_names

    names = tuple(NAMED_COLOURS)
    nearest = nearest_colour_names(frames, names)
    circle = truth.masks[:, 0]
    square = truth.masks[:, 1] if truth.masks.shape[1] > 1 else np.zeros_like(circle)
    blue = nearest == names.index("blue")
    hits = []
    for f in range(len(frames)):
        ys, xs = np.nonzero(blue[f])
        if len(xs) == 0:
            hits.append(False)
            continue
        centre = np.array([xs.mean(), ys.mean()]) + 0.5  # positions are (x, y), pixel centres at +0.5
        hits.append(bool(np.linalg.norm(centre - truth.positions[f, 0]) <= truth.sizes[0]))
    outside = ~circle
    diff = np.abs(frames.astype(np.float32) - truth.frames.astype(np.float32)).mean(axis=-1) / 255
    return {
        "blue_share": float(blue[circle].mean()) if circle.any() else float("nan"),
        "track": float(np.mean(hits)),
        "square_kept": float((nearest[square] == names.index("green")).mean()) if square.any() else float("nan"),
        "bg_edges": edge_agreement_outside(frames, truth.frames, circle),
        "bg_diff": float(diff[outside].mean()),
    }


def run_row(row: dict, clip: Path, caption: str, args, out: Path) -> dict:
    values = {
        "idm": row["idm"],
        "vdm": VDM,
        "bridge": row["bridge"],
        "video": clip,
        "prompt": caption.replace("red", "blue"),
        "frames": args.frames,
        "stride": 1,
        "height": args.size,
        "width": args.size,
        "seed": args.seed,
        "options": row.get("options", {}),
        "device": args.device,
        "out": out,
        ("tiny" if args.tiny else "toy"): True,
    }
    if row["bridge"] == "flow-edit":
        values["source_prompt"] = caption
    if args.steps is not None:
        values["steps"] = args.steps
    start = time.perf_counter()
    report = run(make_config(values))
    wall = time.perf_counter() - start
    record = report.record
    return {
        "frames": report.frames,
        "frame_evals": sum(record["frame_evals"].values()),
        "nfe": record["nfe"],
        "seconds": sum(s for stage, s in record["timings"].items() if stage not in NOT_SYNTHESIS),
        "wall": wall,
    }


def mean(values: list) -> float | None:
    values = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(values)) if values else None


def markdown(results: list[dict], tiny: bool) -> str:
    columns = () if tiny else COLUMNS
    head = ["bridge", *(label for _, label in columns), "forwards (per model)", "frame evals", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r["name"], *("—" if r[key] is None else f"{r[key]:.3f}" for key, _ in columns)]
        cells += [", ".join(f"{k} {v}" for k, v in r["nfe"].items()), str(r["frame_evals"]), f"{r['seconds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> list[dict] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--frames", type=int, default=9, help="frames per clip (Wan's VAE holds 1 + 4k)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=None, help="steps of every model (default: each model's own: Wan 50, FLUX dev 28)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tiny", action="store_true", help="random tiny weights: measure only the costs")
    parser.add_argument("--two-shapes", action="store_true", help="the first toy world's clips: a red circle and a green square")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "flow_edit")
    args = parser.parse_args(argv)

    chosen = rows()
    if not args.tiny:
        missing = toy_models_missing()
        if VDM in missing:
            print(f"no toy weights for {VDM} (it comes with the moving toy world): nothing measured; "
                  "`--tiny` measures the costs alone", file=sys.stderr)  # fmt: skip
            return None
        if missing:  # the rows of the models that have toy weights; say which are left out
            print(f"no toy weights for {', '.join(missing)}: their rows are left out", file=sys.stderr)
            chosen = [row for row in chosen if row["idm"] not in missing]
    from vsynth.toy.truth import load_ground_truth

    shutil.rmtree(args.out, ignore_errors=True)
    clips = make_clips(args.out / "clips", args.clips, args.frames, args.size, args.two_shapes)
    captions = [json.loads(c.with_suffix(".json").read_text())["caption"] for c in clips]
    results = []
    for row in chosen:
        per_clip = []
        for clip, caption in zip(clips, captions):
            done = run_row(row, clip, caption, args, args.out / "runs" / row["name"].split(" (")[0].replace(" ", "") / clip.stem)
            truth = load_ground_truth(clip, frames=args.frames, stride=1, size=(args.size, args.size))
            per_clip.append({**done, **measure(done.pop("frames"), truth)})
        results.append({
            "name": row["name"],
            **{key: mean([r[key] for r in per_clip]) for key, _ in COLUMNS},
            "nfe": per_clip[0]["nfe"],
            "frame_evals": int(mean([r["frame_evals"] for r in per_clip])),
            "seconds": mean([r["seconds"] for r in per_clip]),
        })  # fmt: skip
        print(f"{row['name']}: done", flush=True)
    table = markdown(results, args.tiny)
    settings = {k: str(v) for k, v in vars(args).items()}
    (args.out / "results.json").write_text(json.dumps({"settings": settings, "rows": results}, indent=2) + "\n")
    (args.out / "summary.md").write_text(table + "\n")
    print(table)
    return results


if __name__ == "__main__":
    main()
