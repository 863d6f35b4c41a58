"""Where Mixed Inversion into the Wan toy gets its flicker: the VAE, guidance, the transformer.

Issue 28's second claim (Mixed Inversion from flux-canny into the Wan toy flickers less than flux-canny frame by
frame) failed on the run-7 toy and holds on two of these three clips with the shipped run 13 (all three with run 11).
This measures the parts, for the shipped Wan toy or any exported folder (``python -m vsynth.toy.train_wan --stage export
--out DIR``), on three moving clips (a circle moving right, left, up on white, 9 frames):

- encode-decode: the background flicker (vsynth.metrics.temporal.background_flicker) of the source clip and of
  flux-canny's frames after the Wan VAE alone, against theirs before;
- objects a frame: the Wan toy's own text-to-video at guidance 5 (8 prompts: four colours, right and left),
  connected regions of 6+ pixels away from white in each frame; 1 is what is prompted, more are ghost objects;
- Mixed Inversion (flux-canny, 20 steps, seed 42) at guidance 5 (Wan's default) and 1: background flicker,
  warping error and edge F1 of the frame-wise IDM frames and of the final video, from run.json's metrics.

    python benchmarks/wan_toy_flicker.py                       # the shipped toy weights
    python benchmarks/wan_toy_flicker.py --vdm-weights DIR     # an exported Wan toy folder

docs/toy-world.md ("Third session", "Fourth session") has its figures. Needs the toy FLUX and Wan weights; about 3 minutes.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import vsynth
from vsynth.metrics.temporal import background_flicker
from vsynth.toy import shipped
from vsynth.toy.truth import save_clip

VDM = "wan2.1-t2v-1.3b"
CLIPS = (("right", "red", 7), ("left", "blue", 8), ("up", "green", 9))
RUN = dict(toy=True, frames=9, stride=1, steps=20, seed=42)


def load_vae(folder: Path):
    import torch
    from diffusers import AutoencoderKLWan

    from vsynth.toy.train_wan import single_frame_convs

    single_frame_convs()
    return AutoencoderKLWan.from_pretrained(folder / "vae", torch_dtype=torch.float32).eval()


def encode_decode(vae, frames: np.ndarray) -> np.ndarray:
    """``frames`` through the Wan toy's VAE alone (posterior mean), frame by frame as its codec does."""
    import torch

    from vsynth.toy.train_wan import to_frames, to_tensor

    with torch.no_grad():
        return to_frames(vae.decode(vae.encode(to_tensor(frames)).latent_dist.mean).sample)[:, 0]


def objects_per_frame(frames: np.ndarray) -> float:
    import cv2

    counts = []
    for frame in frames.astype(np.int32):
        away = (np.abs(frame - 255).max(-1) > 60).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(away)
        counts.append(sum(1 for i in range(1, n) if stats[i, 4] >= 6))
    return float(np.mean(counts))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vdm-weights", default=None, help="an exported Wan toy folder (default: the shipped one)")
    args = p.parse_args(argv)
    if not {"wan2.1-t2v", "flux-canny"} <= set(shipped.toy_models()):
        raise SystemExit("the toy Wan and FLUX weights are not installed")
    folder = Path(args.vdm_weights) if args.vdm_weights else shipped.WEIGHTS_DIR / "wan2.1-t2v"
    weights = {"vdm_weights": str(folder)} if args.vdm_weights else {}
    tmp = Path(tempfile.mkdtemp(prefix="wan-toy-flicker-"))
    print(f"Wan toy: {folder}")

    ghosts = []
    for colour in ("red", "blue", "green", "yellow"):
        for motion in ("right", "left"):
            prompt = f"a {colour} circle moving {motion} on a white background"
            ghosts.append(objects_per_frame(vsynth.run(vdm=VDM, bridge="none", prompt=prompt, **RUN, **weights).frames))
    print(f"own text-to-video at guidance 5: {np.mean(ghosts):.2f} objects a frame (per prompt {np.round(ghosts, 2).tolist()})")

    import imageio.v3 as iio

    vae = load_vae(folder)
    print("| clip | encode-decode: source | flux-canny frames | MI guidance | bg flicker IDM → final | warping error IDM → final | edge F1 IDM → final |")
    print("|---|---|---|---|---|---|---|")
    for motion, colour, seed in CLIPS:
        path = tmp / f"{motion}.mp4"
        truth = save_clip(path, seed, generator="make_motion_clip", frames=9, motion=motion, background="white", colour=colour, shape="circle")
        for guidance in (5.0, 1.0):
            result = vsynth.run(idm="flux-canny", vdm=VDM, bridge="mixed-inversion", video=path, prompt=truth.caption, vdm_guidance=guidance,
                                out=tmp / f"{motion}-{guidance:g}", **RUN, **weights)  # fmt: skip
            m = result.record["metrics"]
            if guidance == 5.0:  # the encode-decode columns, once a clip: the source's and this run's IDM frames
                idm = iio.imread(tmp / f"{motion}-5" / "idm_frames.mp4")[: len(truth.frames)]
                roundtrip = tuple(f"{background_flicker(f, truth.masks):.4f} → {background_flicker(encode_decode(vae, f), truth.masks):.4f}"
                                  for f in (truth.frames, idm))  # fmt: skip
            else:
                roundtrip = ("", "")
            cells = [f"{m[k]['idm']:.4f} → {m[k]['final']:.4f}" for k in ("background_flicker", "warping_error", "edge_f1")]
            print(f"| {motion} | {roundtrip[0]} | {roundtrip[1]} | {guidance:g} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
