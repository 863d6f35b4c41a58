"""Train the toy world's Wan-architecture text-to-video model (the ``wan2.1-t2v-1.3b`` slot) on CPU, from fixed seeds.

    python -m vsynth.toy.train_wan --work toywork-wan --out toy-wan        # vae, latents, t2v, export
    python -m vsynth.toy.train_wan --stage t2v --minutes 60                # one stage (resumes from its checkpoint)
    python -m vsynth.toy.train_wan --smoke                                 # a few steps of each, end to end
    python -m vsynth.toy.train_wan --stage t2v --init W/ckpt/t2v.pt --recipe t2v-settle   # a fine-tune run
    python -m vsynth.toy.train_wan --stage from-shipped --work W           # a work folder from the shipped weights
    python -m vsynth.toy.train_wan --stage t2v --work W --device cuda --recipe t2v-backgrounds-gpu   # on a GPU

What it builds, in WanPipeline's folder layout (vsynth's Wan loader reads it as it reads the real one):

- ``vae``: an AutoencoderKLWan with Wan 2.1's 16 latent channels and 8x spatial compression, but no
  temporal compression (``scale_factor_temporal=1``): each frame is its own latent frame. Its causal
  convolutions' taps on earlier frames are held at zero, so it is trained on single frames; its loss
  weighs colour (L1 plus a loss on 4x-pooled colours), the first toy VAE's weakness. Stages vae-dec, vae-ring and
  vae-robust fine-tune its decoder alone (the latents stay as they are); export takes the last one that ran.
- ``text_encoder`` / ``tokenizer``: a 2-layer UMT5 encoder over a word-level tokenizer of the toy
  vocabulary (T5's special ids), trained jointly with the transformer.
- ``transformer``: a WanTransformer3DModel (patches (1, 2, 2), 4 layers) trained by flow matching
  (velocity = noise - x0) on 9-frame clips of one shape crossing a white frame left, right, up or down
  ("a red circle moving left on a white background"), with 10% empty captions for classifier-free
  guidance; an EMA of its weights is exported. The ``t2v-guided*`` recipes add a loss on the guided
  prediction at Wan's default guidance 5 (:func:`guided_loss`): the toy is trained for the guidance it
  is run at, which in its 8x8 latent grid otherwise paints ghost objects.
- ``scheduler``: UniPC on flow sigmas, as Wan's.

The stopping signal is the direction agreement on held-out seeds (sampled with guidance), logged with
every checkpoint in ``--work``/logs.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from vsynth.plugins.vdm import WAN_GUIDANCE

from . import world

SIZE = 64
FRAMES = 9
TRAIN_MOTIONS = world.DIRECTIONS
TRAIN_BACKGROUNDS = ("white",)
EVAL_SEED = 20_000_000
SEEDS = {"vae": 201, "t2v": 202, "data": 203}
FLOW_SHIFT = 3.0

VAE = dict(base_dim=12, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, False, False],
           scale_factor_temporal=1, scale_factor_spatial=8)  # fmt: skip
TEXT = dict(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
            relative_attention_max_distance=16, feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
            decoder_start_token_id=0, is_encoder_decoder=False)  # fmt: skip
TRANSFORMER = dict(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=24, in_channels=16, out_channels=16,
                   text_dim=TEXT["d_model"], freq_dim=64, ffn_dim=256, num_layers=4, cross_attn_norm=True,
                   qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=64)  # fmt: skip
# Prompt tokens, padded with zeros as WanPipeline pads them; vsynth pads to the tokenizer's model_max_length (512 for the
# real checkpoints). At 512 the 0.6 M transformer's cross-attention spread over 500 identical padding keys: its
# predictions at high noise, where the layout and the direction are decided, did not depend on the direction word.
MAX_SEQUENCE_LENGTH = 16

RECIPE = {
    "vae": dict(minutes=13, batch=16, lr=1e-3, warmup=50),
    "vae-dec": dict(minutes=30, batch=16, lr=4e-4, warmup=20),
    # a second decoder fine-tune from vae-dec's, weighing a ring around each shape as much as the shape (below)
    "vae-ring": dict(minutes=30, batch=16, lr=2e-4, warmup=20, ring=3),
    # a third, decoding latents with 3x the noise (0.3 of their spread): a decoder that draws the clean shape from the
    # transformer's imprecise latents, whose object size otherwise changes from frame to frame (thirteenth session's trial)
    "vae-robust": dict(minutes=15, batch=16, lr=2e-4, warmup=20, ring=3, latent_noise=0.3),
    "latents": dict(clips=1600),
    "t2v": dict(minutes=46, batch=16, lr=6e-4, warmup=100, drop=0.1, ema=0.998, eval_every=300, short=0.3, centred=0.75),
    # a second run from the first's weights, on the re-encoded clips (most crossing the middle line)
    "t2v-tune": dict(minutes=60, batch=16, lr=4e-4, warmup=50, drop=0.1, ema=0.995, eval_every=600, short=0.3, high=0.1, forcing=0.8),
    # then fewer clips with a clearer frame: sampling (and Mixed Inversion's smoothing) runs every frame at one level
    "t2v-settle": dict(minutes=40, batch=16, lr=3e-4, warmup=50, drop=0.1, ema=0.995, eval_every=600, short=0.3, high=0.1, forcing=0.3),
    # as t2v-settle with a quarter of the captions empty: the unconditional branch that classifier-free guidance subtracts
    "t2v-settle-uncond": dict(minutes=40, batch=16, lr=3e-4, warmup=50, drop=0.25, ema=0.995, eval_every=600, short=0.3, high=0.1, forcing=0.3),
    # as t2v-settle, plus the guided loss below the level 0.7 (guided_target): guidance 5 at low noise paints ghost objects
    "t2v-guided": dict(minutes=30, batch=16, lr=3e-4, warmup=50, drop=0.1, ema=0.995, eval_every=600, short=0.3, high=0.1, forcing=0.3,
                       guided_weight=4.0, guided_below=0.7),
    # then at every level and twice the weight (run 11; below 0.7 alone the object came out too big); runs 12-13 (shipped)
    # ran it on latents with purple's and blue's moved away from white (vsynth.toy.amplify_colour)
    "t2v-guided-all": dict(minutes=20, batch=16, lr=2e-4, warmup=50, drop=0.1, ema=0.995, eval_every=600, short=0.3, high=0.1, forcing=0.3,
                           guided_weight=8.0, guided_below=1.01),
    # two trials for purple's motion (fifth session, not shipped): its object lies 50x closer to the white background in the
    # latents than red's (benchmarks/wan_toy_colours.py), and under the guided loss at every level it comes and goes.
    # t2v-guided-all with the purple clips drawn 6x as often; and with the target of guidance 2.5 above level 0.7 (there
    # the conditional branch keeps more of the caption's effect), purple 3x
    "t2v-guided-purple": dict(minutes=16, batch=16, lr=2e-4, warmup=50, drop=0.1, ema=0.995, eval_every=600, short=0.3, high=0.1,
                              forcing=0.3, guided_weight=8.0, guided_below=1.01, oversample={"purple": 6.0}),
    "t2v-guided-layout": dict(minutes=12, batch=16, lr=2e-4, warmup=50, drop=0.1, ema=0.995, eval_every=600, short=0.3, high=0.1,
                              forcing=0.3, guided_weight=8.0, guided_below=0.7, guided_weight_above=8.0, guided_scale_above=2.5,
                              oversample={"purple": 3.0}),
    # t2v-guided-all on clips over every toy background (--backgrounds white,white,black,gray,gradient): trained on white
    # alone, the toy turned any background white under Mixed Inversion and its objects stopped (seventh session)
    "t2v-backgrounds": dict(minutes=50, batch=16, lr=2e-4, warmup=50, drop=0.1, ema=0.995, eval_every=1200, short=0.3, high=0.1,
                            forcing=0.3, guided_weight=8.0, guided_below=1.01),
    # the same on a GPU (--device cuda), where a step of 64 clips costs what one of 16 does (the toy's kernels are tiny)
    "t2v-backgrounds-gpu": dict(minutes=7, batch=64, lr=3e-4, warmup=100, drop=0.1, ema=0.998, eval_every=2000, short=0.3, high=0.1,
                                forcing=0.3, guided_weight=8.0, guided_below=1.01),
    # t2v-backgrounds with the cyan clips drawn 3x as often: under Mixed Inversion cyan on black turned blue (tenth session's trial)
    "t2v-backgrounds-cyan": dict(minutes=25, batch=16, lr=2e-4, warmup=50, drop=0.1, ema=0.995, eval_every=10**9, short=0.3, high=0.1,
                                 forcing=0.3, guided_weight=8.0, guided_below=1.01, oversample={"cyan": 3.0}),
    # t2v-backgrounds-gpu plus the inversion loss (:func:`inversion_loss`): guided sampling from the toy's own inversion of a
    # clip returns the clip, which Mixed Inversion's smoothing relies on (tenth session's trial, not shipped: docs/toy-world.md)
    "t2v-inversion-gpu": dict(minutes=7, batch=64, lr=2e-4, warmup=50, drop=0.1, ema=0.998, eval_every=10**9, short=0.3, high=0.1,
                              forcing=0.3, guided_weight=8.0, guided_below=1.01, invert_weight=1.0, invert_clips=1024, invert_every=250,
                              invert_steps=50),
}
# Wan's default guidance (WanPipeline's 5.0): the scale the guided loss trains for
GUIDANCE = WAN_GUIDANCE


def log(work: Path, *a, name: str = "train_wan"):
    line = time.strftime("%H:%M:%S") + " " + " ".join(str(x) for x in a)
    print(line, flush=True)
    with open(work / "logs" / f"{name}.log", "a") as f:
        f.write(line + "\n")


def _torch():
    import torch

    torch.set_num_threads(1)
    return torch


def ema_update(pairs, step: int, ceiling: float) -> None:
    """Move each (ema, live) module pair's EMA weights toward the live ones, the decay warming up to ``ceiling``."""
    torch = _torch()
    decay = min(ceiling, (1 + step) / (10 + step))
    with torch.no_grad():
        for ema, live in pairs:
            for pe, pl in zip(ema.parameters(), live.parameters()):
                pe.mul_(decay).add_(pl.detach(), alpha=1 - decay)


