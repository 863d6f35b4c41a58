"""Train the toy world's models on CPU, from fixed seeds.

    python -m vsynth.toy.train                 # everything (about two hours on 2 cores), two stages at a time
    python -m vsynth.toy.train --smoke         # a few steps per model, to check the pipeline end to end
    python -m vsynth.toy.train --stage t2i     # one stage (resumes from its checkpoint)
    python -m vsynth.toy.train --wan ...       # the moving world's Wan-architecture T2V (vsynth.toy.train_wan)
    python -m vsynth.toy.train --flux ...      # the FLUX-architecture flux-dev and flux-canny (vsynth.toy.train_flux)
    python -m vsynth.toy.tune_zeroscope ...    # the shipped ZeroScope slot's and ControlNet's fine-tunes for guidance 7.5,
    python -m vsynth.toy.tune_controlnet ...   # run after this (manifest.json's lineage has each one's command)

Stages and their dependencies (the driver runs two independent stages side by side):

    data -> vae (joint) -> latents -> t2i -> t2i-offset -> controlnet -> motion -> ...
            classifier      vae-dec                    -> t2v        -> inpaint, ip2p
                                                                     -> export (+ verify)

``vae-dec`` fine-tunes only the VAE decoder (the encoder, hence the latents the diffusion models train on,
stays fixed) while the T2I trains.  Every diffusion model keeps an EMA of its weights; the EMA is what is
exported.  Work files (data cache, checkpoints, logs, samples) live in ``--work``; the exported float16
weights and ``manifest.json`` in ``--out``, in the layouts vsynth's loaders read (``sd15``,
``controlnet-canny``, ``zeroscope``, ...).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from vsynth.core.diffusion.schedules import SD15_DDIM

from . import world
from .tokenizer import MODEL_MAX_LENGTH, special_ids, toy_tokenizer

# ----------------------------------------------------------------------------------------------- configs
CANNY_LOW, CANNY_HIGH = 100, 200  # vsynth's defaults (plugins/idm: low_threshold / high_threshold)
SIZE = 64
FRAMES = 8
EVAL_SEED = 10_000_000

DDIM = SD15_DDIM  # the schedule the sd15 and zeroscope slots sample with

VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 32, 64),  # 3 blocks -> 2 downsamplings -> 4x (16x16x4 latents at 64x64)
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=SIZE,
)

TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=MODEL_MAX_LENGTH,
    hidden_act="quick_gelu",
)

UNET2D = dict(
    sample_size=SIZE // 4,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64, 64),
    layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=TEXT["hidden_size"],
    attention_head_dim=(2, 4, 4),  # number of heads per block (UNet2D's historical naming): 16 channels per head
    norm_num_groups=8,
)

# ZeroScope's layout; UNet3D reads attention_head_dim as the per-head width (16 -> same heads as UNET2D).
UNET3D = dict(
    sample_size=SIZE // 4,
    in_channels=4,
    out_channels=4,
    block_out_channels=UNET2D["block_out_channels"],
    layers_per_block=1,
    down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
    cross_attention_dim=TEXT["hidden_size"],
    attention_head_dim=8,
    norm_num_groups=8,
)
UNET3D["attention_head_dim"] = 16

CONTROLNET_EMBEDDING = (16, 32, 64)  # 3 entries -> 2 stride-2 convs -> 4x, the VAE factor

MOTION_ADAPTER = dict(
    block_out_channels=UNET2D["block_out_channels"],
    motion_layers_per_block=1,
    motion_num_attention_heads=4,
    motion_norm_num_groups=8,
    motion_max_seq_length=32,
)

SEEDS = {
    "data": 0,
    "vae": 101,
    "vae-dec": 102,
    "classifier": 103,
    "t2i": 104,
    "t2i-offset": 110,
    "controlnet": 105,
    "t2v": 106,
    "motion": 107,
    "inpaint": 108,
    "ip2p": 109,
}

# Full-run recipe: steps, batch, learning rate.  Smoke mode divides steps and data.
RECIPE = {
    "data": dict(clips=2500),
    "vae": dict(steps=700, batch=16, lr=1e-3),
    "vae-dec": dict(steps=500, batch=16, lr=4e-4),
    "classifier": dict(steps=1500, batch=64, lr=1e-3, warmup=50),
    "t2i": dict(steps=1600, batch=24, lr=8e-4, warmup=60),
    "t2i-offset": dict(steps=800, batch=24, lr=3e-4, warmup=20, offset=0.1),
    "controlnet": dict(steps=1200, batch=24, lr=5e-4, warmup=30),
    "t2v": dict(steps=1500, batch=4, lr=4e-4, warmup=40, offset=0.1),
    "motion": dict(steps=400, batch=4, lr=5e-4, warmup=40, offset=0.1),
    "inpaint": dict(steps=600, batch=24, lr=5e-4, warmup=40),
    "ip2p": dict(steps=600, batch=24, lr=5e-4, warmup=40),
}
SMOKE_STEPS = 6
SMOKE_CLIPS = 40


class Ctx:
    def __init__(self, args):
        self.args = args
        self.work = Path(args.work)
        self.out = Path(args.out)
        self.smoke = args.smoke
        for d in ("ckpt", "logs", "samples", "stats", "models"):
            (self.work / d).mkdir(parents=True, exist_ok=True)

    def recipe(self, stage):
        r = dict(RECIPE[stage])
        if self.smoke:
            if "steps" in r:
                r["steps"] = SMOKE_STEPS
                r["warmup"] = 2
            if "clips" in r:
                r["clips"] = SMOKE_CLIPS
        if getattr(self.args, "steps", None):
            r["steps"] = self.args.steps
        return r

    def model_dir(self, name):
        return self.work / "models" / name

    def samples(self):
        d = Path(self.args.samples) if self.args.samples else self.work / "samples"
        d.mkdir(parents=True, exist_ok=True)
        return d


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def _torch():
    import torch

    torch.set_num_threads(1)
    return torch


def _bar(total, desc, initial=0):
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, initial=initial, mininterval=0.5 if interactive else 30, dynamic_ncols=True)


def _stats(ctx, stage, **kw):
    path = ctx.work / "stats" / f"{stage}.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    old.update(kw)
    path.write_text(json.dumps(old, indent=2))


def lr_at(step, r):
    warm = r.get("warmup", 0)
    if step < warm:
        return r["lr"] * (step + 1) / warm
    p = (step - warm) / max(1, r["steps"] - warm)
    return r["lr"] * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


class EMA:
    def __init__(self, module, decay=0.995):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items() if v.dtype.is_floating_point}

    def update(self, module, step):
        d = min(self.decay, (1 + step) / (10 + step))
        with __import__("torch").no_grad():
            for k, v in module.state_dict().items():
                if k in self.shadow:
                    self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)

    def copy_to(self, module):
        sd = module.state_dict()
        sd.update(self.shadow)
        module.load_state_dict(sd)


class Checkpoint:
    """Periodic checkpoint of modules, their EMAs and optimisers; resume from the last one."""

    def __init__(self, ctx, stage):
        self.path = ctx.work / "ckpt" / f"{stage}.pt"
        self.every = 10 if ctx.smoke else 100

    def load(self, modules, emas, opt):
        torch = _torch()
        if not self.path.exists():
            return 0, 0.0
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        for name, m in modules.items():
            m.load_state_dict(state["modules"][name])
        for name, e in emas.items():
            e.shadow = state["emas"][name]
        opt.load_state_dict(state["opt"])
        log(f"resumed {self.path.name} at step {state['step']}")
        return state["step"], state.get("seconds", 0.0)

    def save(self, step, seconds, modules, emas, opt):
        torch = _torch()
        state = dict(
            step=step,
            seconds=seconds,
            modules={n: m.state_dict() for n, m in modules.items()},
            emas={n: e.shadow for n, e in emas.items()},
            opt=opt.state_dict(),
        )
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.path)


def train_loop(ctx, stage, modules, emas, params, step_fn, on_end=None):
    """Generic loop: AdamW with warm-up + cosine, EMA, checkpoints, progress bar; returns the seconds spent."""
    torch = _torch()
    r = ctx.recipe(stage)
    groups = params if isinstance(params[0], dict) else [{"params": params, "scale": 1.0}]
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, lr=r["lr"], weight_decay=0.0)
    ckpt = Checkpoint(ctx, stage)
    start, seconds = ckpt.load(modules, emas, opt)
    bar = _bar(r["steps"], stage, start)
    t0 = time.time() - seconds
    losses = []
    for step in range(start, r["steps"]):
        torch.manual_seed(SEEDS[stage] * 1_000_003 + step)
        rng = np.random.default_rng(SEEDS[stage] * 1_000_003 + step)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, r) * g.get("scale", 1.0)
        loss = step_fn(step, rng, r)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        for name, e in emas.items():
            e.update(modules[name], step)
        losses.append(loss.item())
        bar.update(1)
        if (step + 1) % 50 == 0 or step + 1 == r["steps"]:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
            if not sys.stderr.isatty():
                log(f"{stage} step {step + 1}/{r['steps']} loss {np.mean(losses[-50:]):.4f} lr {lr_at(step, r):.2e} {(time.time() - t0) / 60:.1f} min")
        if (step + 1) % ckpt.every == 0 or step + 1 == r["steps"]:
            ckpt.save(step + 1, time.time() - t0, modules, emas, opt)
    bar.close()
    seconds = time.time() - t0
    _stats(ctx, stage, steps=r["steps"], minutes=round(seconds / 60, 2), seed=SEEDS[stage], recipe=r,
           final_loss=float(np.mean(losses[-50:])) if losses else None)
    return seconds


# ----------------------------------------------------------------------------------------------- data
def canny(frames: np.ndarray) -> np.ndarray:
    """vsynth's canny maps: cv2.Canny per RGB frame, repeated to 3 channels, uint8 (F, H, W, 3)."""
    import cv2

    edges = [cv2.Canny(f, CANNY_LOW, CANNY_HIGH) for f in frames]
    return np.repeat(np.stack(edges)[..., None], 3, axis=-1)


