"""Does every toy colour survive Mixed Inversion from flux-canny into the Wan toy (issue 28, item 5, the new family)?

For each toy colour, a circle moving right across the middle of a white and of a black frame (9 frames): the toy
flux-canny frame by frame, then Mixed Inversion into the Wan toy (``--toy --idm flux-canny --vdm wan2.1-t2v-1.3b
--bridge mixed-inversion --stride 1 --frames 9``, 20 steps, seed 42). Per cell, from run.json's metrics, the IDM's
frames → the final video: the colour adherence on the ground-truth mask (the share of the circle's pixels nearest the
prompted colour: an object drawn smaller than the source's scores low even in the right colour), the detected colour
adherence (the share of the detected object's pixels nearest it: the colour whatever the size), and the final
video's direction agreement. benchmarks/zeroscope_toy_colours.py is the old family's; docs/toy-world.md has the
figures. Needs the toy FLUX and Wan weights; under a minute on one quiet CPU thread.

    python benchmarks/wan_toy_mi_colours.py [--vdm-weights DIR] [--seed N] [--steps N]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import vsynth
from vsynth.toy import shipped
from vsynth.toy.truth import save_clip
from vsynth.toy.world import COLOURS

BACKGROUNDS = ("white", "black")
RUN = dict(toy=True, idm="flux-canny", vdm="wan2.1-t2v-1.3b", bridge="mixed-inversion", frames=9, stride=1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vdm-weights", default=None, help="an exported Wan toy folder (default: the shipped one)")
    p.add_argument("--seed", type=int, default=42, help="the runs' seed (the clips stay the same)")
    p.add_argument("--steps", type=int, default=20, help="steps of both models (the CLI's default is 50)")
    args = p.parse_args(argv)
    if not {"wan2.1-t2v", "flux-canny"} <= set(shipped.toy_models()):
        raise SystemExit("the toy Wan and FLUX weights are not installed")
    weights = {"vdm_weights": args.vdm_weights} if args.vdm_weights else {}
    tmp = Path(tempfile.mkdtemp(prefix="wan-toy-mi-colours-"))
    session = vsynth.Session(display=False)
    head = " | ".join(f"{b}: colour, detected colour (IDM → final); direction" for b in BACKGROUNDS)
    print(f"| colour | {head} |\n|---|" + "---|" * len(BACKGROUNDS))
    detected = []
    for colour in COLOURS:
        cells = []
        for background in BACKGROUNDS:
            path = tmp / f"{colour}-{background}.mp4"
            clip = save_clip(path, 400, generator="make_motion_clip", frames=9, shape="circle", colour=colour, background=background,
                             motion="right", across=0.5)  # fmt: skip
            out = tmp / f"{colour}-{background}"
            m = session.run(video=path, prompt=clip.caption, out=out, seed=args.seed, steps=args.steps, **RUN, **weights).record["metrics"]
            c, d = m["colour_adherence"], m["detected_colour_adherence"]
            detected.append(d["final"])
            cells.append(f"{c['idm']:.2f} → {c['final']:.2f}, {d['idm']:.2f} → {d['final']:.2f}; {m['direction_agreement']['final']:.0f}")
        print(f"| {colour} | " + " | ".join(cells) + " |", flush=True)
    print(f"\nfinal detected colour adherence: mean {np.mean(detected):.2f}; below 0.5: {sum(v < 0.5 for v in detected)} of {len(detected)}")


if __name__ == "__main__":
    main()