def schedule(args, r: dict, step: int, elapsed: float, minutes: float):
    """The flow trainers' (done, learning rate): done after ``minutes`` (or ``--steps``, or 3 steps with ``--smoke``); the
    rate warms up over ``r["warmup"]`` steps, then follows a cosine over the minutes down to a tenth."""
    done = elapsed >= minutes or (args.smoke and step >= 3) or (args.steps and step >= args.steps)
    lr = r["lr"] * min(1.0, (step + 1) / r["warmup"]) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / minutes))))
    return done, lr


def eval_history(work: Path, stage: str) -> list[dict]:
    """The held-out evaluations a stage logged so far (work/stats/STAGE.json), to resume with."""
    path = work / "stats" / f"{stage}.json"
    return json.loads(path.read_text()).get("history", []) if path.exists() else []


def add_eval(work: Path, stage: str, history: list[dict], step: int, t0: float, losses: list[float], res: dict) -> dict:
    """Append one held-out evaluation (with the step, minutes and recent loss) to ``history``, write it; the entry."""
    history.append({"step": step, "minutes": round((time.time() - t0) / 60, 1), "loss": round(float(np.mean(losses[-100:])), 4) if losses else None, **res})
    (work / "stats" / f"{stage}.json").write_text(json.dumps({"history": history}, indent=2))
    return history[-1]


def manifest_files(folder: Path) -> list[dict]:
    """manifest.json's entries for the files of a shipped model folder: path under the weights, SHA-256, bytes."""
    import hashlib

    from .shipped import WEIGHTS_DIR

    return [dict(path=str(f.relative_to(WEIGHTS_DIR)), sha256=hashlib.sha256(f.read_bytes()).hexdigest(), bytes=f.stat().st_size)
            for f in sorted(folder.rglob("*")) if f.is_file()]  # fmt: skip


# ----------------------------------------------------------------------------------------------- tokenizer
def tokenizer():
    """Word-level UMT5 tokenizer of the toy vocabulary: pad 0, eos 1, unk 2, then world.WORDS; lower-cased."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(world.WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=MAX_SEQUENCE_LENGTH)  # fmt: skip


# ----------------------------------------------------------------------------------------------- VAE
def build_vae():
    torch = _torch()
    from diffusers import AutoencoderKLWan

    torch.manual_seed(SEEDS["vae"])
    vae = AutoencoderKLWan(**VAE)
    zero_past_taps(vae)
    return vae


def zero_past_taps(vae):
    """Zero the causal convolutions' taps on earlier frames: the VAE then codes each frame alone."""
    import torch
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    with torch.no_grad():
        for m in vae.modules():
            if isinstance(m, WanCausalConv3d) and m.weight.shape[2] > 1:
                m.weight[:, :, :-1] = 0


