"""Fine-tune the shipped ZeroScope-slot toy T2V for the guidance it is sampled with (issue 28, item 5).

The old family's toy T2V loses green and purple (and blue on black): the IDM's frames have the colour, the final
video does not (benchmarks/zeroscope_toy_colours.py). Its predictions of the clean video are right below t=500
and wrong above t=750 under classifier-free guidance: the guided prediction at high noise, which decides the
layout and the colours, pushes away from them, while the conditional one alone is weak there. Uniform training
steps (stop 34's 25-minute fine-tune) did not move that. This stage samples half of its timesteps from the top
40% of the schedule and adds, there, the guided loss of the Wan toy (vsynth.toy.train_wan.guided_target): the
conditional prediction is pulled towards the one whose guided combination at vsynth's default guidance (7.5) is
the true noise, the unconditional one held fixed. The seventh session's trial (docs/toy-world.md, "Seventh session") has
its figures: on one CPU thread it did not bring the colours back in 65 minutes. The eighth session ran it on a GPU,
16x the clips a step and 6,000 training clips, and shipped that (docs/toy-world.md, "Eighth session"):

    python -m vsynth.toy.tune_zeroscope --work W --minutes 65     # W/unet-<step>/ (float16 EMA) every --export-every steps
    python -m vsynth.toy.tune_zeroscope --work W --device cuda --batch 64 --lr 1e-4 --clips 6000 --steps 1083 \
        --init OLD_UNET_DIR                                       # the eighth session's fine-tune, from the slot before it
    python -m vsynth.toy.tune_zeroscope --work W2 --device cuda --batch 64 --lr 1e-4 --clips 3000 --steps 265 \
        --invert-weight 4 --init UNET_9880ED5                     # the tenth session's (shipped), from the eighth's

``--invert-weight`` adds the guided loss at the points of Mixed Inversion's image side (:func:`bivdiff_trajectories`):
the slot learns to return to the clip from the latents the bridge hands it, not only from the forward process's.

It starts from the shipped slot's UNet (``vsynth/toy/weights/zeroscope/unet``, or ``--init``) and tokenizes with the
slot's own tokenizer (its vocabulary is the one the shipped text encoder was trained with). Resumes from ``W/ckpt.pt``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from . import fine_tune, world
from .fine_tune import timesteps
from .shipped import WEIGHTS_DIR
from .train import dropped_captions, log, noised, to_tensor

SLOT = WEIGHTS_DIR / "zeroscope"
RECIPE = dict(clips=1500, batch=4, lr=1e-4, warmup=20, offset=0.1, drop=0.1, high_share=0.5, guided_weight=4.0, ema=0.995, seed=206)


def load_slot(device: str = "cpu", unet_dir: Path | None = None):
    """The slot's UNet3D (or the one in ``unet_dir``), VAE, text encoder and tokenizer, in float32 on ``device``."""
    import torch
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    torch.set_num_threads(1)
    unet = UNet3DConditionModel.from_pretrained(unet_dir or SLOT / "unet").float().to(device)
    vae = AutoencoderKL.from_pretrained(SLOT / "vae").float().eval().to(device)
    te = CLIPTextModel.from_pretrained(SLOT / "text_encoder").float().eval().requires_grad_(False).to(device)
    return unet, vae, te, AutoTokenizer.from_pretrained(SLOT / "tokenizer")


def extra_clips(extra: dict[str, int], seed: int) -> list:
    """Clips added to the training set for a colour on a background (``{"blue:black": 400}``): one or two shapes of that
    colour (two, as the colour benchmark draws a circle and a square of it), the rest of each clip as the world draws it."""
    clips = []
    for k, (pair, count) in enumerate(sorted(extra.items())):
        colour, background = pair.split(":")
        for i in range(count):
            rng = np.random.default_rng([seed, k, i])
            shapes = [(world.SHAPES[j], colour) for j in rng.choice(len(world.SHAPES), size=int(rng.integers(1, 3)), replace=False)]
            clips.append(world.make_clip(seed * 10_000_000 + 5_000_000 + 10_000 * k + i, frames=8, size=64, shapes=shapes, background=background))
    return clips


