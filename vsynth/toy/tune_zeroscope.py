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
        --init OLD_UNET_DIR                                       # the shipped slot's fine-tune, from the slot before it

It starts from the shipped slot's UNet (``vsynth/toy/weights/zeroscope/unet``, or ``--init``) and tokenizes with the
slot's own tokenizer (its vocabulary is the one the shipped text encoder was trained with). Resumes from ``W/ckpt.pt``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

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


def encode_clips(vae, n: int, seed: int):
    """``n`` clips of the first toy world (8 frames, 64x64), their scaled latents (N, 4, F, h, w) and captions."""
    import torch

    lat, captions = [], []
    with torch.no_grad():
        for i in range(n):
            clip = world.make_clip(seed * 10_000_000 + i, frames=8, size=64)
            lat.append((vae.encode(to_tensor(clip.frames).to(vae.device)).latent_dist.mean * vae.config.scaling_factor).cpu())
            captions.append(clip.caption)
    return torch.stack(lat).permute(0, 2, 1, 3, 4).contiguous(), captions


def train(work: Path, minutes: float, export_every: int, clips: int = RECIPE["clips"], device: str = "cpu", steps: int | None = None,
          init: Path | None = None, **override):
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
        lat, captions = encode_clips(vae, clips, r["seed"])
        torch.save({"latents": lat, "captions": captions}, data)
        log(f"encoded {len(captions)} clips -> {data}")
    d = torch.load(data)
    lat = d["latents"].to(device)
    ids = tok(d["captions"], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    empty = tok([""], padding="max_length", max_length=77, return_tensors="pt").input_ids[0]
    with torch.no_grad():
        empty_cond = te(empty[None].to(device))[0]
    acp = DDIMScheduler(**DDIM).alphas_cumprod.to(device)

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

        return fine_tune.noise_loss(pred, eps, t, tokens, empty, uncond, r["guided_weight"])

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
    a = p.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    train(a.work, a.minutes, a.export_every, a.clips, a.device, a.steps, a.init, batch=a.batch, lr=a.lr)


if __name__ == "__main__":
    main()
