"""Fine-tune the shipped toy ControlNet for the guidance it is sampled with (issue 28, item 5).

The old family loses two colours in ``benchmarks/zeroscope_toy_colours.py`` (blue on black, purple on white) that
its ZeroScope-slot T2V keeps when the IDM hands them over: the toy ControlNet itself draws them faintly (0.40 and
0.21 of the shapes' pixels), and Mixed Inversion then hands the T2V latents of another colour. The ControlNet was
trained on the plain noise-prediction loss (``vsynth.toy.train``'s controlnet stage) and is sampled at vsynth's
guidance 7.5; as for the ZeroScope slot (:mod:`vsynth.toy.tune_zeroscope`), half of this stage's timesteps are
drawn from the top 40% of the schedule, where the layout and the colours are decided, and there the guided loss
pulls the conditional prediction (SD1.5 toy UNet plus the ControlNet's residuals, both branches with the edge
map, as StableDiffusionControlNetPipeline runs them) towards the one whose guided combination is the true noise.
Only the ControlNet learns; the toy SD1.5 slot, which other IDMs share, stays as shipped.

    python -m vsynth.toy.tune_controlnet --work W --device cuda --steps 1500    # W/controlnet-<step>/ (float16 EMA)
    python -m vsynth.toy.tune_controlnet --work W --encode-only                 # W/frames.pt alone (needs OpenCV)
    python -m vsynth.toy.tune_controlnet --check DIR                           # the 12 colour cells of a ControlNet

``--check`` prints the ControlNet's own colour share on the benchmark's 12 cells (a colour's circle and square over
white and black, 20 DDIM steps, guidance 7.5): the IDM column of zeroscope_toy_colours.py, in under a minute.
Resumes from ``W/ckpt.pt``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from . import fine_tune, world
from .fine_tune import GUIDANCE, timesteps
from .shipped import WEIGHTS_DIR
from .train import canny, dropped_captions, log, noised, to_tensor

SD15 = WEIGHTS_DIR / "sd15"
SLOT = WEIGHTS_DIR / "controlnet-canny"
RECIPE = dict(clips=3000, batch=24, lr=1e-4, warmup=20, drop=0.1, high_share=0.5, guided_weight=4.0, ema=0.995, seed=207)
CELL_BACKGROUNDS = ("white", "black")
CHECK_CELLS = [(colour, background) for colour in world.COLOURS for background in CELL_BACKGROUNDS]


def colour_cell(colour: str, background: str) -> tuple[int, dict, str]:
    """One cell of benchmarks/zeroscope_toy_colours.py, which ``--check`` measures too: the clip's seed, its
    make_clip arguments (a circle and a square of ``colour`` over ``background``, 8 frames) and the prompt."""
    shapes = [("circle", colour), ("square", colour)]
    return 300 + CELL_BACKGROUNDS.index(background), dict(frames=8, shapes=shapes, background=background), world.caption_of(shapes, background)


def load_sd15(device: str = "cpu"):
    """The toy SD1.5 slot's UNet, VAE, text encoder (float32, frozen) and tokenizer on ``device``."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    torch.set_num_threads(1)
    unet = UNet2DConditionModel.from_pretrained(SD15 / "unet").float().eval().requires_grad_(False).to(device)
    vae = AutoencoderKL.from_pretrained(SD15 / "vae").float().eval().to(device)
    te = CLIPTextModel.from_pretrained(SD15 / "text_encoder").float().eval().requires_grad_(False).to(device)
    return unet, vae, te, AutoTokenizer.from_pretrained(SD15 / "tokenizer")


def encode_frames(vae, n: int, seed: int) -> dict:
    """Every frame of ``n`` first-world clips: scaled latents (N*8, 4, h, w; float16), canny maps as bits (one channel,
    ``np.packbits`` per frame, so that a run's data travels to a GPU machine without OpenCV) and captions."""
    import torch

    lat, edges, captions = [], [], []
    with torch.no_grad():
        for i in range(n):
            clip = world.make_clip(seed * 10_000_000 + i, frames=8, size=64)
            lat.append((vae.encode(to_tensor(clip.frames).to(vae.device)).latent_dist.mean * vae.config.scaling_factor).half().cpu())
            edges.append(np.packbits(canny(clip.frames)[..., 0].reshape(len(clip.frames), -1) > 0, axis=1))
            captions += [clip.caption] * len(clip.frames)
    return {"latents": torch.cat(lat), "edges": torch.from_numpy(np.concatenate(edges)), "size": 64, "captions": captions}


def edge_maps(packed, size: int):
    """:func:`encode_frames`' bits back as the ControlNet's input: (N, 3, size, size) float in {0, 1}."""
    import torch

    bits = np.unpackbits(packed.numpy(), axis=1)[:, : size * size].reshape(-1, 1, size, size)
    return torch.from_numpy(bits).float().expand(-1, 3, -1, -1)