def single_frame_convs():
    """Run WanCausalConv3d on a one-frame input without cache as the 2D convolution it is (its causal padding adds
    zero frames, which only the zeroed taps would see): the same numbers at a third of the cost."""
    import torch.nn.functional as F
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    if getattr(WanCausalConv3d, "_toy_fast", False):
        return
    full = WanCausalConv3d.forward

    def forward(self, x, cache_x=None):
        if cache_x is not None or x.shape[2] != 1:
            return full(self, x, cache_x)
        p = self._padding
        y = F.conv2d(F.pad(x[:, :, 0], p[:4]), self.weight[:, :, -1], self.bias, self.stride[1:])
        return y.unsqueeze(2)

    WanCausalConv3d.forward = forward
    WanCausalConv3d._toy_fast = True


def vae_frames(n: int, seed: int) -> np.ndarray:
    """(n, 64, 64, 3) uint8: half frames of the first toy world (1-3 shapes, every background), half motion frames."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = int(rng.integers(1 << 30))
        if i % 2:
            clip = world.make_clip(s, frames=4, size=SIZE)
        else:
            clip = world.make_motion_clip(s, frames=FRAMES, size=SIZE)
        out.append(clip.frames[rng.integers(len(clip.frames))])
    return np.stack(out)


def to_tensor(frames):
    torch = _torch()
    x = torch.from_numpy(np.ascontiguousarray(frames)).float() / 127.5 - 1.0
    return x.permute(0, 3, 1, 2).unsqueeze(2) if x.ndim == 4 else x.permute(0, 4, 1, 2, 3)  # (B, 3, 1, H, W) or (B, 3, F, H, W)


def to_frames(x) -> np.ndarray:
    """(B, 3, F, H, W) in [-1, 1] -> (B, F, H, W, 3) uint8."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 4, 1).cpu().numpy()


def vae_colour_check(vae, n=24) -> dict:
    """Reconstruct held-out motion clips (every colour, every background): the share of object pixels whose nearest
    named colour is the right one, per colour, and the PSNR."""
    torch = _torch()
    from vsynth.metrics.temporal import background_flicker

    hits: dict[str, list[float]] = {}
    psnr, flicker = [], []
    with torch.no_grad():
        for i in range(n):
            colour = world.COLOURS[i % len(world.COLOURS)]
            clip = world.make_motion_clip(EVAL_SEED + i, frames=FRAMES, size=SIZE, colour=colour)
            rec = to_frames(vae.decode(vae.encode(to_tensor(clip.frames[None])).latent_dist.mean).sample)[0]
            hits.setdefault(colour, []).append(world.colour_fidelity(rec, clip))
            mse = np.mean((rec.astype(np.float32) - clip.frames.astype(np.float32)) ** 2)
            psnr.append(10 * np.log10(255**2 / max(mse, 1e-6)))
            if clip.background == "white":  # the Wan toy's world; the source's own background flicker is 0
                flicker.append(background_flicker(rec, clip.masks))
    per = {c: round(float(np.mean(v)), 3) for c, v in hits.items()}
    return {"colour_share": per, "colour_share_min": min(per.values()), "psnr": round(float(np.mean(psnr)), 2),
            "bg_flicker_white": round(float(np.mean(flicker)), 4) if flicker else None}  # fmt: skip


DECODER_STAGES = {"vae-dec": "vae_dec.pt", "vae-ring": "vae_ring.pt", "vae-robust": "vae_robust.pt"}  # each starts from the last checkpoint before it


def reconstruction_loss(x, y, ring: int = 0):
    """The VAE's loss of the decoded ``y`` against the frames ``x`` (B, 3, 1, H, W): L1 with the shapes (~6% of the
    pixels: anything far from the frame's border colour), and a ring of ``ring`` pixels around them, weighed 9x, plus
    a loss on 4x-pooled colours (the first toy VAE learned shapes long before colours)."""
    torch = _torch()
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], -1).median(-1).values
    fg = ((x - border[..., None, None]).abs().amax(1, keepdim=True) > 0.3).float()
    if ring:
        fg = torch.nn.functional.max_pool3d(fg, (1, 2 * ring + 1, 2 * ring + 1), stride=1, padding=(0, ring, ring))
    weight = 1 + 8 * fg
    pooled = torch.nn.functional.avg_pool2d(((y - x) * weight)[:, :, 0], 4)
    return ((y - x).abs() * weight).mean() + 4 * pooled.pow(2).mean()


def decoder_start(work: Path, stage: str) -> Path:
    earlier = ["vae.pt", *list(DECODER_STAGES.values())[: list(DECODER_STAGES).index(stage)]]
    return next(work / "ckpt" / n for n in reversed(earlier) if (work / "ckpt" / n).exists() or n == "vae.pt")