def stage_data(ctx):
    r = ctx.recipe("data")
    path = ctx.work / "data.npz"
    if path.exists():
        log("data exists")
        return
    frames, masks, edges, captions, meta = [], [], [], [], []
    bar = _bar(r["clips"], "data")
    for i in range(r["clips"]):
        clip = world.make_clip(SEEDS["data"] * 10_000_000 + i, frames=FRAMES, size=SIZE)
        frames.append(clip.frames)
        masks.append(clip.masks.any(1))
        edges.append(canny(clip.frames)[..., 0])
        captions.append(clip.caption)
        meta.append(dict(shapes=clip.shapes, background=clip.background))
        bar.update(1)
    bar.close()
    np.savez(path, frames=np.stack(frames), masks=np.stack(masks), edges=np.stack(edges) > 0,
             captions=np.array(captions), meta=np.array([json.dumps(m) for m in meta]))
    log(f"data: {len(frames)} clips -> {path}")


def load_data(ctx):
    d = np.load(ctx.work / "data.npz")
    return {k: d[k] for k in d.files}


def to_tensor(frames):
    torch = _torch()
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1


def to_uint8(x):
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def eval_clips(n=40):
    return [world.make_clip(EVAL_SEED + i, frames=FRAMES, size=SIZE) for i in range(n)]


# ----------------------------------------------------------------------------------------------- VAE
def new_vae():
    from diffusers import AutoencoderKL

    torch = _torch()
    torch.manual_seed(SEEDS["vae"])
    vae = AutoencoderKL(**VAE, scaling_factor=1.0)
    with torch.no_grad():  # start with a small posterior std: unit sampling noise drowns the colour signal early on
        vae.quant_conv.bias[VAE["latent_channels"] :].fill_(-8.0)
    return vae


def palette_loss(rec, x, w, tau=0.05):
    """Cross-entropy of each pixel's nearest named colour (palette + plain backgrounds): a strong push toward the
    right hue, which L1/MSE give only weakly (a grey guess costs little).  Pixels of no named colour (gradient
    backgrounds) are ignored."""
    torch = _torch()
    table = torch.tensor(list(world.NAMED_COLOURS.values()), dtype=rec.dtype) / 127.5 - 1  # (K, 3)
    d_true = ((x[:, :, None] - table.T[None, :, :, None, None]) ** 2).sum(1)  # (B, K, H, W)
    dist, target = d_true.min(1)
    valid = (dist < 1e-3).float() * w[:, 0]
    d_rec = ((rec[:, :, None] - table.T[None, :, :, None, None]) ** 2).sum(1)
    ce = torch.nn.functional.cross_entropy(-d_rec / tau, target, reduction="none")
    return (ce * valid).sum() / valid.sum().clamp(min=1)


def vae_recon_loss(rec, x, mask):
    torch = _torch()
    F = torch.nn.functional
    w = 1 + 4 * mask  # shape pixels weigh more: they are where colours are lost
    l1 = (w * (rec - x).abs()).mean() / w.mean()
    pooled = (F.avg_pool2d(rec, 4) - F.avg_pool2d(x, 4)).abs().mean() + F.mse_loss(F.avg_pool2d(rec, 8), F.avg_pool2d(x, 8)) * 4
    return l1 + pooled + 0.2 * palette_loss(rec, x, w)


def vae_loss(vae, x, mask, kl_weight=1e-6):
    post = vae.encode(x).latent_dist
    rec = vae.decode(post.sample()).sample
    return vae_recon_loss(rec, x, mask) + kl_weight * post.kl().mean()


def vae_fidelity(vae, clips=None):
    """(colour fidelity on shape masks, PSNR) of held-out clips reconstructed from the posterior mean."""
    torch = _torch()
    clips = clips or eval_clips()
    hits = total = 0
    mse = []
    with torch.no_grad():
        for clip in clips:
            x = to_tensor(clip.frames)
            rec = vae.decode(vae.encode(x).latent_dist.mean).sample
            out = to_uint8(rec)
            f = world.colour_fidelity(out, clip)
            n = int(clip.masks.sum())
            hits += f * n
            total += n
            mse.append(((out.astype(np.float32) - clip.frames) ** 2).mean())
    return hits / max(total, 1), float(10 * np.log10(255**2 / np.mean(mse)))


def stage_vae(ctx):
    torch = _torch()
    data = load_data(ctx)
    frames = data["frames"].reshape(-1, SIZE, SIZE, 3)
    masks = data["masks"].reshape(-1, SIZE, SIZE)
    vae = new_vae()
    ema = EMA(vae, 0.99)

    def step_fn(step, rng, r):
        idx = rng.integers(len(frames), size=r["batch"])
        x = to_tensor(frames[idx])
        m = torch.from_numpy(masks[idx]).float()[:, None]
        if step % 4 != 3:  # 3 steps in 4 on random 32x32 crops: 4x cheaper, and colour is local
            c = SIZE // 2
            i, j = rng.integers(0, SIZE - c + 1, 2)
            x, m = x[..., i : i + c, j : j + c], m[..., i : i + c, j : j + c]
        return vae_loss(vae, x, m)

    train_loop(ctx, "vae", {"vae": vae}, {"vae": ema}, list(vae.parameters()), step_fn)
    ema.copy_to(vae)
    fid, psnr = vae_fidelity(vae)
    log(f"VAE (joint) colour fidelity {fid:.3f}, PSNR {psnr:.1f} dB")
    _stats(ctx, "vae", colour_fidelity=round(fid, 4), psnr=round(psnr, 2))
    vae.save_pretrained(ctx.model_dir("vae-joint"))


