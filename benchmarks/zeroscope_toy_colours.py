"""Does every toy colour survive the old family's video model (issue 28, item 5, the ZeroScope slot)?

Issue 28's setting for each toy colour: a circle and a square of that colour crossing a white and a black
background (the first toy world's clips, 8 frames), the toy ControlNet frame by frame, then Mixed Inversion into
the ZeroScope-slot toy (``--toy --idm controlnet-canny --vdm zeroscope --bridge mixed-inversion --stride 1``, 20
steps, seed 42). For the IDM's frames and the final video: the share of the shapes' ground-truth pixels whose
nearest named colour is the prompted one, and the colour most of the others turned to. docs/toy-world.md has its
figures ("The blue that the old toy VDM loses"). Needs the toy ControlNet and ZeroScope weights; about 2 minutes.

    python benchmarks/zeroscope_toy_colours.py
    python benchmarks/zeroscope_toy_colours.py --seed 0     # another run seed (the clips stay the same)
    python benchmarks/zeroscope_toy_colours.py --vdm-weights DIR   # a ZeroScope-slot folder (a fine-tune's UNet in a copy of the slot)
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

import vsynth
from vsynth.metrics.prompt import colour_adherence
from vsynth.toy import shipped
from vsynth.toy.truth import load_ground_truth, save_clip
from vsynth.toy.tune_controlnet import CELL_BACKGROUNDS as BACKGROUNDS
from vsynth.toy.tune_controlnet import colour_cell  # the cells tune_controlnet --check measures on the ControlNet alone
from vsynth.toy.world import COLOURS, NAMED_COLOURS, nearest_colour_names

RUN = dict(idm="controlnet-canny", vdm="zeroscope", bridge="mixed-inversion", toy=True, frames=8, stride=1, steps=20, seed=42)


def shares(frames: np.ndarray, masks: np.ndarray, colour: str) -> tuple[float, str]:
    """The prompted colour's share of the shapes' pixels, and the named colour most of the rest are nearest."""
    names = tuple(NAMED_COLOURS)
    nearest = nearest_colour_names(frames, names)[masks.any(axis=1)]
    rest = Counter(names[i] for i in nearest[nearest != names.index(colour)].tolist())
    return colour_adherence(frames, masks, [colour] * masks.shape[1]), (rest.most_common(1)[0][0] if rest else "-")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=RUN["seed"], help=f"the runs' seed (default {RUN['seed']})")
    p.add_argument("--vdm-weights", default=None, help="a ZeroScope-slot folder (default: the shipped one)")
    args = p.parse_args(argv)
    weights = {"vdm_weights": args.vdm_weights} if args.vdm_weights else {}
    if not {"controlnet-canny", "zeroscope"} <= set(shipped.toy_models()):
        raise SystemExit("needs the toy ControlNet and ZeroScope weights")
    tmp = Path(tempfile.mkdtemp(prefix="zeroscope-toy-colours-"))
    print("| colour | " + " | ".join(f"{b}: IDM → final (else)" for b in BACKGROUNDS) + " |\n|---|" + "---|" * len(BACKGROUNDS))
    import imageio.v3 as iio

    finals = []
    session = vsynth.Session(display=False)  # the models load once
    for colour in COLOURS:
        cells = []
        for background in BACKGROUNDS:
            path = tmp / f"{colour}-{background}.mp4"
            seed, make_args, prompt = colour_cell(colour, background)
            save_clip(path, seed, **make_args)
            out = tmp / f"{colour}-{background}"
            result = session.run(video=path, prompt=prompt, out=out, **(RUN | {"seed": args.seed}), **weights)
            truth = load_ground_truth(path, frames=8, stride=1, size=(64, 64))
            idm = shares(iio.imread(out / "idm_frames.mp4")[: len(truth.frames)], truth.masks, colour)[0]
            final, other = shares(result.frames, truth.masks, colour)
            finals.append(final)
            cells.append(f"{idm:.2f} → {final:.2f} ({other})")
        print(f"| {colour} | " + " | ".join(cells) + " |", flush=True)
    print(f"\nmean share of the prompted colour in the final video {np.mean(finals):.2f}; below 0.5: {sum(f < 0.5 for f in finals)} of {len(finals)}")


if __name__ == "__main__":
    main()
