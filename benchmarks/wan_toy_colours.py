"""Does every toy colour keep its colour and its direction through the Wan toy's own generation?

"a COLOUR circle moving DIRECTION on a white background" for every toy colour and direction (vsynth.toy.world), 9 frames,
20 steps, seed 42, at the default guidance: the detected colour adherence and the direction agreement of each run
(run.json's metrics), as a table, for the shipped Wan toy or an exported folder. Issue 28's item 5 for the new
family; docs/toy-world.md has its figures. Needs the toy Wan weights; about 2 minutes.

Its last column is how far each colour's object lies from the white background in the latents the transformer
learns (the VAE's latents normalised by its config's latents_mean / latents_std, as WanPipeline's are): the peak
squared distance over the 8x8 latent grid, averaged over the frames of 4 clips. A colour whose object is
faint there gives the flow-matching loss little to learn from.

    python benchmarks/wan_toy_colours.py [--vdm-weights DIR]
"""

from __future__ import annotations

import argparse

import numpy as np

import vsynth
from vsynth.toy import shipped
from vsynth.toy.world import COLOURS, DIRECTIONS


def latent_contrast(weights: str | None, colour: str, clips: int = 4) -> float:
    """The peak squared distance of ``colour``'s object from the white background in the normalised latents."""
    import torch
    from diffusers import AutoencoderKLWan

    from vsynth.toy.train_wan import to_tensor
    from vsynth.toy.world import make_motion_clip

    vae = AutoencoderKLWan.from_pretrained(f"{weights or shipped.toy_weights('wan2.1-t2v')}/vae", torch_dtype=torch.float32)
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)

    def encode(frames):  # frame by frame: the toy VAE has no temporal compression
        with torch.no_grad():
            return (vae.encode(to_tensor(frames)).latent_dist.mean - mean) / std

    white = encode(np.full((1, 64, 64, 3), 255, np.uint8))
    peaks = []
    for seed in range(clips):
        clip = make_motion_clip(seed, colour=colour, shape="circle", background="white", motion=DIRECTIONS[seed % len(DIRECTIONS)])
        peaks.append((encode(clip.frames) - white).pow(2).sum(1).flatten(1).amax(1).mean().item())
    return float(np.mean(peaks))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vdm-weights", default=None, help="an exported Wan toy folder (default: the shipped one)")
    args = p.parse_args(argv)
    if "wan2.1-t2v" not in shipped.toy_models():
        raise SystemExit("needs the toy Wan weights (vsynth/toy/weights/wan2.1-t2v)")
    weights = {"vdm_weights": args.vdm_weights} if args.vdm_weights else {}
    print("| colour | " + " | ".join(DIRECTIONS) + " | latent contrast |\n|---|" + "---|" * (len(DIRECTIONS) + 1))
    scores = []
    for colour in COLOURS:
        cells = []
        for direction in DIRECTIONS:
            prompt = f"a {colour} circle moving {direction} on a white background"
            m = vsynth.run(vdm="wan2.1-t2v-1.3b", bridge="none", prompt=prompt, toy=True, frames=9, steps=20, seed=42, **weights).record["metrics"]
            score = (m["detected_colour_adherence"]["final"], m["direction_agreement"]["final"])
            scores.append(score)
            cells.append(f"{score[0]:.2f} / {score[1]:.0f}")
        print(f"| {colour} | " + " | ".join(cells) + f" | {latent_contrast(args.vdm_weights, colour):.0f} |", flush=True)
    a = np.array(scores)
    print(f"\nmean colour adherence {a[:, 0].mean():.3f}; direction agreement {a[:, 1].mean():.3f} ({int(a[:, 1].sum())}/{len(a)})")


if __name__ == "__main__":
    main()