def stage_latents(ctx):
    """Encode every training frame once (posterior mean), set scaling_factor = 1/std, cache the latents."""
    torch = _torch()
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(ctx.model_dir("vae-joint"))
    data = load_data(ctx)
    frames = data["frames"].reshape(-1, SIZE, SIZE, 3)
    out = []
    bar = _bar(len(frames), "latents")
    with torch.no_grad():
        for i in range(0, len(frames), 64):
            out.append(vae.encode(to_tensor(frames[i : i + 64])).latent_dist.mean)
            bar.update(len(out[-1]))
    bar.close()
    lat = torch.cat(out)
    std = lat.std().item()
    sf = 1.0 / std
    lat = (lat * sf).reshape(len(data["frames"]), FRAMES, 4, SIZE // 4, SIZE // 4)
    torch.save({"latents": lat.half(), "scaling_factor": sf}, ctx.work / "latents.pt")
    log(f"latents {tuple(lat.shape)}, std {std:.4f} -> scaling_factor {sf:.5f}")
    _stats(ctx, "vae", scaling_factor=sf)


def stage_vae_dec(ctx):
    """Fine-tune the decoder only (the encoder, hence the cached latents, is fixed) for colour fidelity."""
    torch = _torch()
    from diffusers import AutoencoderKL

    data = load_data(ctx)
    frames = data["frames"].reshape(-1, SIZE, SIZE, 3)
    masks = data["masks"].reshape(-1, SIZE, SIZE)
    vae = AutoencoderKL.from_pretrained(ctx.model_dir("vae-joint"))
    for p in vae.encoder.parameters():
        p.requires_grad_(False)
    for p in vae.quant_conv.parameters():
        p.requires_grad_(False)
    params = [p for p in vae.parameters() if p.requires_grad]
    ema = EMA(vae, 0.99)

    def step_fn(step, rng, r):
        idx = rng.integers(len(frames), size=r["batch"])
        x = to_tensor(frames[idx])
        m = torch.from_numpy(masks[idx]).float()[:, None]
        with torch.no_grad():
            post = vae.encode(x).latent_dist
            z = post.mean + post.std * torch.randn_like(post.mean)
        # also decode slightly perturbed latents: diffusion samples are never exact encoder outputs
        z = z + 0.05 * post.mean.std() * torch.randn_like(z) * (torch.rand(len(z), 1, 1, 1) < 0.5)
        return vae_recon_loss(vae.decode(z).sample, x, m)

    train_loop(ctx, "vae-dec", {"vae": vae}, {"vae": ema}, params, step_fn)
    ema.copy_to(vae)
    sf = torch.load(ctx.work / "latents.pt")["scaling_factor"]
    vae.register_to_config(scaling_factor=sf)
    fid, psnr = vae_fidelity(vae)
    log(f"VAE (decoder fine-tuned) colour fidelity {fid:.3f}, PSNR {psnr:.1f} dB")
    _stats(ctx, "vae-dec", colour_fidelity=round(fid, 4), psnr=round(psnr, 2))
    vae.save_pretrained(ctx.model_dir("vae"))
    _vae_recon_grid(ctx, vae)


def current_vae(ctx):
    from diffusers import AutoencoderKL

    torch = _torch()
    for name in ("vae", "vae-joint"):
        if (ctx.model_dir(name) / "config.json").exists():
            vae = AutoencoderKL.from_pretrained(ctx.model_dir(name))
            vae.register_to_config(scaling_factor=torch.load(ctx.work / "latents.pt")["scaling_factor"])
            return vae.eval()
    raise FileNotFoundError("no VAE trained yet")


def _vae_recon_grid(ctx, vae):
    torch = _torch()
    clips = eval_clips(6)
    rows = []
    with torch.no_grad():
        for c in clips:
            x = to_tensor(c.frames[:4])
            rec = to_uint8(vae.decode(vae.encode(x).latent_dist.mean).sample)
            rows.append(np.concatenate([*c.frames[:4], *rec], axis=1))
    _save_png(ctx.samples() / "vae_recon.png", np.concatenate(rows, axis=0))


def _save_png(path, img, scale=2):
    from PIL import Image

    Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale), Image.NEAREST).save(path)


# ----------------------------------------------------------------------------------------------- classifier
def new_classifier():
    from vsynth.metrics.quality import classifier_net

    _torch().manual_seed(SEEDS["classifier"])
    return classifier_net()


def _classifier_batch(rng, n, seed_base):
    xs, ys = [], []
    for _ in range(n):
        clip = world.make_clip(int(seed_base + rng.integers(1 << 30)), frames=1, size=SIZE, n_shapes=1)
        shape, colour = clip.shapes[0]
        xs.append(clip.frames[0])
        ys.append((world.SHAPES.index(shape), world.COLOURS.index(colour), world.BACKGROUNDS.index(clip.background)))
    return np.stack(xs), np.array(ys)


def stage_classifier(ctx):
    torch = _torch()
    F = torch.nn.functional
    net = new_classifier().train()
    pool = 200 if ctx.smoke else 16000
    px, py = _classifier_batch(np.random.default_rng(SEEDS["classifier"]), pool, 0)

    def step_fn(step, rng, r):
        idx = rng.integers(pool, size=r["batch"])
        x = to_tensor(px[idx])
        x = x + torch.rand(len(x), 1, 1, 1) * 0.15 * torch.randn_like(x)  # generated frames are not exact
        if rng.random() < 0.5:
            x = torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # nor sharp
        y = torch.from_numpy(py[idx])
        s, c, b = net(x)
        return F.cross_entropy(s, y[:, 0]) + F.cross_entropy(c, y[:, 1]) + F.cross_entropy(b, y[:, 2])

    train_loop(ctx, "classifier", {"net": net}, {}, list(net.parameters()), step_fn)
    net.eval()
    x, y = _classifier_batch(np.random.default_rng(EVAL_SEED), 500, EVAL_SEED)
    with torch.no_grad():
        s, c, b = net(to_tensor(x))
    acc = [float((h.argmax(1).numpy() == y[:, i]).mean()) for i, h in enumerate((s, c, b))]
    log(f"classifier held-out accuracy: shape {acc[0]:.3f}, colour {acc[1]:.3f}, background {acc[2]:.3f}")
    _stats(ctx, "classifier", accuracy=dict(shape=acc[0], colour=acc[1], background=acc[2]))
    d = ctx.model_dir("classifier")
    d.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps(CLASSIFIER_CONFIG, indent=2))


CLASSIFIER_CONFIG = dict(
    architecture="3x Conv2d(k3,s2)+BatchNorm+ReLU (3->32->64->64), concat(global average pool, global max pool), Linear(128, 13); input (B,3,H,W) in [-1,1]",
    input_range=[-1, 1],
    size=SIZE,
    heads={"shape": list(world.SHAPES), "colour": list(world.COLOURS), "background": list(world.BACKGROUNDS)},
)


def load_classifier(ctx):
    from safetensors.torch import load_file

    net = new_classifier()
    net.load_state_dict(load_file(str(ctx.model_dir("classifier") / "model.safetensors")))
    return net.eval()


# ----------------------------------------------------------------------------------------------- text + T2I
def new_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    vocab_size, bos, eos = special_ids()
    _torch().manual_seed(SEEDS["t2i"])
    return CLIPTextModel(CLIPTextConfig(**TEXT, vocab_size=vocab_size, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos))


def new_unet2d(**changes):
    from diffusers import UNet2DConditionModel

    _torch().manual_seed(SEEDS["t2i"] + 1)
    return UNet2DConditionModel(**{**UNET2D, **changes})


def tokenize(captions):
    torch = _torch()
    tok = toy_tokenizer()
    return torch.tensor(tok(list(captions), padding="max_length", max_length=MODEL_MAX_LENGTH, truncation=True).input_ids)


