"""Does Mixed Inversion into the Wan toy flicker less than flux-canny frame by frame on every toy background?

Issue 28's second Done-when at the CLI's defaults (50 steps, guidance 5, every source frame under ``--toy``) with
``--frames 9`` (``--frames 8``, the CLI's default, runs as 5), on the clips a user gets from ``vsynth toy examples
--motion`` (one shape moving left, right, up or down over any toy background):
``--toy --idm flux-canny --vdm wan2.1-t2v-1.3b --bridge mixed-inversion`` against ``--bridge idm-only`` with the
same models and seed. For each: the final video's background flicker, its brightness flicker (run.json's
``flicker``: the change of the frames' mean brightness) and warping error (the shape's own change under the known
motion), its background adherence (the share of background pixels nearest the prompted background) and its
direction agreement, from run.json's metrics; the last lines count the clips where Mixed Inversion is below
idm-only on each of the three temporal measures.
docs/toy-world.md ("Seventh session", "Ninth session", "Eleventh session") has its figures. Needs the toy FLUX and Wan
weights; about 8 minutes (3 at ``--frames 8``).

    python benchmarks/wan_toy_backgrounds.py                       # the shipped toy weights
    python benchmarks/wan_toy_backgrounds.py --vdm-weights DIR     # an exported Wan toy folder
    python benchmarks/wan_toy_backgrounds.py --frames 8            # the CLI's default --frames (run as 5 on Wan's 1 + 4k rule)
    python benchmarks/wan_toy_backgrounds.py --frames 8 --source-as-idm-frames   # the Wan toy's own floor (below)

``--source-as-idm-frames`` hands Mixed Inversion the source clip itself as flux-canny's frames (frames that do not
flicker and show the object exactly): what is left of its flicker is the Wan toy's inversion and regeneration.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

import numpy as np

import vsynth
from vsynth.toy import shipped
from vsynth.toy.truth import save_clip

RUN = dict(toy=True, idm="flux-canny", vdm="wan2.1-t2v-1.3b", stride=1, seed=42)
BRIDGES = ("mixed-inversion", "idm-only")
KEYS = ("background_flicker", "flicker", "warping_error", "background_adherence", "direction_agreement")
TEMPORAL = ("background_flicker", "flicker", "warping_error")


@contextlib.contextmanager
def source_as_idm_frames():
    """flux-canny's generation replaced by the source clip's latents (the frames a flawless IDM would draw)."""
    from vsynth.plugins.idm.flux import FluxControl

    generate = FluxControl.generate
    FluxControl.generate = lambda self, inputs, generator, advance=None: self.codec.encode(inputs.sources.video)
    try:
        yield
    finally:
        FluxControl.generate = generate


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vdm-weights", default=None, help="an exported Wan toy folder (default: the shipped one)")
    p.add_argument("--count", type=int, default=8, help="clips (`vsynth toy examples --motion --count N`, seed 0)")
    p.add_argument("--frames", type=int, default=9, help="--frames of the runs (the CLI's default 8 runs as 5 on Wan's 1 + 4k rule)")
    p.add_argument("--source-as-idm-frames", action="store_true", help="Mixed Inversion gets the source clip as flux-canny's frames")
    args = p.parse_args(argv)
    if not {"wan2.1-t2v", "flux-canny"} <= set(shipped.toy_models()):
        raise SystemExit("the toy Wan and FLUX weights are not installed")
    weights = {"vdm_weights": args.vdm_weights} if args.vdm_weights else {}
    tmp = Path(tempfile.mkdtemp(prefix="wan-toy-backgrounds-"))
    session = vsynth.Session(display=False)
    print("| clip | " + " | ".join(f"{k.replace('_', ' ')}: MI / idm-only" for k in KEYS) + " |\n|---|" + "---|" * len(KEYS))
    wins = {k: [] for k in TEMPORAL}
    for i in range(args.count):  # the clips `vsynth toy examples --motion --frames 9` writes
        path = tmp / f"toy{i}.mp4"
        caption = save_clip(path, i, generator="make_motion_clip", frames=max(args.frames, 9)).caption
        m, frames = {}, args.frames
        for b in BRIDGES:  # idm-only runs the frames Mixed Inversion ran (it loads no Wan, whose 1 + 4k rule would round them)
            with source_as_idm_frames() if args.source_as_idm_frames and b == "mixed-inversion" else contextlib.nullcontext():
                record = session.run(video=path, prompt=caption, bridge=b, out=tmp / f"{path.stem}-{b}", frames=frames, **RUN, **weights).record
            m[b], frames = record["metrics"], record["frames"]
        for k in TEMPORAL:
            wins[k].append(m["mixed-inversion"][k]["final"] < m["idm-only"][k]["final"])
        cells = [" / ".join(f"{m[b][k]['final']:.4f}" if k in TEMPORAL else f"{m[b][k]['final']:.2f}" for b in BRIDGES) for k in KEYS]
        print(f"| {caption} | " + " | ".join(cells) + " |", flush=True)
    print()
    for k in TEMPORAL:
        print(f"Mixed Inversion's {k.replace('_', ' ')} is below idm-only's on {sum(wins[k])} of {len(wins[k])} clips ({np.mean(wins[k]):.0%})")


if __name__ == "__main__":
    main()