def train_vae(args, work: Path, stage: str = "vae"):
    """The VAE; stages vae-dec (run beside t2v) and vae-ring fine-tune its decoder alone, from the previous stage's
    weights: the encoder, hence the latents the transformer learns, stays fixed.

    Shapes are weighed 9x in the loss (they are ~6% of the pixels). With the weight on the shape's own pixels only,
    painting a doubtful pixel in the shape's colour costs the decoder 9x less than leaving it white: its shapes came
    out 2-3 pixels fatter, and that halo, moving with the shape, was most of the Wan toy's background flicker (0.027 in
    a bare encode-decode of a clip whose background never changes). vae-ring weighs a ring of ``ring`` pixels around
    each shape as much as the shape, so doubt costs the same both ways.
    """
    torch = _torch()
    r = RECIPE[stage]
    decoder_only = stage in DECODER_STAGES
    ckpt = work / "ckpt" / (DECODER_STAGES[stage] if decoder_only else "vae.pt")
    vae = build_vae()
    if decoder_only:
        vae.load_state_dict(torch.load(decoder_start(work, stage), weights_only=False)["model"])
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=r["lr"], weight_decay=0.0)
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        vae.load_state_dict(state["model"])
        if "opt" in state:  # from-shipped's checkpoints hold weights only: a start, not a resume
            opt.load_state_dict(state["opt"])
        step = state["step"]
    minutes = args.minutes or r["minutes"]
    single_frame_convs()
    cache = work / ("vae_frames_smoke.npy" if args.smoke else "vae_frames.npy")
    if cache.exists():
        pool = np.load(cache)
    else:
        pool = vae_frames(200 if args.smoke else 6000, SEEDS["data"])
        np.save(cache, pool)
    rng = np.random.default_rng(SEEDS["vae"] + step)
    t0 = time.time()
    last_save = time.time()
    losses = []
    log(work, f"{stage}: {sum(p.numel() for p in vae.parameters()) / 1e6:.3f} M params, {minutes} min from step {step}")
    while True:
        elapsed = (time.time() - t0) / 60
        done = elapsed >= minutes or (args.smoke and step >= 3) or (args.steps and step >= args.steps)
        lr = r["lr"] * min(1.0, (step + 1) / r["warmup"]) * (0.3 + 0.7 * max(0.0, 1 - elapsed / minutes))
        for g in opt.param_groups:
            g["lr"] = lr
        if not done:
            x = to_tensor(pool[rng.integers(len(pool), size=r["batch"])])
            if decoder_only:
                with torch.no_grad():
                    dist = vae.encode(x).latent_dist
            else:
                dist = vae.encode(x).latent_dist
            z = dist.mean
            z = z + r.get("latent_noise", 0.1) * z.detach().std() * torch.randn_like(z)  # robustness to the diffusion model's small errors
            y = vae.decode(z).sample
            loss = reconstruction_loss(x, y, r.get("ring", 0)) + 1e-4 * dist.mean.pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            zero_past_taps(vae)
            losses.append(float(loss.detach()))
            step += 1
        if done or time.time() - last_save > 180:
            torch.save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt)
            last_save = time.time()
            vae.eval()
            check = vae_colour_check(vae, n=6 if args.smoke else 12)
            vae.train()
            log(work, f"{stage} step {step} loss {np.mean(losses[-50:]) if losses else float('nan'):.4f} lr {lr:.2e} {json.dumps(check)}")
            (work / "stats").mkdir(exist_ok=True)
            (work / "stats" / f"{stage}.json").write_text(json.dumps({"steps": step, "minutes": round((time.time() - t0) / 60, 1), **check}, indent=2))
        if done:
            break
    return vae


def load_vae(work: Path, decoder: bool = False):
    """The trained VAE; with ``decoder``, its last fine-tuned decoder (vae-ring's, else vae-dec's): what is exported."""
    torch = _torch()
    vae = build_vae()
    names = (*reversed(DECODER_STAGES.values()), "vae.pt") if decoder else ("vae.pt",)
    path = next(work / "ckpt" / n for n in names if (work / "ckpt" / n).exists() or n == "vae.pt")
    vae.load_state_dict(torch.load(path, weights_only=False)["model"])
    single_frame_convs()
    return vae.eval()


# ----------------------------------------------------------------------------------------------- latents
def training_clip(seed: int, centred: float | None = None, **kw):
    """A training clip; three in four (``centred``) cross the frame near its middle line (within 8% of it), the rest anywhere.

    With the offset across the motion uniform, the 0.6 M transformer's samples from pure noise did not settle on
    one object (objects jumped between frames, direction agreement 0/8 after 60 min) although it denoised
    noised clips the right way from 90% noise: the prompt's mean clip was a smear over the whole frame.
    """
    rng = np.random.default_rng([seed, 7])
    if "across" not in kw and rng.random() < (RECIPE["t2v"]["centred"] if centred is None else centred):
        kw["across"] = float(rng.uniform(0.42, 0.58))
    kw.setdefault("backgrounds", TRAIN_BACKGROUNDS)
    kw.setdefault("motions", TRAIN_MOTIONS)
    return world.make_motion_clip(seed, frames=FRAMES, size=SIZE, **kw)


def encode_latents(args, work: Path):
    torch = _torch()
    vae = load_vae(work).to(args.device)
    n = 48 if args.smoke else args.clips or RECIPE["latents"]["clips"]
    latents, captions = [], []
    with torch.no_grad():
        for i in range(n):
            clip = training_clip(SEEDS["data"] * 1_000_003 + i, args.centred, backgrounds=args.backgrounds, motions=args.motions)
            # frame by frame (the same numbers: the VAE's taps on earlier frames are zero), on the fast 2D path
            latents.append(vae.encode(to_tensor(clip.frames).to(args.device)).latent_dist.mean[:, :, 0].permute(1, 0, 2, 3).cpu())
            captions.append(clip.caption)
    z = torch.stack(latents)  # (N, 16, F, 8, 8)
    mean = z.mean(dim=(0, 2, 3, 4))
    std = z.std(dim=(0, 2, 3, 4))
    torch.save({"latents": z, "captions": captions, "mean": mean, "std": std}, work / "latents.pt")
    log(work, f"latents: {tuple(z.shape)}, mean {mean.abs().mean():.3f} std {std.mean():.3f}")


# ----------------------------------------------------------------------------------------------- t2v
def build_t2v():
    torch = _torch()
    from diffusers import WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(SEEDS["t2v"])
    text = UMT5EncoderModel(UMT5Config(vocab_size=3 + len(world.WORDS), **TEXT))
    transformer = WanTransformer3DModel(**TRANSFORMER)
    return text, transformer


def encode_text(tok, text, captions):
    """WanPipeline's prompt states: UMT5 over the real tokens, zero-padded to MAX_SEQUENCE_LENGTH."""
    torch = _torch()
    t = tok(captions, padding="longest", return_tensors="pt", add_special_tokens=True).to(text.device)
    states = text(t.input_ids, t.attention_mask).last_hidden_state * t.attention_mask[..., None]
    pad = states.new_zeros(states.shape[0], MAX_SEQUENCE_LENGTH - states.shape[1], states.shape[2])
    return torch.cat([states, pad], 1)