def alphas_cumprod():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**DDIM).alphas_cumprod


def noised(x0, acp, offset=0.0, t=None):
    """x_t at timesteps ``t`` (uniform random ones by default), with the noise; ``offset`` adds "offset noise" (Guttenberg, 2023).

    SD1.5's schedule leaves 7% of the signal at t=999 (no zero terminal SNR), so a model learns to
    read the leaked flat background and layout there, which sampling from pure noise never has:
    the toy T2I then picks backgrounds by chance, and the T2V one per frame. A per-channel constant
    added to the noise (per frame, for videos) drowns that leak and makes the model decide them.
    """
    torch = _torch()
    if t is None:
        t = torch.randint(0, len(acp), (x0.shape[0],))
    eps = torch.randn_like(x0)
    if offset:
        eps = eps + offset * torch.randn(*x0.shape[:-2], 1, 1, device=x0.device)
    a = acp[t].view(-1, *([1] * (x0.dim() - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * eps, t, eps


def dropped_captions(rng, tokens, empty, drop=0.1):
    """``tokens`` with a share ``drop`` of them replaced by the empty caption's, so that the model also
    learns the unconditional prediction classifier-free guidance needs."""
    torch = _torch()
    tokens = tokens.clone()
    tokens[torch.from_numpy(rng.random(len(tokens)) < drop)] = empty
    return tokens


def load_latents(ctx):
    torch = _torch()
    return torch.load(ctx.work / "latents.pt")["latents"]


def stage_t2i(ctx):
    torch = _torch()
    F = torch.nn.functional
    data = load_data(ctx)
    lat = load_latents(ctx).float()  # (N, F, 4, h, w)
    ids = tokenize(data["captions"])
    empty = tokenize([""])[0]
    te, unet = new_text_encoder(), new_unet2d()
    emas = {"te": EMA(te), "unet": EMA(unet)}
    acp = alphas_cumprod()
    N = lat.shape[0]

    def step_fn(step, rng, r):
        clip = rng.integers(N, size=r["batch"])
        frame = rng.integers(FRAMES, size=r["batch"])
        x0 = lat[clip, frame]
        tok = dropped_captions(rng, ids[clip], empty)
        cond = te(tok)[0]
        xt, t, eps = noised(x0, acp, r.get("offset", 0.0))
        return F.mse_loss(unet(xt, t, cond).sample, eps)

    train_loop(ctx, "t2i", {"te": te, "unet": unet}, emas, list(te.parameters()) + list(unet.parameters()), step_fn)
    emas["te"].copy_to(te)
    emas["unet"].copy_to(unet)
    te.save_pretrained(ctx.model_dir("text_encoder"))
    unet.save_pretrained(ctx.model_dir("unet"))


def stage_t2i_offset(ctx):
    """Fine-tune the T2I UNet with offset noise (see :func:`noised`), its text encoder frozen, so that
    it picks backgrounds from the prompt instead of from the initial noise; the ControlNet and the
    T2V model, which read the same text encoder, are trained on it afterwards."""
    torch = _torch()
    F = torch.nn.functional
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    data = load_data(ctx)
    lat = load_latents(ctx).float()
    ids = tokenize(data["captions"])
    empty = tokenize([""])[0]
    te = CLIPTextModel.from_pretrained(ctx.model_dir("text_encoder")).eval().requires_grad_(False)
    unet = UNet2DConditionModel.from_pretrained(ctx.model_dir("unet"))
    ema = EMA(unet)
    acp = alphas_cumprod()
    N = lat.shape[0]

    def step_fn(step, rng, r):
        clip = rng.integers(N, size=r["batch"])
        x0 = lat[clip, rng.integers(FRAMES, size=r["batch"])]
        tok = dropped_captions(rng, ids[clip], empty)
        with torch.no_grad():
            cond = te(tok)[0]
        xt, t, eps = noised(x0, acp, r["offset"])
        return F.mse_loss(unet(xt, t, cond).sample, eps)

    train_loop(ctx, "t2i-offset", {"unet": unet}, {"unet": ema}, list(unet.parameters()), step_fn)
    ema.copy_to(unet)
    unet.save_pretrained(ctx.model_dir("unet"))


def sd_pipeline(ctx, unet=None, pipeline="StableDiffusionPipeline", **extra):
    import diffusers
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    return getattr(diffusers, pipeline)(
        vae=current_vae(ctx),
        text_encoder=CLIPTextModel.from_pretrained(ctx.model_dir("text_encoder")).eval(),
        tokenizer=toy_tokenizer(),
        unet=(unet or UNet2DConditionModel.from_pretrained(ctx.model_dir("unet"))).eval(),
        scheduler=DDIMScheduler(**DDIM),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        **extra,
    )


def judge(ctx, images, prompts_meta, classifier=None):
    """Per image (shape hit, colour hit, background hit): the classifier's shape, and colour / background by
    the classifier; plus the palette share of non-background pixels that are the prompted colour."""
    torch = _torch()
    net = classifier or load_classifier(ctx)
    with torch.no_grad():
        s, c, b = net(to_tensor(images))
    out = []
    for i, (shape, colour, bg) in enumerate(prompts_meta):
        out.append((world.SHAPES[s[i].argmax()] == shape, world.COLOURS[c[i].argmax()] == colour, world.BACKGROUNDS[b[i].argmax()] == bg,
                    dominant_palette_colour(images[i]) == colour))
    return np.array(out)


def dominant_palette_colour(image, min_pixels=20):
    """The palette colour most pixels of ``image`` are nearest to (ignoring pixels nearest a background grey)."""
    names = tuple(world.NAMED_COLOURS)
    nearest = world.nearest_colour_names(image)
    counts = [(nearest == names.index(c)).sum() for c in world.COLOURS]
    return world.COLOURS[int(np.argmax(counts))] if max(counts) >= min_pixels else None


def check_t2i(ctx, n=24):
    torch = _torch()
    pipe = sd_pipeline(ctx)
    rng = np.random.default_rng(7)
    meta = [(world.SHAPES[rng.integers(3)], world.COLOURS[rng.integers(6)], world.BACKGROUNDS[rng.integers(4)]) for _ in range(n)]
    prompts = [world.caption_of([(s, c)], b) for s, c, b in meta]
    images = []
    for i, p in enumerate(prompts):
        g = torch.Generator().manual_seed(i)
        images.append(pipe(p, height=SIZE, width=SIZE, num_inference_steps=25, guidance_scale=4.0, generator=g, output_type="np").images[0])
    images = (np.stack(images) * 255).round().astype(np.uint8)
    hits = judge(ctx, images, meta)
    rate = hits.mean(0)
    log(f"T2I samples (DDIM 25, cfg 4, n={n}), classifier hit rates: shape {rate[0]:.2f}, colour {rate[1]:.2f}, background {rate[2]:.2f}, "
        f"all three {hits[:, :3].all(1).mean():.2f}; dominant palette colour = prompted colour {rate[3]:.2f}")
    _stats(ctx, "t2i", sample_check=dict(n=n, shape=float(rate[0]), colour=float(rate[1]), background=float(rate[2]), all=float(hits[:, :3].all(1).mean()),
                                         colour_by_palette=float(rate[3]), prompts=prompts))
    rows = [np.concatenate(list(images[i : i + 8]), axis=1) for i in range(0, n, 8)]
    _save_png(ctx.samples() / "t2i_samples.png", np.concatenate(rows, axis=0))
    (ctx.samples() / "t2i_samples.txt").write_text("\n".join(f"{p} | shape {h[0]} colour {h[1]} bg {h[2]} palette-colour {h[3]}" for p, h in zip(prompts, hits)) + "\n")
    # two-shape prompts, for a look at colour binding
    two = [world.caption_of([("circle", "red"), ("square", "blue")], "white"), world.caption_of([("triangle", "yellow"), ("circle", "green")], "black"),
           world.caption_of([("square", "purple"), ("triangle", "cyan")], "gray"), world.caption_of([("circle", "blue"), ("triangle", "red")], "gradient")]
    imgs = [pipe(p, height=SIZE, width=SIZE, num_inference_steps=25, guidance_scale=4.0, generator=torch.Generator().manual_seed(100 + i), output_type="np").images[0] for i, p in enumerate(two)]
    _save_png(ctx.samples() / "t2i_two_shapes.png", (np.concatenate(imgs, axis=1) * 255).round().astype(np.uint8))
    (ctx.samples() / "t2i_two_shapes.txt").write_text("\n".join(two) + "\n")


# ----------------------------------------------------------------------------------------------- ControlNet
def stage_controlnet(ctx):
    torch = _torch()
    F = torch.nn.functional
    from diffusers import ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextModel

    data = load_data(ctx)
    lat = load_latents(ctx).float()
    edges = data["edges"]  # (N, F, H, W) bool
    te = CLIPTextModel.from_pretrained(ctx.model_dir("text_encoder")).eval().requires_grad_(False)
    unet = UNet2DConditionModel.from_pretrained(ctx.model_dir("unet")).eval().requires_grad_(False)
    torch.manual_seed(SEEDS["controlnet"])
    cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=CONTROLNET_EMBEDDING)
    ema = EMA(cn)
    ids = tokenize(data["captions"])
    empty = tokenize([""])[0]
    acp = alphas_cumprod()
    N = lat.shape[0]

    def step_fn(step, rng, r):
        clip = rng.integers(N, size=r["batch"])
        frame = rng.integers(FRAMES, size=r["batch"])
        x0 = lat[clip, frame]
        tok = dropped_captions(rng, ids[clip], empty, drop=0.3)
        with torch.no_grad():
            cond = te(tok)[0]
        control = torch.from_numpy(edges[clip, frame]).float()[:, None].repeat(1, 3, 1, 1)  # [0, 1]
        xt, t, eps = noised(x0, acp)
        down, mid = cn(xt, t, cond, controlnet_cond=control, return_dict=False)
        pred = unet(xt, t, cond, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        return F.mse_loss(pred, eps)

    train_loop(ctx, "controlnet", {"cn": cn}, {"cn": ema}, list(cn.parameters()), step_fn)
    ema.copy_to(cn)
    cn.save_pretrained(ctx.model_dir("controlnet"))


def edge_f1(pred_edges, true_edges, tol=2):
    """F1 of edge pixels with a distance tolerance of ``tol`` pixels."""
    import cv2

    k = np.ones((2 * tol + 1, 2 * tol + 1), np.uint8)
    p, t = pred_edges > 0, true_edges > 0
    if p.sum() == 0 or t.sum() == 0:
        return 0.0
    t_d = cv2.dilate(t.astype(np.uint8), k) > 0
    p_d = cv2.dilate(p.astype(np.uint8), k) > 0
    precision = (p & t_d).sum() / p.sum()
    recall = (t & p_d).sum() / t.sum()
    return float(2 * precision * recall / max(precision + recall, 1e-9))


def check_controlnet(ctx, n=12):
    torch = _torch()
    from diffusers import ControlNetModel
    from PIL import Image

    cn = ControlNetModel.from_pretrained(ctx.model_dir("controlnet")).eval()
    pipe = sd_pipeline(ctx, pipeline="StableDiffusionControlNetPipeline", controlnet=cn)
    plain = sd_pipeline(ctx)
    clips = eval_clips(n)
    f1s, f1_plain, rows = [], [], []
    for i, clip in enumerate(clips):
        cond = canny(clip.frames[:1])[0]
        kw = dict(height=SIZE, width=SIZE, num_inference_steps=25, guidance_scale=4.0, output_type="np")
        out = pipe(clip.caption, image=Image.fromarray(cond), generator=torch.Generator().manual_seed(i), **kw).images[0]
        ref = plain(clip.caption, generator=torch.Generator().manual_seed(i), **kw).images[0]
        out8, ref8 = (out * 255).round().astype(np.uint8), (ref * 255).round().astype(np.uint8)
        f1s.append(edge_f1(canny(out8[None])[0, ..., 0], cond[..., 0]))
        f1_plain.append(edge_f1(canny(ref8[None])[0, ..., 0], cond[..., 0]))
        if i < 6:
            rows.append(np.concatenate([clip.frames[0], cond, out8, ref8], axis=1))
    log(f"ControlNet edge F1 (tol 2 px, n={n}): {np.mean(f1s):.3f} vs plain sd15 {np.mean(f1_plain):.3f}")
    _stats(ctx, "controlnet", edge_f1=float(np.mean(f1s)), edge_f1_plain_sd15=float(np.mean(f1_plain)))
    _save_png(ctx.samples() / "controlnet.png", np.concatenate(rows, axis=0))  # source | canny | controlnet | plain


# ----------------------------------------------------------------------------------------------- T2V (UNet3D)
def unet3d_from_2d(unet2d):
    """A UNet3DConditionModel whose spatial weights are the 2D UNet's; temporal layers start as identity."""
    torch = _torch()
    from diffusers import UNet3DConditionModel

    torch.manual_seed(SEEDS["t2v"])
    u3 = UNet3DConditionModel(**UNET3D)
    s2 = unet2d.state_dict()
    s3 = u3.state_dict()
    copied, temporal = 0, 0
    for k, v in s3.items():
        if k in s2:
            w = s2[k]
            if w.shape != v.shape:
                w = w.reshape(v.shape)  # 1x1 conv projections -> linear projections
            s3[k] = w.clone()
            copied += 1
        elif "temp_" in k or "transformer_in" in k:
            temporal += 1
        else:
            raise KeyError(f"unmapped UNet3D weight {k}")
    unused = [k for k in s2 if k not in s3]
    if unused:
        raise KeyError(f"2D weights not used: {unused[:5]}")
    u3.load_state_dict(s3)
    with torch.no_grad():  # temporal attention outputs start at zero (diffusers zero-inits only the temporal convs)
        for name, m in u3.named_modules():
            if ("temp_attentions" in name or name.startswith("transformer_in")) and name.endswith("proj_out"):
                m.weight.zero_()
                m.bias.zero_()
    log(f"UNet3D from 2D: {copied} tensors copied, {temporal} temporal tensors at init")
    return u3


def stage_t2v(ctx):
    torch = _torch()
    F = torch.nn.functional
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    data = load_data(ctx)
    lat = load_latents(ctx).float()  # (N, F, 4, h, w)
    te = CLIPTextModel.from_pretrained(ctx.model_dir("text_encoder")).eval().requires_grad_(False)
    u3 = unet3d_from_2d(UNet2DConditionModel.from_pretrained(ctx.model_dir("unet")))
    from diffusers.models.attention_processor import AttnProcessor

    u3.set_attn_processor(AttnProcessor())  # faster than SDPA on CPU for the temporal attention
    ema = EMA(u3)
    ids = tokenize(data["captions"])
    empty = tokenize([""])[0]
    acp = alphas_cumprod()
    N = lat.shape[0]
    temporal = [p for n, p in u3.named_parameters() if "temp_" in n or "transformer_in" in n]
    spatial = [p for n, p in u3.named_parameters() if not ("temp_" in n or "transformer_in" in n)]

    def step_fn(step, rng, r):
        clip = rng.integers(N, size=r["batch"])
        x0 = lat[clip].permute(0, 2, 1, 3, 4)  # (B, 4, F, h, w)
        tok = dropped_captions(rng, ids[clip], empty)
        with torch.no_grad():
            cond = te(tok)[0]
        xt, t, eps = noised(x0, acp, r.get("offset", 0.0))
        return F.mse_loss(u3(xt, t, cond).sample, eps)

    # spatial weights are already trained: they learn at a tenth of the rate of the new temporal layers
    params = [{"params": temporal, "scale": 1.0}, {"params": spatial, "scale": 0.1}]
    train_loop(ctx, "t2v", {"u3": u3}, {"u3": ema}, params, step_fn)
    ema.copy_to(u3)
    u3.save_pretrained(ctx.model_dir("unet3d"))


def t2v_pipeline(ctx, unet3d=None):
    from diffusers import DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel
    from transformers import CLIPTextModel

    return TextToVideoSDPipeline(
        vae=current_vae(ctx),
        text_encoder=CLIPTextModel.from_pretrained(ctx.model_dir("text_encoder")).eval(),
        tokenizer=toy_tokenizer(),
        unet=(unet3d or UNet3DConditionModel.from_pretrained(ctx.model_dir("unet3d"))).eval(),
        scheduler=DDIMScheduler(**DDIM),
    )


def motion_stats(video, colour):
    """Centroids of the pixels nearest the prompted colour, per frame; (mean step in px, area CV, steps)."""
    names = tuple(world.NAMED_COLOURS)
    cents, areas = [], []
    for f in video:
        m = world.nearest_colour_names(f) == names.index(colour)
        areas.append(m.sum())
        if m.sum() < 10:
            cents.append((np.nan, np.nan))
        else:
            ys, xs = np.nonzero(m)
            cents.append((xs.mean(), ys.mean()))
    cents = np.array(cents)
    steps = np.linalg.norm(np.diff(cents, axis=0), axis=1)
    return float(np.nanmean(steps)) if np.isfinite(steps).any() else float("nan"), float(np.std(areas) / max(np.mean(areas), 1)), cents


def check_video(ctx, pipe, name, n=4, frames=FRAMES):
    torch = _torch()
    rng = np.random.default_rng(11)
    rows, res = [], []
    for i in range(n):
        s, c, b = world.SHAPES[rng.integers(3)], world.COLOURS[rng.integers(6)], world.BACKGROUNDS[rng.integers(3)]
        p = world.caption_of([(s, c)], b)
        out = pipe(p, num_frames=frames, height=SIZE, width=SIZE, num_inference_steps=25, guidance_scale=4.0,
                   generator=torch.Generator().manual_seed(i), output_type="np").frames[0]
        v = (np.asarray(out) * 255).round().astype(np.uint8)
        step, area_cv, cents = motion_stats(v, c)
        diff = float(np.abs(np.diff(v.astype(np.float32), axis=0)).mean())
        res.append(dict(prompt=p, mean_centroid_step_px=step, area_cv=area_cv, mean_abs_frame_diff=diff,
                        centroids=np.round(cents, 1).tolist()))
        rows.append(np.concatenate(list(v), axis=1))
        world.write_video(ctx.samples() / f"{name}_{i}.mp4", v)
    steps = [r["mean_centroid_step_px"] for r in res]
    log(f"{name} motion: mean centroid step per frame {np.nanmean(steps):.2f} px (per sample {np.round(steps, 2).tolist()}), "
        f"area CV {np.mean([r['area_cv'] for r in res]):.2f}, frame diff {np.mean([r['mean_abs_frame_diff'] for r in res]):.1f}")
    _save_png(ctx.samples() / f"{name}_samples.png", np.concatenate(rows, axis=0))
    return res


def check_t2v(ctx):
    res = check_video(ctx, t2v_pipeline(ctx), "t2v")
    _stats(ctx, "t2v", motion_check=res)


# ----------------------------------------------------------------------------------------------- MotionAdapter
def stage_motion(ctx):
    torch = _torch()
    F = torch.nn.functional
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
    from transformers import CLIPTextModel

    data = load_data(ctx)
    lat = load_latents(ctx).float()
    te = CLIPTextModel.from_pretrained(ctx.model_dir("text_encoder")).eval().requires_grad_(False)
    torch.manual_seed(SEEDS["motion"])
    adapter = MotionAdapter(**MOTION_ADAPTER)
    unet = UNetMotionModel.from_unet2d(UNet2DConditionModel.from_pretrained(ctx.model_dir("unet")), adapter)
    unet.freeze_unet2d_params()
    params = [p for p in unet.parameters() if p.requires_grad]
    ema = EMA(unet)
    ids = tokenize(data["captions"])
    empty = tokenize([""])[0]
    acp = alphas_cumprod()
    N = lat.shape[0]

    def step_fn(step, rng, r):
        clip = rng.integers(N, size=r["batch"])
        x0 = lat[clip].permute(0, 2, 1, 3, 4)
        tok = dropped_captions(rng, ids[clip], empty)
        with torch.no_grad():
            cond = te(tok)[0]
        xt, t, eps = noised(x0, acp, r.get("offset", 0.0))
        cond = cond.repeat_interleave(x0.shape[2], dim=0)  # UNetMotionModel takes one prompt per frame
        return F.mse_loss(unet(xt, t, cond).sample, eps)

    train_loop(ctx, "motion", {"unet": unet}, {"unet": ema}, params, step_fn)
    ema.copy_to(unet)
    # MotionAdapter's own modules from the motion UNet
    for i, block in enumerate(unet.down_blocks):
        adapter.down_blocks[i].motion_modules.load_state_dict(block.motion_modules.state_dict())
    for i, block in enumerate(unet.up_blocks):
        adapter.up_blocks[i].motion_modules.load_state_dict(block.motion_modules.state_dict())
    if hasattr(unet.mid_block, "motion_modules") and adapter.mid_block is not None:
        adapter.mid_block.motion_modules.load_state_dict(unet.mid_block.motion_modules.state_dict())
    adapter.save_pretrained(ctx.model_dir("motion-adapter"))


def check_motion(ctx):
    from diffusers import AnimateDiffPipeline, DDIMScheduler, MotionAdapter

    adapter = MotionAdapter.from_pretrained(ctx.model_dir("motion-adapter"))
    sd = sd_pipeline(ctx)
    pipe = AnimateDiffPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, unet=sd.unet,
                               motion_adapter=adapter, scheduler=DDIMScheduler(**DDIM))
    res = check_video(ctx, pipe, "animatediff")
    _stats(ctx, "motion", motion_check=res)


# ----------------------------------------------------------------------------------------------- inpainting / IP2P
def _extended_unet(ctx, in_channels):
    """The toy T2I UNet with extra zero-initialised input channels (as SD-inpaint and IP2P were made)."""
    torch = _torch()
    from diffusers import UNet2DConditionModel

    base = UNet2DConditionModel.from_pretrained(ctx.model_dir("unet"))
    unet = new_unet2d(in_channels=in_channels)
    sd = base.state_dict()
    w = torch.zeros_like(unet.conv_in.weight)
    w[:, :4] = sd["conv_in.weight"]
    sd["conv_in.weight"] = w
    unet.load_state_dict(sd)
    return unet


def random_masks(rng, n, size):
    """Random inpainting masks (1 = repaint): rectangles or ellipses covering 10-50% of the frame."""
    out = np.zeros((n, size, size), np.float32)
    ys, xs = np.mgrid[0:size, 0:size]
    for i in range(n):
        w, h = rng.integers(size // 4, size * 3 // 4, 2)
        x0, y0 = rng.integers(0, size - w), rng.integers(0, size - h)
        if rng.random() < 0.5:
            out[i, y0 : y0 + h, x0 : x0 + w] = 1
        else:
            out[i] = ((xs - x0 - w / 2) / (w / 2)) ** 2 + ((ys - y0 - h / 2) / (h / 2)) ** 2 <= 1
    return out


def stage_inpaint(ctx):
    torch = _torch()
    F = torch.nn.functional
    from transformers import CLIPTextModel

    data = load_data(ctx)
    frames = data["frames"]
    lat = load_latents(ctx).float()
    vae = current_vae(ctx).requires_grad_(False)
    sf = vae.config.scaling_factor
    te = CLIPTextModel.from_pretrained(ctx.model_dir("text_encoder")).eval().requires_grad_(False)
    unet = _extended_unet(ctx, 9)
    ema = EMA(unet)
    ids = tokenize(data["captions"])
    empty = tokenize([""])[0]
    acp = alphas_cumprod()
    N = lat.shape[0]

    def step_fn(step, rng, r):
        clip = rng.integers(N, size=r["batch"])
        frame = rng.integers(FRAMES, size=r["batch"])
        x0 = lat[clip, frame]
        mask = torch.from_numpy(random_masks(rng, r["batch"], SIZE))[:, None]
        img = to_tensor(frames[clip, frame])
        with torch.no_grad():
            masked = vae.encode(img * (mask < 0.5)).latent_dist.mean * sf
            cond = te(torch.where(torch.from_numpy(rng.random(r["batch"]) < 0.1)[:, None], empty, ids[clip]))[0]
        small = F.interpolate(mask, size=x0.shape[-2:])
        xt, t, eps = noised(x0, acp)
        return F.mse_loss(unet(torch.cat([xt, small, masked], 1), t, cond).sample, eps)

    train_loop(ctx, "inpaint", {"unet": unet}, {"unet": ema}, list(unet.parameters()), step_fn)
    ema.copy_to(unet)
    unet.save_pretrained(ctx.model_dir("unet-inpaint"))


def edit_pair(seed):
    """(source clip frame 0, edited frame 0, instruction): recolour or reshape one shape of a seeded clip."""
    rng = np.random.default_rng(seed)
    src = world.make_clip(seed, frames=1, size=SIZE)
    shapes = list(src.shapes)
    i = int(rng.integers(len(shapes)))
    shape, colour = shapes[i]
    if rng.random() < 0.6:
        free = [c for c in world.COLOURS if c not in {c2 for _, c2 in shapes}]
        new = free[rng.integers(len(free))]
        shapes[i] = (shape, new)
        text = f"make the {shape} {new}" if sum(s == shape for s, _ in shapes) == 1 else f"make the {colour} {shape} {new}"
    else:
        new = [s for s in world.SHAPES if s != shape][rng.integers(2)]
        shapes[i] = (new, colour)
        text = f"turn the {colour} {shape} into a {new}"
    dst = world.make_clip(seed, frames=1, size=SIZE, shapes=shapes, background=src.background)
    return src.frames[0], dst.frames[0], text


def stage_ip2p(ctx):
    torch = _torch()
    F = torch.nn.functional
    from transformers import CLIPTextModel

    vae = current_vae(ctx).requires_grad_(False)
    sf = vae.config.scaling_factor
    te = CLIPTextModel.from_pretrained(ctx.model_dir("text_encoder")).eval().requires_grad_(False)
    unet = _extended_unet(ctx, 8)
    ema = EMA(unet)
    empty = tokenize([""])[0]
    acp = alphas_cumprod()
    tok = toy_tokenizer()
    # pre-build a pool of edit pairs, encoded once
    pool = 400 if ctx.smoke else 6000
    log(f"ip2p: encoding {pool} edit pairs")
    src, dst, texts = zip(*(edit_pair(1_000_000 + i) for i in range(pool)))
    with torch.no_grad():
        zs = torch.cat([vae.encode(to_tensor(np.stack(src[i : i + 64]))).latent_dist.mean * sf for i in range(0, pool, 64)])
        zd = torch.cat([vae.encode(to_tensor(np.stack(dst[i : i + 64]))).latent_dist.mean * sf for i in range(0, pool, 64)])
    ids = torch.tensor(tok(list(texts), padding="max_length", max_length=MODEL_MAX_LENGTH).input_ids)

    def step_fn(step, rng, r):
        idx = rng.integers(pool, size=r["batch"])
        drop_text = torch.from_numpy(rng.random(r["batch"]) < 0.05)
        drop_img = torch.from_numpy(rng.random(r["batch"]) < 0.05).view(-1, 1, 1, 1)
        with torch.no_grad():
            cond = te(torch.where(drop_text[:, None], empty, ids[idx]))[0]
        xt, t, eps = noised(zd[idx], acp)
        img = torch.where(drop_img, torch.zeros_like(zs[idx]), zs[idx])
        return F.mse_loss(unet(torch.cat([xt, img], 1), t, cond).sample, eps)

    train_loop(ctx, "ip2p", {"unet": unet}, {"unet": ema}, list(unet.parameters()), step_fn)
    ema.copy_to(unet)
    unet.save_pretrained(ctx.model_dir("unet-ip2p"))


# ----------------------------------------------------------------------------------------------- export
def _sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def stage_export(ctx):
    """Write the float16 model folders in vsynth's slot layouts and the manifest."""
    torch = _torch()
    import shutil

    from diffusers import (ControlNetModel, DDIMScheduler, MotionAdapter, StableDiffusionInpaintPipeline,
                           StableDiffusionInstructPix2PixPipeline, StableDiffusionPipeline, TextToVideoSDPipeline,
                           UNet2DConditionModel, UNet3DConditionModel)
    from transformers import CLIPTextModel

    out = ctx.out
    out.mkdir(parents=True, exist_ok=True)
    half = dict(torch_dtype=torch.float16)
    vae = current_vae(ctx).to(torch.float16)
    te = CLIPTextModel.from_pretrained(ctx.model_dir("text_encoder"), **half)
    common = dict(vae=vae, text_encoder=te, tokenizer=toy_tokenizer(), scheduler=DDIMScheduler(**DDIM))
    sd_extra = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    exported = {}

    def done(name, stages):
        exported[name] = stages

    def save(name, fn, stages):
        tgt = out / name
        if tgt.exists():
            shutil.rmtree(tgt)
        fn(tgt)
        done(name, stages)

    if (ctx.model_dir("unet") / "config.json").exists():
        unet = UNet2DConditionModel.from_pretrained(ctx.model_dir("unet"), **half)
        save("sd15", lambda d: StableDiffusionPipeline(unet=unet, **common, **sd_extra).save_pretrained(d), ["vae", "vae-dec", "t2i", "t2i-offset"])
    if (ctx.model_dir("controlnet") / "config.json").exists():
        save("controlnet-canny", lambda d: ControlNetModel.from_pretrained(ctx.model_dir("controlnet"), **half).save_pretrained(d), ["controlnet"])
    if (ctx.model_dir("unet3d") / "config.json").exists():
        u3 = UNet3DConditionModel.from_pretrained(ctx.model_dir("unet3d"), **half)
        save("zeroscope", lambda d: TextToVideoSDPipeline(unet=u3, **common).save_pretrained(d), ["vae", "vae-dec", "t2i", "t2i-offset", "t2v"])
    if (ctx.model_dir("motion-adapter") / "config.json").exists():
        save("motion-adapter", lambda d: MotionAdapter.from_pretrained(ctx.model_dir("motion-adapter"), **half).save_pretrained(d), ["motion"])
    if (ctx.model_dir("unet-inpaint") / "config.json").exists():
        ui = UNet2DConditionModel.from_pretrained(ctx.model_dir("unet-inpaint"), **half)
        save("sd15-inpaint", lambda d: StableDiffusionInpaintPipeline(unet=ui, **common, **sd_extra).save_pretrained(d), ["vae", "vae-dec", "t2i", "inpaint"])
    if (ctx.model_dir("unet-ip2p") / "config.json").exists():
        up = UNet2DConditionModel.from_pretrained(ctx.model_dir("unet-ip2p"), **half)
        save("instruct-pix2pix", lambda d: StableDiffusionInstructPix2PixPipeline(unet=up, **common, **sd_extra).save_pretrained(d), ["vae", "vae-dec", "t2i", "ip2p"])
    if (ctx.model_dir("classifier") / "model.safetensors").exists():
        from safetensors.torch import load_file, save_file

        def cls(d):
            d.mkdir(parents=True)
            sd = load_file(str(ctx.model_dir("classifier") / "model.safetensors"))
            save_file({k: v.half().contiguous() for k, v in sd.items()}, str(d / "model.safetensors"))
            shutil.copy(ctx.model_dir("classifier") / "config.json", d / "config.json")

        save("classifier", cls, ["classifier"])

    stats = {p.stem: json.loads(p.read_text()) for p in (ctx.work / "stats").glob("*.json")}
    command = f"python -m vsynth.toy.train --out {ctx.out} --work {ctx.work}" + (" --smoke" if ctx.smoke else "")
    manifest = {"format": 1, "smoke": ctx.smoke, "size": SIZE, "frames": FRAMES, "models": {}}
    total = 0
    for name, stages in exported.items():
        files = []
        for f in sorted((out / name).rglob("*")):
            if f.is_file():
                files.append(dict(path=str(f.relative_to(out)), sha256=_sha(f), bytes=f.stat().st_size))
                total += f.stat().st_size
        manifest["models"][name] = dict(
            files=files,
            stages={s: {k: stats.get(s, {}).get(k) for k in ("steps", "minutes", "seed", "final_loss")} for s in stages},
            metrics={s: {k: v for k, v in stats.get(s, {}).items() if k not in ("steps", "minutes", "seed", "final_loss", "recipe")} for s in stages},
            command=command,
            stage_command=" ; ".join(f"python -m vsynth.toy.train --stage {s} --out {ctx.out} --work {ctx.work}" for s in stages),
        )
    manifest["total_bytes"] = total
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    log(f"exported {list(exported)} to {out}: {total / 1e6:.2f} MB")


def stage_verify(ctx):
    """Load the exported folders with from_pretrained and run StableDiffusionControlNetPipeline once."""
    torch = _torch()
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, TextToVideoSDPipeline
    from PIL import Image

    out = ctx.out
    results = {}
    if (out / "sd15").exists() and (out / "controlnet-canny").exists():
        cn = ControlNetModel.from_pretrained(out / "controlnet-canny", torch_dtype=torch.float32)
        pipe = StableDiffusionControlNetPipeline.from_pretrained(out / "sd15", controlnet=cn, torch_dtype=torch.float32, safety_checker=None)
        clip = world.make_clip(EVAL_SEED + 999, frames=1)
        img = pipe(clip.caption, image=Image.fromarray(canny(clip.frames)[0]), height=SIZE, width=SIZE, num_inference_steps=4,
                   generator=torch.Generator().manual_seed(0), output_type="np").images[0]
        results["controlnet_pipeline"] = list(img.shape)
    if (out / "zeroscope").exists():
        pipe = TextToVideoSDPipeline.from_pretrained(out / "zeroscope", torch_dtype=torch.float32)
        v = pipe("a red circle on a white background", num_frames=4, height=SIZE, width=SIZE, num_inference_steps=3, output_type="np").frames[0]
        results["t2v_pipeline"] = list(np.asarray(v).shape)
    log(f"verify: {results}")


# ----------------------------------------------------------------------------------------------- driver
STAGES = {
    "data": stage_data,
    "vae": stage_vae,
    "latents": stage_latents,
    "vae-dec": stage_vae_dec,
    "classifier": stage_classifier,
    "t2i": stage_t2i,
    "t2i-offset": stage_t2i_offset,
    "check-t2i": check_t2i,
    "controlnet": stage_controlnet,
    "check-controlnet": check_controlnet,
    "t2v": stage_t2v,
    "check-t2v": check_t2v,
    "motion": stage_motion,
    "check-motion": check_motion,
    "inpaint": stage_inpaint,
    "ip2p": stage_ip2p,
    "export": stage_export,
    "verify": stage_verify,
}

# Phases run in order; the stage chains inside a phase run side by side (one process each).
PHASES = [
    [["data"]],
    [["vae", "latents"], ["classifier"]],
    [["t2i", "t2i-offset"], ["vae-dec"]],
    [["check-t2i", "controlnet", "check-controlnet"], ["t2v", "check-t2v"]],
    [["export", "verify"], ["motion", "check-motion"]],
    [["inpaint"], ["ip2p"]],
    [["export"]],
]
CORE = {"data", "vae", "latents", "vae-dec", "classifier", "t2i", "t2i-offset", "check-t2i", "controlnet", "check-controlnet", "t2v", "check-t2v", "export", "verify"}


def _done_marker(ctx, stage):
    return ctx.work / "stats" / f"done-{stage}"


def run_driver(ctx, args):
    base = [sys.executable, "-m", "vsynth.toy.train", "--out", str(ctx.out), "--work", str(ctx.work), "--samples", str(ctx.samples())]
    if ctx.smoke:
        base.append("--smoke")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    t0 = time.time()
    for phase in PHASES:
        chains = [[s for s in chain if args.stretch or s in CORE] for chain in phase]
        chains = [c for c in chains if c]
        if not chains:
            continue
        log(f"phase: {chains}")
        procs = []
        for chain in chains:
            todo = [s for s in chain if not _done_marker(ctx, s).exists() or s in ("export", "verify")]
            if not todo:
                continue
            script = " && ".join(
                f"{shlex.join(base + ['--stage', s])} >> {shlex.quote(str(ctx.work / 'logs' / (s + '.log')))} 2>&1 && touch {shlex.quote(str(_done_marker(ctx, s)))}"
                for s in todo
            )
            procs.append((chain, subprocess.Popen(["bash", "-c", script], env=env)))
        for chain, p in procs:
            rc = p.wait()
            log(f"  {chain} -> rc {rc} ({(time.time() - t0) / 60:.1f} min)")
            if rc != 0:
                log(f"  see {ctx.work / 'logs'}")
                if any(s in CORE for s in chain):
                    sys.exit(rc)
    log(f"all done in {(time.time() - t0) / 60:.1f} min")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--wan" in argv:  # the Wan-architecture text-to-video model of the moving toy world: its own trainer
        from .train_wan import main as train_wan

        return train_wan([a for a in argv if a != "--wan"])
    if "--flux" in argv:  # the FLUX-architecture image models (dev, canny): their own trainer
        from .train_flux import main as train_flux

        return train_flux([a for a in argv if a != "--flux"])
    p = argparse.ArgumentParser(prog="vsynth toy train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="exported float16 model folders + manifest.json (default: the shipped ones, vsynth/toy/weights; "
                   "with --smoke WORK/smoke-weights, so that a check of the pipeline never replaces them)")
    p.add_argument("--work", default=str(Path.home() / ".cache" / "vsynth" / "toy-train"), help="data cache, checkpoints, logs (default: ~/.cache/vsynth/toy-train)")
    p.add_argument("--samples", default=None, help="sample grids (PNG) and clips (default: WORK/samples)")
    p.add_argument("--stage", choices=list(STAGES), help="run one stage only (default: the whole pipeline)")
    p.add_argument("--smoke", action="store_true", help="a few steps per model on a few clips")
    p.add_argument("--stretch", action="store_true", help="also train MotionAdapter, inpainting and InstructPix2Pix UNets")
    p.add_argument("--steps", type=_positive, help="override the stage's step count")
    args = p.parse_args(argv)
    args.out = args.out or str(Path(args.work) / "smoke-weights" if args.smoke else Path(__file__).parent / "weights")
    torch = _torch()
    ctx = Ctx(args)
    if args.stage:
        log(f"stage {args.stage} (smoke={args.smoke}, threads={torch.get_num_threads()})")
        t = time.time()
        STAGES[args.stage](ctx)
        log(f"stage {args.stage} done in {(time.time() - t) / 60:.1f} min")
    else:
        run_driver(ctx, args)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be 1 or more")
    return number


if __name__ == "__main__":
    main()
