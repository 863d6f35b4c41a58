"""Move one colour's latents away from the white background's, and teach the Wan toy's VAE to give and read them: why
purple (and blue) kept their motion in runs 12-13 of the Wan toy (docs/toy-world.md, "Sixth session").

    python -m vsynth.toy.amplify_colour latents --src W11 --work W12 --factor 2.5    # W12/latents.pt, purple clips moved
    python -m vsynth.toy.amplify_colour decoder --src W11 --work W12 --factor 2.5    # W12/ckpt/vae_ring.pt, 12 min
    python -m vsynth.toy.amplify_colour encoder --src W11 --work W12 --factor 2.5    # then its encoder, 10 min

then ``python -m vsynth.toy.train_wan --stage t2v --init W11/ckpt/t2v.pt --recipe t2v-guided-all --minutes 24 --work W12``
(it may run beside the decoder and encoder: it reads only the latents), and ``--stage export``. A colour's latent ``z``
becomes ``z_white + factor * (z - z_white)``, ``z_white`` the latent of a white frame; the other colours' latents, and
the normalisation, are unchanged. Each stage reads src's exported VAE (``ckpt/vae_ring.pt``, encoder and decoder), so
runs chain: run 13 moved blue 2x from run 12 (``--src W12 --work W13 --colour blue --factor 2``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from . import train_wan, world


def away_from_white(z, z_white, factor: float):
    """``z`` moved ``factor`` times as far from the white frame's latent ``z_white``."""
    return z_white + factor * (z - z_white)


def white_latent(vae):
    torch = train_wan._torch()
    with torch.no_grad():
        return vae.encode(train_wan.to_tensor(np.full((1, train_wan.SIZE, train_wan.SIZE, 3), 255, np.uint8))).latent_dist.mean


def move_latents(src: Path, work: Path, colour: str, factor: float) -> int:
    """Write work/latents.pt: src's clips, those captioned with ``colour`` moved away from white; their count."""
    torch = train_wan._torch()
    z_white = white_latent(train_wan.load_vae(src, decoder=True))
    data = torch.load(src / "latents.pt", weights_only=False)
    z = data["latents"].clone()
    picked = [i for i, caption in enumerate(data["captions"]) if colour in caption.split()]
    z[picked] = away_from_white(z[picked], z_white, factor)
    torch.save({**data, "latents": z}, work / "latents.pt")
    return len(picked)


def motion_frames(colour: str, frames: int = 3000):
    """Single frames of motion clips on white, the colours in turn, and which of them are ``colour``."""
    rng = np.random.default_rng(5)
    pool, moved = [], []
    for i in range(frames):
        c = world.COLOURS[i % len(world.COLOURS)]
        clip = world.make_motion_clip(int(rng.integers(1 << 30)), frames=train_wan.FRAMES, size=train_wan.SIZE, colour=c, background="white")
        pool.append(clip.frames[rng.integers(train_wan.FRAMES)])
        moved.append(c == colour)
    return np.stack(pool), np.array(moved), rng


def moved_latents(vae, x, moved, z_white, factor: float):
    """``vae``'s latents of the frames ``x``, those marked in ``moved`` moved away from white: what the VAE is taught."""
    torch = train_wan._torch()
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mean
    return torch.where(moved.view(-1, 1, 1, 1, 1), away_from_white(z, z_white, factor), z)


def train_encoder(src: Path, work: Path, colour: str, factor: float, minutes: float) -> int:
    """Fine-tune the encoder of work's new decoder checkpoint (decoder frozen) to give src's encoder's latents, ``colour``'s
    moved, so that what the shipped encoder hands the transformer is what it learnt; its steps."""
    torch = train_wan._torch()
    train_wan.single_frame_convs()
    old = train_wan.load_vae(src, decoder=True)
    vae = train_wan.build_vae()
    path = work / "ckpt" / "vae_ring.pt"
    vae.load_state_dict(torch.load(path, weights_only=False)["model"])
    vae.decoder.requires_grad_(False)
    vae.post_quant_conv.requires_grad_(False)
    z_white = white_latent(old)
    opt = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=2e-4)
    pool, moved, rng = motion_frames(colour)
    moved = torch.from_numpy(moved)
    t0, step = time.time(), 0
    while (time.time() - t0) / 60 < minutes:
        idx = rng.integers(len(pool), size=16)
        x = train_wan.to_tensor(pool[idx])
        loss = (vae.encode(x).latent_dist.mean - moved_latents(old, x, moved[idx], z_white, factor)).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        train_wan.zero_past_taps(vae)
        step += 1
    torch.save({"model": vae.state_dict(), "step": step}, path)
    return step


def train_decoder(src: Path, work: Path, colour: str, factor: float, minutes: float, frames: int = 3000) -> int:
    """Fine-tune src's exported decoder on single motion frames on white, ``colour``'s latents moved; its steps."""
    torch = train_wan._torch()
    train_wan.single_frame_convs()
    vae = train_wan.load_vae(src, decoder=True)
    vae.encoder.requires_grad_(False)
    vae.quant_conv.requires_grad_(False)
    z_white = white_latent(vae)
    opt = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=2e-4)
    pool, moved, rng = motion_frames(colour, frames)
    moved = torch.from_numpy(moved)
    ring = train_wan.RECIPE["vae-ring"]["ring"]
    t0, step = time.time(), 0
    while (time.time() - t0) / 60 < minutes:
        idx = rng.integers(len(pool), size=16)
        x = train_wan.to_tensor(pool[idx])
        z = moved_latents(vae, x, moved[idx], z_white, factor)
        z = z + 0.1 * z.std() * torch.randn_like(z)
        loss = train_wan.reconstruction_loss(x, vae.decode(z).sample, ring)  # vae-ring's loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        train_wan.zero_past_taps(vae)
        step += 1
    (work / "ckpt").mkdir(parents=True, exist_ok=True)
    torch.save({"model": vae.state_dict(), "step": step}, work / "ckpt" / "vae_ring.pt")
    return step


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("stage", choices=("latents", "decoder", "encoder"))
    p.add_argument("--src", type=Path, required=True, help="the Wan toy's work folder to start from (its ckpt/vae_ring.pt and latents.pt)")
    p.add_argument("--work", type=Path, required=True, help="the new work folder (copy src's ckpt/vae*.pt into it first)")
    p.add_argument("--colour", default="purple", choices=world.COLOURS)
    p.add_argument("--factor", type=float, default=2.5)
    p.add_argument("--minutes", type=float, default=12.0, help="decoder, encoder: training minutes")
    args = p.parse_args(argv)
    if args.stage == "latents":
        print(f"moved {move_latents(args.src, args.work, args.colour, args.factor)} clips")
    elif args.stage == "decoder":
        print(f"decoder: {train_decoder(args.src, args.work, args.colour, args.factor, args.minutes)} steps")
    else:
        print(f"encoder: {train_encoder(args.src, args.work, args.colour, args.factor, args.minutes)} steps")


if __name__ == "__main__":
    main()