def train(work: Path, minutes: float, export_every: int, device: str = "cpu", steps: int | None = None, init: Path | None = None,
          encode_only: bool = False, **override):
    import torch
    from diffusers import ControlNetModel, DDIMScheduler

    from .train import DDIM

    r = RECIPE | {k: v for k, v in override.items() if v is not None}
    unet, vae, te, tok = load_sd15(device)
    cn = ControlNetModel.from_pretrained(init or SLOT).float().to(device)
    data = work / "frames.pt"
    if not data.exists():
        torch.save(encode_frames(vae, r["clips"], r["seed"]), data)
        log(f"encoded {r['clips']} clips -> {data}")
    if encode_only:
        return
    d = torch.load(data)
    lat, edges = d["latents"].float().to(device), edge_maps(d["edges"], d["size"]).contiguous().to(device)
    ids, empty, empty_cond = fine_tune.text_inputs(tok, te, d["captions"], device)
    acp = DDIMScheduler(**DDIM).alphas_cumprod.to(device)

    def predict(xt, t, cond, control):
        down, mid = cn(xt, t, cond, controlnet_cond=control, return_dict=False)
        return unet(xt, t, cond, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample

    def loss_fn(rng, step):
        pick = torch.from_numpy(rng.integers(len(lat), size=r["batch"])).to(device)
        tokens = dropped_captions(rng, ids[pick.cpu()], empty, r["drop"])
        with torch.no_grad():
            cond = te(tokens.to(device))[0]
        xt, t, eps = noised(lat[pick], acp, 0.0, torch.from_numpy(timesteps(rng, r["batch"], r["high_share"])).to(device))
        control = edges[pick]
        pred = predict(xt, t, cond, control)

        def uncond(high):
            return predict(xt[high], t[high], empty_cond.expand(int(high.sum()), -1, -1), control[high])

        return fine_tune.noise_loss(pred, eps, t, tokens, empty, uncond, r["guided_weight"])

    fine_tune.run(cn, "controlnet", work, r, loss_fn, minutes, steps, export_every, device)


def check(cn_dir: Path, device: str = "cpu") -> list[float]:
    """The ControlNet's own share of the prompted colour on each of :data:`CHECK_CELLS` (printed; returned in order)."""
    import torch
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline
    from PIL import Image

    from vsynth.metrics.prompt import colour_adherence

    torch.set_num_threads(1)
    cn = ControlNetModel.from_pretrained(cn_dir, torch_dtype=torch.float32)
    pipe = StableDiffusionControlNetPipeline.from_pretrained(SD15, controlnet=cn, torch_dtype=torch.float32, safety_checker=None).to(device)
    pipe.set_progress_bar_config(disable=True)
    shares = []
    for colour, background in CHECK_CELLS:
        seed, make_args, prompt = colour_cell(colour, background)
        clip = world.make_clip(seed, **make_args)
        images = pipe([prompt] * len(clip.frames), image=[Image.fromarray(c) for c in canny(clip.frames)], num_inference_steps=20,
                      guidance_scale=GUIDANCE, generator=torch.Generator(device).manual_seed(42), output_type="np").images
        shares.append(colour_adherence((images * 255).round().astype(np.uint8), clip.masks, [colour] * clip.masks.shape[1]))
        log(f"{colour} on {background}: {shares[-1]:.2f}")
    log(f"mean {np.mean(shares):.3f}, lowest {min(shares):.2f}, below 0.5: {sum(s < 0.5 for s in shares)} of {len(shares)}")
    return shares


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, help="the run's folder (checkpoint, encoded frames, exports)")
    p.add_argument("--check", type=Path, metavar="DIR", help="only print the colour cells of the ControlNet in DIR")
    p.add_argument("--encode-only", action="store_true", help="write W/frames.pt (the training frames, latents and edges) and stop")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--steps", type=int, default=None, help="stop after this many steps (or --minutes, whichever comes first)")
    p.add_argument("--export-every", type=int, default=200)
    p.add_argument("--clips", type=int, default=RECIPE["clips"], help=f"training clips, 8 frames each (recipe: {RECIPE['clips']})")
    p.add_argument("--init", type=Path, default=None, help="a ControlNet folder to start from (default: the shipped slot's)")
    p.add_argument("--device", default="cpu", help="torch device (cuda where there is one)")
    p.add_argument("--batch", type=int, default=None, help=f"frames a step (recipe: {RECIPE['batch']})")
    p.add_argument("--lr", type=float, default=None, help=f"learning rate (recipe: {RECIPE['lr']})")
    p.add_argument("--guided-weight", type=float, default=None, help=f"weight of the guided loss (recipe: {RECIPE['guided_weight']})")
    a = p.parse_args(argv)
    if a.check:
        check(a.check, a.device)
        return
    if not a.work:
        p.error("--work is needed to train")
    a.work.mkdir(parents=True, exist_ok=True)
    train(a.work, a.minutes, a.export_every, a.device, a.steps, a.init, a.encode_only, clips=a.clips, batch=a.batch, lr=a.lr, guided_weight=a.guided_weight)


if __name__ == "__main__":
    main()