def encode_clips(vae, n: int, seed: int, extra: dict[str, int] | None = None):
    """``n`` clips of the first toy world (8 frames, 64x64), and the ``extra`` ones, their scaled latents (N, 4, F, h, w) and captions."""
    import torch

    lat, captions = [], []
    clips = (world.make_clip(seed * 10_000_000 + i, frames=8, size=64) for i in range(n))
    with torch.no_grad():
        for clip in [*clips, *extra_clips(extra or {}, seed)]:
            lat.append((vae.encode(to_tensor(clip.frames).to(vae.device)).latent_dist.mean * vae.config.scaling_factor).cpu())
            captions.append(clip.caption)
    return torch.stack(lat).permute(0, 2, 1, 3, 4).contiguous(), captions


def bivdiff_trajectories(sd_unet, empty_cond, lat, acp, steps: int = 50, batch: int = 2048):
    """(N, steps, C, F, h, w): the clips' latents after each step of Mixed Inversion's image side as vsynth runs it for
    this slot (the official loop, :func:`vsynth.core.diffusion.sampling.bivdiff_invert`: the toy SD1.5 UNet frame by
    frame, the empty prompt, no guidance, each clean prediction at e re-noised to min(998, e + 20)), and the timestep at
    which the smoothing evaluates each: step i's latent is the one the denoiser sees at e_(i+1), the last at e_49 (981)."""
    import torch

    stride = 1000 // steps
    ascending = [1 + stride * i for i in range(steps)]  # DDIM, leading spacing, steps_offset 1: 1, 21, ..., 981
    n, c, f, h, w = lat.shape
    frames = lat.permute(0, 2, 1, 3, 4).reshape(n * f, c, h, w)
    out = frames.new_empty((n * f, steps, c, h, w))
    with torch.no_grad():
        for b in range(0, len(frames), batch):
            x = frames[b : b + batch].clone()
            text = empty_cond.expand(len(x), -1, -1)
            for i, e in enumerate(ascending):
                eps = sd_unet(x, e, text).sample
                a_e, a_n = acp[e], acp[min(998, e + stride)]
                x0 = (x - (1 - a_e).sqrt() * eps) / a_e.sqrt()
                x = a_n.sqrt() * x0 + (1 - a_n).sqrt() * eps
                out[b : b + batch, i] = x
    evaluated = torch.tensor(ascending[1:] + ascending[-1:])
    return out.reshape(n, f, steps, c, h, w).permute(0, 2, 3, 1, 4, 5).contiguous(), evaluated


