"""Does every toy colour keep its colour and its direction through the Wan toy's own generation?

"a COLOUR circle moving DIRECTION on a white background" for every toy colour and direction (vsynth.toy.world), 9 frames,
20 steps, seed 42, at the default guidance: the detected colour adherence and the direction agreement of each run
(run.json's metrics), as a table, for the shipped Wan toy or an exported folder. Issue 28's item 5 for the new
family; docs/toy-world.md has its figures. Needs the toy Wan weights; about 2 minutes.

    python benchmarks/wan_toy_colours.py [--vdm-weights DIR]
"""

from __future__ import annotations

import argparse

import numpy as np

import vsynth
from vsynth.toy import shipped
from vsynth.toy.world import COLOURS, DIRECTIONS


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vdm-weights", default=None, help="an exported Wan toy folder (default: the shipped one)")
    args = p.parse_args(argv)
    if "wan2.1-t2v" not in shipped.toy_models():
        raise SystemExit("needs the toy Wan weights (vsynth/toy/weights/wan2.1-t2v)")
    weights = {"vdm_weights": args.vdm_weights} if args.vdm_weights else {}
    print("| colour | " + " | ".join(DIRECTIONS) + " |\n|---|" + "---|" * len(DIRECTIONS))
    scores = []
    for colour in COLOURS:
        cells = []
        for direction in DIRECTIONS:
            prompt = f"a {colour} circle moving {direction} on a white background"
            m = vsynth.run(vdm="wan2.1-t2v-1.3b", bridge="none", prompt=prompt, toy=True, frames=9, steps=20, seed=42, **weights).record["metrics"]
            score = (m["detected_colour_adherence"]["final"], m["direction_agreement"]["final"])
            scores.append(score)
            cells.append(f"{score[0]:.2f} / {score[1]:.0f}")
        print(f"| {colour} | " + " | ".join(cells) + " |", flush=True)
    a = np.array(scores)
    print(f"\nmean colour adherence {a[:, 0].mean():.3f}; direction agreement {a[:, 1].mean():.3f} ({int(a[:, 1].sum())}/{len(a)})")


if __name__ == "__main__":
    main()
