"""Window seams in the toy world: is a long video as coherent where its temporal windows meet as inside them?

A VDM denoises a clip longer than its window in overlapping windows (vsynth.core.diffusion.windows).
This script runs Mixed Inversion (toy ControlNet canny + the toy ZeroScope-slot T2V) on toy clips
longer than the window, as ``vsynth run --toy`` would, once as a single window (the reference)
and once per noise schedule (``independent``, ``freenoise``) in short windows, and measures each
consecutive frame pair against the clip's ground truth: warping error (shapes) and background
flicker. Mixed Inversion starts the VDM from inverted latents, not from noise, so the noise
schedule cannot change it; plain text-to-video with the same prompt does start from noise, and is
measured by the mean absolute difference of each pair (no ground truth there). A pair is a *seam*
pair when its two frames are not covered by the same set of windows. Seams are fine when seam
pairs are no worse than the pairs inside the windows.

    python benchmarks/seams.py                     # 2 clips x 24 frames, windows of 8 sharing 2: a few minutes on 2 cores
    python benchmarks/seams.py --clips 4 --frames 32
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from vsynth.core.diffusion.windows import spans
from vsynth.core.run.config import make_config
from vsynth.core.run.pipeline import run
from vsynth.metrics.temporal import background_flicker, warping_error
from vsynth.toy.truth import load_ground_truth, save_clip

ROOT = Path(__file__).resolve().parents[1]


def seam_pairs(frames: int, window: int, overlap: int) -> list[bool]:
    """For each pair (t, t+1): True when frames t and t+1 are not in the same windows."""
    windows = spans(frames, window, overlap)
    cover = [frozenset(i for i, (a, b) in enumerate(windows) if a <= t < b) for t in range(frames)]
    return [cover[t] != cover[t + 1] for t in range(frames - 1)]


def per_pair(frames: np.ndarray, truth) -> tuple[list[float], list[float]]:
    """Warping error and background flicker of each consecutive pair."""
    warp = [warping_error(frames[t : t + 2], truth.masks[t : t + 2], truth.positions[t : t + 2]) for t in range(len(frames) - 1)]
    flicker = [background_flicker(frames[t : t + 2], truth.masks[t : t + 2]) for t in range(len(frames) - 1)]
    return warp, flicker


def split(values: list[float], seams: list[bool]) -> tuple[float, float]:
    """(mean over seam pairs, mean over the other pairs)."""
    values, seams = np.array(values), np.array(seams)
    return float(values[seams].mean()), float(values[~seams].mean())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--window", type=int, default=8, help="frames per window (the toy T2V was trained on 8)")
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "seams")
    args = parser.parse_args(argv)

    shutil.rmtree(args.out, ignore_errors=True)
    seams = seam_pairs(args.frames, args.window, args.overlap)
    settings = {
        "one window (reference)": {"window": args.frames, "overlap": 0},
        "independent noise": {"window": args.window, "overlap": args.overlap, "noise": "independent"},
        "freenoise": {"window": args.window, "overlap": args.overlap, "noise": "freenoise"},
    }
    per_run = {name: {"warp": [], "flicker": [], "t2v_diff": [], "seam": []} for name in settings}
    for i in range(args.clips):
        clip = args.out / "clips" / f"clip{i}.mp4"
        save_clip(clip, 200 + i, frames=args.frames, n_shapes=1, background=("white", "gray", "black", "gradient")[i % 4])
        caption = json.loads(clip.with_suffix(".json").read_text())["caption"]
        truth = load_ground_truth(clip, frames=args.frames, stride=1, size=(64, 64))
        common = dict(prompt=caption, frames=args.frames, stride=1, steps=args.steps, seed=42, toy=True)
        for name, options in settings.items():
            slug = name.split()[0]
            bivdiff = run(make_config(dict(idm="controlnet-canny", vdm="zeroscope", bridge="mixed-inversion", video=clip, options=options,
                                           out=args.out / "runs" / slug / clip.stem, **common))).frames  # fmt: skip
            warp, flicker = per_pair(bivdiff, truth)
            t2v = run(make_config(dict(vdm="zeroscope", options=options, out=args.out / "runs" / f"t2v-{slug}" / clip.stem, **common))).frames
            diff = np.abs(np.diff(t2v.astype(np.float32), axis=0)).mean(axis=(1, 2, 3)) / 255.0
            per_run[name]["warp"] += warp
            per_run[name]["flicker"] += flicker
            per_run[name]["t2v_diff"] += diff.tolist()
            per_run[name]["seam"] += seams
        print(f"clip {i}: done", flush=True)

    rows = {}
    for name, values in per_run.items():
        rows[name] = {
            metric: dict(zip(("seam", "inside"), split(values[metric], values["seam"]))) for metric in ("warp", "flicker", "t2v_diff")
        }
    windows = spans(args.frames, args.window, args.overlap)
    lines = [
        f"{args.clips} clips x {args.frames} frames, {args.steps} steps; windows {windows} ({sum(seams)} of {len(seams)} pairs are seam pairs)",
        "",
        "| run | BIVDiff warp err, seam / inside | BIVDiff bg flicker, seam / inside | plain T2V mean abs dF, seam / inside |",
        "|---|---|---|---|",
    ]
    for name, r in rows.items():
        cells = [f"{r[m]['seam']:.3f} / {r[m]['inside']:.3f}" for m in ("warp", "flicker", "t2v_diff")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    summary = "\n".join(lines)
    (args.out / "summary.md").write_text(summary + "\n")
    (args.out / "results.json").write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2) + "\n")
    print(summary)
    return rows


if __name__ == "__main__":
    main()