def train(work: Path, minutes: float, export_every: int, clips: int = RECIPE["clips"], device: str = "cpu", steps: int | None = None,
          init: Path | None = None, invert_weight: float = 0.0, extra: dict[str, int] | None = None, **override):
    import torch
    from diffusers import DDIMScheduler
    from diffusers.models.attention_processor import AttnProcessor

    from .train import DDIM

    r = RECIPE | {k: v for k, v in override.items() if v is not None}
    unet, vae, te, tok = load_slot(device, init)
    if device == "cpu":
        unet.set_attn_processor(AttnProcessor())  # faster than SDPA on CPU
    data = work / "latents.pt"
    if not data.exists():
        lat, captions = encode_clips(vae, clips, r["seed"], extra)
        torch.save({"latents": lat, "captions": captions}, data)
        log(f"encoded {len(captions)} clips -> {data}")
    d = torch.load(data)
    lat = d["latents"].to(device)
    ids, empty, empty_cond = fine_tune.text_inputs(tok, te, d["captions"], device)
    acp = DDIMScheduler(**DDIM).alphas_cumprod.to(device)
    if invert_weight:  # the trajectories of Mixed Inversion's image side (the SD1.5 toy is frozen: computed once)
        from .tune_controlnet import load_sd15

        sd_unet, _, sd_te, sd_tok = load_sd15(device)  # SD1.5's own text encoder for its empty prompt (the toy slots share one)
        sd_empty = fine_tune.text_inputs(sd_tok, sd_te, [""], device)[2]
        trajectories, evaluated = bivdiff_trajectories(sd_unet, sd_empty, lat, acp)
        evaluated = evaluated.to(device)
        del sd_unet, sd_te
        log(f"inverted {len(lat)} clips: {tuple(trajectories.shape)}")

    def loss_fn(rng, step):
        clip = rng.integers(len(lat), size=r["batch"])
        x0 = lat[torch.from_numpy(clip).to(device)]
        tokens = dropped_captions(rng, ids[clip], empty, r["drop"])
        with torch.no_grad():
            cond = te(tokens.to(device))[0]
        xt, t, eps = noised(x0, acp, r["offset"], torch.from_numpy(timesteps(rng, r["batch"], r["high_share"])).to(device))
        pred = unet(xt, t, cond).sample

        def uncond(high):
            return unet(xt[high], t[high], empty_cond.expand(int(high.sum()), -1, -1)).sample

        loss = fine_tune.noise_loss(pred, eps, t, tokens, empty, uncond, r["guided_weight"])
        if invert_weight:
            loss = loss + invert_weight * inversion_loss(rng)
        return loss

    def inversion_loss(rng):
        """The guided loss at points of the clips' Mixed Inversion (image side) rather than of the forward process:
        the conditional prediction is pulled towards the one whose guided combination takes each inverted latent
        to its clean clip, (x - sqrt(abar_t) x0) / sqrt(1 - abar_t) at the timestep the smoothing evaluates it."""
        from .train_wan import guided_target

        clip = rng.integers(len(lat), size=r["batch"])
        k = torch.from_numpy(rng.integers(trajectories.shape[1], size=r["batch"])).to(device)
        picked = torch.from_numpy(clip).to(device)
        x, t = trajectories[picked, k], evaluated[k]
        a = acp[t].view(-1, 1, 1, 1, 1)
        target = (x - a.sqrt() * lat[picked]) / (1 - a).sqrt()
        with torch.no_grad():
            cond = te(ids[clip].to(device))[0]
            u = unet(x, t, empty_cond.expand(len(x), -1, -1)).sample
        return torch.nn.functional.mse_loss(unet(x, t, cond).sample, guided_target(target, u, fine_tune.GUIDANCE))

    fine_tune.run(unet, "unet", work, r, loss_fn, minutes, steps, export_every, device)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--steps", type=int, default=None, help="stop after this many steps (or --minutes, whichever comes first)")
    p.add_argument("--export-every", type=int, default=200)
    p.add_argument("--clips", type=int, default=RECIPE["clips"], help="training clips (fewer for a smoke run)")
    p.add_argument("--init", type=Path, default=None, help="a UNet3D folder to start from (default: the shipped slot's)")
    p.add_argument("--device", default="cpu", help="torch device: cuda where there is one (the recipe was measured on one CPU thread)")
    p.add_argument("--batch", type=int, default=None, help=f"clips a step (recipe: {RECIPE['batch']})")
    p.add_argument("--lr", type=float, default=None, help=f"learning rate (recipe: {RECIPE['lr']})")
    p.add_argument("--invert-weight", type=float, default=0.0,
                   help="weight of the guided loss at the points of Mixed Inversion's image side (the shipped slot's last fine-tune: 4; 0: off)")
    p.add_argument("--extra", default="", help="more clips of a colour on a background: blue:black=400,cyan:black=200 (one or two shapes of it)")
    a = p.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    extra = {}
    for entry in filter(None, a.extra.split(",")):
        pair, _, count = entry.partition("=")
        colour, _, background = pair.partition(":")
        if colour not in world.COLOURS or background not in world.BACKGROUNDS or not count.isdigit():
            p.error(f"--extra {entry}: write COLOUR:BACKGROUND=N, colours {', '.join(world.COLOURS)}, backgrounds {', '.join(world.BACKGROUNDS)}")
        extra[pair] = int(count)
    saved = a.work / "latents.pt"
    if extra and saved.exists():
        p.error(f"--extra: {saved} holds the clips already encoded; give a new --work (or remove it) to add clips")
    train(a.work, a.minutes, a.export_every, a.clips, a.device, a.steps, a.init, a.invert_weight, extra, batch=a.batch, lr=a.lr)


if __name__ == "__main__":
    main()