def sample(transformer, text, tok, prompts, mean, std, vae, steps=20, guidance=5.0, seed=0, shift=FLOW_SHIFT):
    """Euler on shifted flow sigmas with classifier-free guidance; decoded frames (B, F, H, W, 3)."""
    torch = _torch()
    g = torch.Generator().manual_seed(seed)
    b = len(prompts)
    x = torch.randn((b, 16, FRAMES, SIZE // 8, SIZE // 8), generator=g).to(transformer.device)
    with torch.no_grad():
        cond = encode_text(tok, text, prompts)
        uncond = encode_text(tok, text, [""] * b)
        s = torch.linspace(1, 0, steps + 1, device=x.device)
        s = shift * s / (1 + (shift - 1) * s)
        for i in range(steps):
            t = (s[i] * 1000).expand(b)
            v = transformer(hidden_states=torch.cat([x, x]), timestep=torch.cat([t, t]), encoder_hidden_states=torch.cat([cond, uncond]), return_dict=False)[0]
            vc, vu = v.chunk(2)
            v = vu + guidance * (vc - vu)
            x = x + (s[i + 1] - s[i]) * v
        z = x * std.to(x.device).view(1, -1, 1, 1, 1) + mean.to(x.device).view(1, -1, 1, 1, 1)
        return to_frames(vae.decode(z.to(vae.device)).sample)


def evaluate(transformer, text, tok, mean, std, vae, n=8, guidance=5.0) -> dict:
    """Held-out prompts (every direction, seeds never trained on): direction agreement and colour share."""
    from vsynth.metrics.motion import direction_agreement

    prompts, asks = [], []
    for i in range(n):
        clip = training_clip(EVAL_SEED + i, motion=TRAIN_MOTIONS[i % len(TRAIN_MOTIONS)])
        prompts.append(clip.caption)
        asks.append((clip.extra["motion"], clip.shapes[0][1]))
    frames = sample(transformer, text, tok, prompts, mean, std, vae, guidance=guidance, seed=EVAL_SEED)
    agree = [direction_agreement(f, m, c) for f, (m, c) in zip(frames, asks)]
    agree_any = [direction_agreement(f, m, None) for f, (m, _) in zip(frames, asks)]
    colour = []
    for f, (_, c) in zip(frames, asks):
        from vsynth.metrics.motion import object_masks

        fg = object_masks(f, None)
        colour.append(float((object_masks(f, c) & fg).sum() / max(fg.sum(), 1)))
    return {"direction_agreement": float(np.mean(agree)), "direction_agreement_fg": float(np.mean(agree_any)),
            "colour_share": round(float(np.mean(colour)), 3), "n": n, "frames": frames}  # fmt: skip


def per_frame_levels(s, frames: int, share: float, g):
    """(B, F) noise levels: the clip's own level for every frame, except, for a ``share`` of the batch, one random
    frame kept clearer (level below 0.5; per-frame levels as in diffusion forcing, Chen et al. 2024).

    With one level for all frames the noisy clip already shows the object's path, and the direction word
    only matters at levels where the path is too faint to see: a weak signal that the first runs never
    picked up (their loss with the opposite direction in the caption was the same to 4 decimals). One
    clear frame shows where the object is but not where it goes, which only the word tells. At inference
    every frame has the same level: the transformer's per-token timesteps then equal its per-clip one."""
    torch = _torch()
    b = s.shape[0]
    levels = s[:, None].repeat(1, frames)
    pick = torch.nonzero(torch.rand(b, generator=g) < share).flatten()
    frame = torch.randint(frames, (len(pick),), generator=g)
    levels[pick, frame] = torch.minimum(levels[pick, frame], 0.5 * torch.rand(len(pick), generator=g))
    return levels


def guided_target(velocity, uncond, guidance: float = GUIDANCE):
    """The conditional velocity whose guided prediction ``uncond + guidance * (cond - uncond)`` is ``velocity``.

    In the toy's 8x8 latent grid an object is one or two latent pixels. At low noise the caption still tells
    its colour and shape, which the unconditional branch can only average, so there guidance 5 overshoots
    the data by 4x that difference: 0.3-0.4 objects a frame that come and go (magenta ghosts) where guidance
    is applied below the level 0.7, none where it is applied only above it (measured on run 8). Pulling the
    conditional branch towards this target below ``guided_below`` trains the model for the guidance it is run
    at (Wan's default), at the cost of a weaker conditional branch alone there (guidance 1)."""
    return (velocity + (guidance - 1) * uncond) / guidance


def guided_loss(transformer, text, tok, xt, timestep, v, velocity, caps, s, below: float, above: float = 0.0, guidance: float = GUIDANCE):
    """Mean squared distance of the captioned clips with levels from ``above`` to below ``below`` from
    :func:`guided_target`; the unconditional prediction is held fixed (no gradient): the loss moves the conditional
    branch only."""
    torch = _torch()
    pick = torch.tensor([bool(c) for c in caps], device=s.device) & (s.amax(1) < below) & (s.amax(1) >= above)
    if not pick.any():
        return v.new_zeros(())
    with torch.no_grad():
        empty = encode_text(tok, text, [""] * int(pick.sum()))
        uncond = transformer(hidden_states=xt[pick], timestep=timestep[pick], encoder_hidden_states=empty, return_dict=False)[0]
    return (v[pick] - guided_target(velocity[pick], uncond, guidance)).pow(2).mean()


def inversion_sigmas(steps: int):
    """The exported UniPC scheduler set to ``steps`` steps: its flow levels (``steps + 1`` values, 1 down to 0), where
    vsynth's denoising steps start and so where Mixed Inversion's video-side inversion stops on its way up, and the
    model timestep of each step (the scheduler's, whole numbers: not quite level * 1000)."""
    from diffusers import UniPCMultistepScheduler

    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=FLOW_SHIFT)
    scheduler.set_timesteps(steps)
    return scheduler.sigmas.float(), scheduler.timesteps.float()


def invert_clips(transformer, text, tok, x0, sigmas, timesteps, batch: int = 256):
    """(N, steps, C, F, H, W): each clip's latent at the start of every denoising step, from Mixed Inversion's video side
    as vsynth runs it (:func:`vsynth.core.diffusion.sampling.invert`; its default ``inversion_prompt=negative``, the empty
    prompt, without guidance): the reverse Euler step x + (s_k - s_prev) * v, v evaluated at step k's timestep."""
    torch = _torch()
    steps = len(sigmas) - 1
    out = x0.new_empty((len(x0), steps, *x0.shape[1:]))
    with torch.no_grad():
        for i in range(0, len(x0), batch):
            x = x0[i : i + batch].clone()
            empty = encode_text(tok, text, [""] * len(x))
            level = 0.0
            for k in reversed(range(steps)):
                t = timesteps[k].expand(len(x))
                v = transformer(hidden_states=x, timestep=t, encoder_hidden_states=empty, return_dict=False)[0]
                x = x + (float(sigmas[k]) - level) * v
                level = float(sigmas[k])
                out[i : i + batch, k] = x
    return out


def inversion_loss(transformer, text, tok, x0, inverted, sigmas, timesteps, captions, batch: int, g):
    """The guided loss (:func:`guided_target`) at points of the clips' own inversion rather than of the forward process.

    Mixed Inversion inverts the IDM's frames without guidance (the empty prompt) and denoises the result with guidance 5;
    in the toy's 8x8 latent grid that path did not lead back: the object was redrawn larger, a one-latent-pixel ghost
    of another colour wandered beside it, or it moved to the middle (ninth session). Here the conditional branch is pulled
    towards the velocity that takes each inverted point to its clean clip, (x_k - x0) / s_k, under guidance; the
    unconditional one, which did the inverting, is held fixed."""
    torch = _torch()
    idx = torch.randint(len(x0), (batch,), generator=g).to(x0.device)
    k = torch.randint(len(sigmas) - 1, (batch,), generator=g).to(x0.device)
    xk, s = inverted[idx, k], sigmas[k]
    target = (xk - x0[idx]) / s.view(-1, 1, 1, 1, 1)
    tokens = (x0.shape[3] // TRANSFORMER["patch_size"][1]) * (x0.shape[4] // TRANSFORMER["patch_size"][2])
    timestep = timesteps[k][:, None].repeat(1, x0.shape[2] * tokens)
    caps = [captions[i] for i in idx.tolist()]
    v = transformer(hidden_states=xk, timestep=timestep, encoder_hidden_states=encode_text(tok, text, caps), return_dict=False)[0]
    with torch.no_grad():
        uncond = transformer(hidden_states=xk, timestep=timestep, encoder_hidden_states=encode_text(tok, text, [""] * batch), return_dict=False)[0]
    return (v - guided_target(target, uncond)).pow(2).mean()


def cpu(state: dict) -> dict:
    """A state dict's tensors on the CPU: checkpoints from a GPU run load on any machine."""
    return {k: v.cpu() for k, v in state.items()}


def clip_weights(captions: list[str], oversample: dict[str, float]) -> np.ndarray:
    """Each clip's chance to be drawn: ``oversample[word]`` times the others' for a clip whose caption has that word."""
    w = np.array([math.prod(oversample.get(word, 1.0) for word in c.split()) for c in captions])
    return w / w.sum()


def train_t2v(args, work: Path):
    torch = _torch()
    r = RECIPE[args.recipe or ("t2v-tune" if args.init else "t2v")]
    data = torch.load(work / "latents.pt", weights_only=False)
    mean, std = data["mean"], data["std"]
    dev = torch.device(args.device)
    z = ((data["latents"] - mean.view(1, -1, 1, 1, 1)) / std.view(1, -1, 1, 1, 1)).to(dev)
    captions = data["captions"]
    tok = tokenizer()
    text, transformer = build_t2v()
    text, transformer = text.to(dev), transformer.to(dev)
    torch.backends.cuda.matmul.allow_tf32 = True
    params = list(text.parameters()) + list(transformer.parameters())
    opt = torch.optim.AdamW(params, lr=r["lr"], weight_decay=0.01)
    ckpt = work / "ckpt" / "t2v.pt"
    step, minutes_done = 0, 0.0
    ema_t, ema_x = copy.deepcopy(transformer), copy.deepcopy(text)
    state = torch.load(ckpt, weights_only=False, map_location=dev) if ckpt.exists() else {}
    if "opt" in state:  # resume (from-shipped's t2v.pt holds EMA weights only: a start, as --init)
        transformer.load_state_dict(state["transformer"])
        text.load_state_dict(state["text"])
        ema_t.load_state_dict(state["ema_transformer"])
        ema_x.load_state_dict(state["ema_text"])
        opt.load_state_dict(state["opt"])
        step, minutes_done = state["step"], state.get("minutes", 0.0)
    elif args.init or state:  # a new run (its own schedule and optimizer) from another run's EMA weights
        state = torch.load(args.init, weights_only=False, map_location=dev) if args.init else state
        for m in (transformer, ema_t):
            m.load_state_dict(state["ema_transformer"])
        for m in (text, ema_x):
            m.load_state_dict(state["ema_text"])
    for m in (ema_t, ema_x):
        m.requires_grad_(False).eval()
    vae = load_vae(work, decoder=True).to(dev)  # the exported decoder: the first one's backgrounds are tinted
    minutes = args.minutes or r["minutes"]
    rng = np.random.default_rng(SEEDS["t2v"] + step)
    g = torch.Generator().manual_seed(SEEDS["t2v"] + step)
    t0 = time.time() - minutes_done * 60
    last_save = time.time()
    losses = []
    n_params = sum(p.numel() for p in transformer.parameters()) / 1e6
    log(work, f"t2v: transformer {n_params:.3f} M, text {sum(p.numel() for p in text.parameters()) / 1e6:.3f} M; {minutes} min from step {step}")
    history = eval_history(work, "t2v")
    draw = clip_weights(captions, r["oversample"]) if r.get("oversample") else None
    invert_weight = args.invert_weight if args.invert_weight is not None else r.get("invert_weight", 0.0)
    if invert_weight:  # a fixed draw of clips, 9 frames and (a third of them) vsynth's default 8 frames run as 5
        sigmas, inv_timesteps = (v.to(dev) for v in inversion_sigmas(r.get("invert_steps", 50)))
        n_inv = min(len(z), 48 if args.smoke else r.get("invert_clips", 1024))
        pick = np.random.default_rng(SEEDS["t2v"]).choice(len(z), size=n_inv, replace=False)
        inv_z, inv_caps = z[torch.from_numpy(pick).to(dev)], [captions[i] for i in pick]
        inv_sets = [(inv_z, inv_caps), (inv_z[: n_inv // 3, :, :5], inv_caps[: n_inv // 3])]
        inverted = None
    while True:
        elapsed = (time.time() - t0) / 60
        done, lr = schedule(args, r, step, elapsed, minutes)
        for gr in opt.param_groups:
            gr["lr"] = lr
        if not done:
            idx = rng.choice(len(z), size=r["batch"], p=draw) if draw is not None else rng.integers(len(z), size=r["batch"])
            x0 = z[torch.from_numpy(idx).to(dev)]
            if rng.random() < r["short"]:  # vsynth's default 8 frames run as 5 on Wan's 1 + 4k rule: train those too
                x0 = x0[:, :, :5]
            caps = [captions[i] if rng.random() >= r["drop"] else "" for i in idx]
            # noise levels: logit-normal, shifted towards high noise like the sampler's sigmas
            u = torch.sigmoid(torch.randn(len(idx), generator=g))
            s = FLOW_SHIFT * u / (1 + (FLOW_SHIFT - 1) * u)
            high = torch.rand(len(idx), generator=g) < r.get("high", 0.0)  # where the layout and the direction are decided
            s = torch.where(high, 0.8 + 0.2 * torch.rand(len(idx), generator=g), s)
            s = per_frame_levels(s, x0.shape[2], r.get("forcing", 0.0), g)  # (B, F)
            noise = torch.randn(x0.shape, generator=g).to(dev)
            s = s.to(dev)
            level = s[:, None, :, None, None]
            xt = (1 - level) * x0 + level * noise
            states = encode_text(tok, text, caps)
            tokens = (x0.shape[3] // TRANSFORMER["patch_size"][1]) * (x0.shape[4] // TRANSFORMER["patch_size"][2])
            timestep = (s * 1000).repeat_interleave(tokens, dim=1)  # per token (Wan 2.2's form): equal ones = one per clip
            v = transformer(hidden_states=xt, timestep=timestep, encoder_hidden_states=states, return_dict=False)[0]
            velocity = noise - x0
            loss = (v - velocity).pow(2).mean()
            if r.get("guided_weight"):
                loss = loss + r["guided_weight"] * guided_loss(transformer, text, tok, xt, timestep, v, velocity, caps, s, r["guided_below"])
            if r.get("guided_weight_above"):  # a second weight for the levels from guided_below up
                loss = loss + r["guided_weight_above"] * guided_loss(transformer, text, tok, xt, timestep, v, velocity, caps, s, 1.01, r["guided_below"],
                                                                       r.get("guided_scale_above", GUIDANCE))
            if invert_weight:
                if inverted is None or step % r.get("invert_every", 250) == 0:  # the EMA weights' inversion, as the exported model inverts
                    inverted = [invert_clips(ema_t, ema_x, tok, x, sigmas, inv_timesteps) for x, _ in inv_sets]
                j = int(rng.random() < r["short"])
                loss = loss + invert_weight * inversion_loss(transformer, text, tok, inv_sets[j][0], inverted[j], sigmas, inv_timesteps,
                                                             inv_sets[j][1], r["batch"], g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            ema_update(((ema_t, transformer), (ema_x, text)), step, r["ema"])
            losses.append(float(loss.detach()))
            step += 1
        if step % 25 == 0 and not done and losses:
            log(work, f"t2v step {step} loss {np.mean(losses[-25:]):.4f} lr {lr:.2e} {elapsed:.1f} min")
        if args.snapshot_every and step and not done and step % args.snapshot_every == 0:
            torch.save({"ema_transformer": cpu(ema_t.state_dict()), "ema_text": cpu(ema_x.state_dict()), "step": step}, work / "ckpt" / f"t2v-{step:06d}.pt")
        if done or time.time() - last_save > 240 or (step % r["eval_every"] == 0 and step and not args.smoke):
            torch.save({"transformer": cpu(transformer.state_dict()), "text": cpu(text.state_dict()), "ema_transformer": cpu(ema_t.state_dict()),
                        "ema_text": cpu(ema_x.state_dict()), "opt": opt.state_dict(), "step": step, "minutes": (time.time() - t0) / 60}, ckpt)  # fmt: skip
            last_save = time.time()
            if done or step % r["eval_every"] == 0:
                res = evaluate(ema_t, ema_x, tok, mean, std, vae, n=4 if args.smoke else 8)
                frames = res.pop("frames")
                low = evaluate(ema_t, ema_x, tok, mean, std, vae, n=4 if args.smoke else 8, guidance=1.0)  # without guidance
                res |= {f"{k}_g1": v for k, v in low.items() if k in ("direction_agreement", "colour_share")}
                np.save(work / "samples" / f"t2v_{step:06d}.npy", frames)
                log(work, f"t2v eval {json.dumps(add_eval(work, 't2v', history, step, t0, losses, res))}")
        if done:
            break


# ----------------------------------------------------------------------------------------------- export
def export(args, work: Path, out: Path):
    """WanPipeline folder in float16 (the VAE too: it is loaded in float32 by vsynth's Wan loader)."""
    torch = _torch()
    from diffusers import UniPCMultistepScheduler, WanPipeline

    data = torch.load(work / "latents.pt", weights_only=False)
    vae = load_vae(work, decoder=True)
    vae.register_to_config(latents_mean=[float(v) for v in data["mean"]], latents_std=[float(v) for v in data["std"]])
    text, transformer = build_t2v()
    state = torch.load(work / "ckpt" / "t2v.pt", weights_only=False)
    transformer.load_state_dict(state["ema_transformer"])
    text.load_state_dict(state["ema_text"])
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=FLOW_SHIFT)
    pipe = WanPipeline(tokenizer=tokenizer(), text_encoder=text.half(), vae=vae.half(), scheduler=scheduler, transformer=transformer.half())
    pipe.save_pretrained(out)
    log(work, f"export: {out} (step {state['step']}, {state.get('minutes', 0):.1f} min)")


def from_shipped(args, work: Path, name: str = "wan2.1-t2v"):
    """Rebuild a work folder (ckpt/vae.pt, vae_ring.pt, t2v.pt as EMA weights, latents.pt) from the shipped float16 Wan toy,
    to fine-tune it further (``--stage t2v --init W/ckpt/t2v.pt``): the training runs' own folders are not shipped. The
    clips are re-encoded by the shipped encoder and normalised by its config's latents_mean / latents_std, as it was trained."""
    torch = _torch()
    from safetensors.torch import load_file

    from .shipped import WEIGHTS_DIR

    folder = WEIGHTS_DIR / name
    weights = {part: {k: v.float() for k, v in load_file(next((folder / part).glob("*.safetensors"))).items()}
               for part in ("vae", "transformer", "text_encoder")}  # fmt: skip
    text = weights["text_encoder"]
    text.setdefault("encoder.embed_tokens.weight", text["shared.weight"])  # tied to the shared embedding, saved once
    for ckpt in ("vae.pt", *DECODER_STAGES.values()):
        torch.save({"model": weights["vae"], "step": 0}, work / "ckpt" / ckpt)
    torch.save({"ema_transformer": weights["transformer"], "ema_text": text, "step": 0}, work / "ckpt" / "t2v.pt")
    encode_latents(args, work)
    config = json.loads((folder / "vae" / "config.json").read_text())
    data = torch.load(work / "latents.pt", weights_only=False)
    data["mean"], data["std"] = torch.tensor(config["latents_mean"]), torch.tensor(config["latents_std"])
    torch.save(data, work / "latents.pt")
    log(work, f"from-shipped: {folder} into {work}")


def ship(args, work: Path, out: Path, name: str = "wan2.1-t2v"):
    """Copy the exported folder into the shipped weights (vsynth/toy/weights/NAME) and enter it in manifest.json
    with its hashes, training time, measured figures and the command that made it. A fine-tune's work folder holds
    only its own stages: the entry it replaces keeps the rest (the VAE stages, ``lineage`` and the commands, which
    the shipper extends with the new run by hand)."""
    import shutil

    from .shipped import WEIGHTS_DIR

    target = WEIGHTS_DIR / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(out, target)
    manifest_path = WEIGHTS_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    previous = manifest["models"].get(name, {})
    stats = {p.stem: json.loads(p.read_text()) for p in (work / "stats").glob("*.json")}
    files = manifest_files(target)
    history = stats.get("t2v", {}).get("history", [])
    last = history[-1] if history else {}
    vae_stages = [s for s in ("vae", *DECODER_STAGES) if s in stats]
    stages = {s: {k: stats[s].get(k) for k in ("steps", "minutes")} | ({"seed": SEEDS["vae"]} if s == "vae" else {}) for s in vae_stages}
    metrics = {s: {k: v for k, v in stats[s].items() if k not in ("steps", "minutes")} for s in vae_stages}
    if "t2v" in stats:  # a decoder-only run (from-shipped, then vae-robust) keeps the shipped transformer's entry
        stages["t2v"] = {"steps": last.get("step"), "minutes": last.get("minutes"), "seed": SEEDS["t2v"], "final_loss": last.get("loss")}
        metrics["t2v"] = {"history": history}
    manifest["models"][name] = dict(
        files=files,
        stages={k: v for k, v in previous.get("stages", {}).items() if k not in stages} | stages,
        metrics={k: v for k, v in previous.get("metrics", {}).items() if k not in metrics} | metrics,
        size=SIZE,
        frames=FRAMES,
        command=previous.get("command") or f"vsynth toy train --wan --work {args.work}   (python -m vsynth.toy.train_wan; vae "
        f"{RECIPE['vae']['minutes']} min, t2v {RECIPE['t2v']['minutes']} min of one CPU thread by default; vae-dec beside t2v)",
        stage_command=previous.get("stage_command") or " ; ".join(f"python -m vsynth.toy.train_wan --stage {s} --work {args.work}"
                                                                   for s in ("vae", "latents", "t2v", "vae-dec", "export", "ship")),
        **({"lineage": previous["lineage"]} if "lineage" in previous else {}),
    )
    manifest["total_bytes"] = sum(f["bytes"] for m in manifest["models"].values() for f in m["files"])
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str))
    log(work, f"shipped {name}: {sum(f['bytes'] for f in files) / 1e6:.2f} MB; all toy weights {manifest['total_bytes'] / 1e6:.2f} MB")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default="toywork-wan")
    p.add_argument("--out", default="toy-wan")
    p.add_argument("--stage", choices=("all", "vae", *DECODER_STAGES, "latents", "t2v", "export", "ship", "from-shipped"), default="all")
    p.add_argument("--minutes", type=float, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--init", default=None, help="t2v stage: start from this t2v.pt's EMA weights (recipe t2v-tune unless --recipe)")
    p.add_argument("--backgrounds", type=lambda v: tuple(v.split(",")), default=TRAIN_BACKGROUNDS,
                   help="latents and from-shipped stages: the training clips' backgrounds, comma-separated (repeat one to weigh it)")
    p.add_argument("--motions", type=lambda v: tuple(v.split(",")), default=TRAIN_MOTIONS,
                   help="latents and from-shipped stages: the training clips' motions, comma-separated (add growing)")
    p.add_argument("--centred", type=float, default=None, help="latents and from-shipped stages: the share of clips crossing the "
                   f"frame near its middle line (default {RECIPE['t2v']['centred']}; the rest anywhere, as `vsynth toy examples --motion`)")
    p.add_argument("--device", default="cpu", help="latents, from-shipped and t2v stages: torch device (cuda where there is one)")
    p.add_argument("--clips", type=int, default=None, help=f"latents and from-shipped stages: clips to encode (default {RECIPE['latents']['clips']})")
    p.add_argument("--invert-weight", type=float, default=None, help="t2v stage: the inversion loss's weight, with any recipe (default: the recipe's, "
                   "t2v-inversion-gpu's 1; the others' 0)")
    p.add_argument("--snapshot-every", type=int, default=None, help="t2v stage: also keep the EMA weights every N steps (ckpt/t2v-STEP.pt)")
    p.add_argument("--recipe", default=None, choices=[k for k in RECIPE if k.startswith("t2v")], help="t2v stage: the recipe to run")
    args = p.parse_args(argv)
    work, out = Path(args.work), Path(args.out)
    for d in ("ckpt", "logs", "samples", "stats"):
        (work / d).mkdir(parents=True, exist_ok=True)
    stages = ("vae", "latents", "t2v", "export") if args.stage == "all" else (args.stage,)
    for stage in stages:
        t = time.time()
        if stage in ("vae", *DECODER_STAGES):
            train_vae(args, work, stage)
        elif stage == "latents":
            encode_latents(args, work)
        elif stage == "t2v":
            train_t2v(args, work)
        elif stage == "export":
            export(args, work, out)
        elif stage == "from-shipped":
            from_shipped(args, work)
        else:
            ship(args, work, out)
        log(work, f"stage {stage} took {(time.time() - t) / 60:.1f} min")


if __name__ == "__main__":
    main()
