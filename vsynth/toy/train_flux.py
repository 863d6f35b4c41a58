"""Train the toy world's FLUX-architecture image models (the ``flux-dev`` and ``flux-canny`` slots) on CPU, from fixed seeds.

    python -m vsynth.toy.train_flux --work toywork-flux --out toy-flux      # data, dev, canny, export
    python -m vsynth.toy.train_flux --stage dev --minutes 30                # one stage (resumes from its checkpoint)
    python -m vsynth.toy.train_flux --stage ship                            # copy both into vsynth/toy/weights
    python -m vsynth.toy.train_flux --smoke                                 # a few steps of each, end to end

What it builds, in FluxPipeline's and FluxControlPipeline's folder layouts (vsynth's FLUX loader reads them as
it reads the real ones):

- ``vae``, ``text_encoder`` / ``tokenizer``: the shipped toy SD1.5's AutoencoderKL (4 latent channels, 4x: a
  64x64 frame is 16x16 latents, 8x8 FLUX tokens of 16 channels) and its CLIP text encoder, whose pooled output
  is FLUX's pooled projection; frozen. The toy world has one well-trained VAE: a second, 16-channel one
  would only cost training time, and the FLUX code reads channels and factor from the VAE's config.
- ``text_encoder_2`` / ``tokenizer_2``: a 2-layer T5 encoder over the Wan toy's word-level tokenizer, padded
  to 512 tokens without a mask as FluxPipeline encodes, trained jointly with the transformer.
- ``transformer``: a FluxTransformer2DModel (2 double-stream and 2 single-stream blocks) trained by flow
  matching (velocity = noise - x0) at FluxPipeline's resolution shift on single frames of both toy worlds
  (1-3 still shapes on any background; one moving shape, captioned with its motion). Its guidance embedding
  is fed random values: the toy is not guidance-distilled, so ``--guidance`` does not change it.
- ``flux-canny``: the same transformer widened to 32 input channels (latents, then the Canny map's
  latents, as FluxControlPipeline concatenates them; the new half starts at zero, as BFL's control models
  started from dev) and fine-tuned on the frames' Canny maps at vsynth's FLUX thresholds.

An EMA of the weights is exported. The stopping signals, logged with every checkpoint in ``--work``/logs, are
the prompted colour's share of the object pixels on held-out prompts, and for canny the edge F1 with the map.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from . import train_wan, world
from .train_wan import _torch, add_eval, ema_update, eval_history, manifest_files, schedule

SIZE = 64
EVAL_SEED = 30_000_000
SEEDS = {"data": 301, "dev": 302, "canny": 303}
CANNY_LOW, CANNY_HIGH = 50, 200  # vsynth's FLUX Canny defaults (plugins/idm: FluxCannyParams)
# T5 tokens: the longest toy caption has 16 (with its end token). vsynth pads to the tokenizer's model_max_length
# (512 in every FLUX.1 repo): 512 would make the padding 95% of the transformer's tokens and of its training time.
MAX_SEQUENCE_LENGTH = 32
STEPS = 28  # FluxPipeline's default steps
LATENT_CHANNELS = 4  # the toy SD1.5 VAE's; packed 2x2 into 16-channel tokens

T5 = dict(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
          relative_attention_max_distance=16, feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
          decoder_start_token_id=0, is_encoder_decoder=False, use_cache=False)  # fmt: skip
TRANSFORMER = dict(patch_size=1, in_channels=16, out_channels=None, num_layers=2, num_single_layers=2, attention_head_dim=32,
                   num_attention_heads=3, joint_attention_dim=T5["d_model"], pooled_projection_dim=64, guidance_embeds=True,
                   axes_dims_rope=(8, 12, 12))  # fmt: skip
SCHEDULER = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                 base_image_seq_len=256, max_image_seq_len=4096)  # fmt: skip  (FLUX.1-dev's scheduler_config.json)

RECIPE = {
    "data": dict(frames=6000),
    "dev": dict(minutes=30, batch=32, lr=6e-4, warmup=100, ema=0.998, eval_every=200),
    "canny": dict(minutes=20, batch=32, lr=3e-4, warmup=30, ema=0.998, eval_every=200),
}


log = functools.partial(train_wan.log, name="train_flux")


def sd15_dir() -> Path:
    from .shipped import WEIGHTS_DIR

    return WEIGHTS_DIR / "sd15"


def canny(frame: np.ndarray) -> np.ndarray:
    from vsynth.plugins.idm.detectors import canny_maps

    return canny_maps(frame[None], CANNY_LOW, CANNY_HIGH)[0]


def mu() -> float:
    """FluxPipeline's resolution shift for a toy frame (8x8 tokens)."""
    from vsynth.plugins.idm.flux import calculate_shift

    return calculate_shift((SIZE // 8) ** 2, SCHEDULER)


def shifted(s, m: float):
    """FlowMatchEulerDiscreteScheduler's exponential time shift."""
    return math.exp(m) / (math.exp(m) + (1 / s - 1))


# ----------------------------------------------------------------------------------------------- data
def stage_data(args, work: Path):
    """Single frames of both toy worlds, their captions, Canny maps, and both as scaled VAE latents (means)."""
    torch = _torch()
    from diffusers import AutoencoderKL

    n = 64 if args.smoke else RECIPE["data"]["frames"]
    rng = np.random.default_rng(SEEDS["data"])
    frames, captions = [], []
    for i in range(n):
        seed = int(rng.integers(1 << 30))
        clip = world.make_clip(seed, frames=4, size=SIZE) if i % 2 else world.make_motion_clip(seed, frames=9, size=SIZE)
        frames.append(clip.frames[rng.integers(len(clip.frames))])
        captions.append(clip.caption)
    frames = np.stack(frames)
    edges = np.stack([canny(f) for f in frames])
    vae = AutoencoderKL.from_pretrained(sd15_dir() / "vae").float().eval()
    scale = vae.config.scaling_factor

    def encode(x):
        out = []
        with torch.no_grad():
            for i in range(0, len(x), 64):
                px = torch.from_numpy(x[i : i + 64]).permute(0, 3, 1, 2).float() / 127.5 - 1
                out.append(vae.encode(px).latent_dist.mean * scale)
        return torch.cat(out)

    torch.save({"latents": encode(frames), "edges": encode(edges), "captions": captions, "frames": frames, "edge_maps": edges}, work / "data.pt")
    log(work, f"data: {n} frames, latents {tuple(encode(frames[:1]).shape[1:])}")


# ----------------------------------------------------------------------------------------------- models
def t5_tokenizer():
    tok = train_wan.tokenizer()
    tok.model_max_length = MAX_SEQUENCE_LENGTH
    return tok


def clip_parts():
    from transformers import CLIPTextModel, CLIPTokenizer

    return CLIPTokenizer.from_pretrained(sd15_dir() / "tokenizer"), CLIPTextModel.from_pretrained(sd15_dir() / "text_encoder").float().eval()


def build(in_channels: int = 16, seed: int = SEEDS["dev"]):
    torch = _torch()
    from diffusers import FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    t5 = T5EncoderModel(T5Config(vocab_size=3 + len(world.WORDS), **T5))
    transformer = FluxTransformer2DModel(**{**TRANSFORMER, "in_channels": in_channels, "out_channels": 16})
    return t5, transformer


class Text:
    """Both prompt encodings as FluxPipeline makes them: T5 over 512 tokens (no mask), CLIP's pooled output; the
    frozen CLIP's pooled vectors are cached per caption."""

    def __init__(self):
        self.tok2 = t5_tokenizer()
        self.tok, self.clip = clip_parts()
        self.pooled: dict[str, object] = {}

    def t5(self, t5, captions):
        ids = self.tok2(list(captions), padding="max_length", max_length=MAX_SEQUENCE_LENGTH, truncation=True, return_tensors="pt").input_ids
        return t5(ids)[0]

    def pool(self, captions):
        torch = _torch()
        missing = [c for c in set(captions) if c not in self.pooled]
        if missing:
            ids = self.tok(missing, padding="max_length", max_length=self.tok.model_max_length, truncation=True, return_tensors="pt").input_ids
            with torch.no_grad():
                for c, p in zip(missing, self.clip(ids).pooler_output):
                    self.pooled[c] = p
        return torch.stack([self.pooled[c] for c in captions])


def pack(x):
    from vsynth.plugins.idm.flux import pack as flux_pack

    return flux_pack(x)


def velocity(transformer, xt, s, text_states, pooled, control=None, guidance=None):
    """The transformer on (B, 4, 16, 16) latents at noise levels ``s`` (B,): the unpacked velocity."""
    torch = _torch()
    from vsynth.plugins.idm.flux import image_ids, unpack

    h, w = xt.shape[-2:]
    tokens = pack(xt)
    if control is not None:
        tokens = torch.cat([tokens, pack(control)], 2)
    b = xt.shape[0]
    g = guidance if guidance is not None else torch.full((b,), 3.5)
    out = transformer(tokens, timestep=s, guidance=g, pooled_projections=pooled, encoder_hidden_states=text_states,
                      txt_ids=torch.zeros(text_states.shape[1], 3), img_ids=image_ids(h, w, xt.device, xt.dtype), return_dict=False)[0]  # fmt: skip
    return unpack(out, h, w)


def sample(transformer, t5, text: Text, prompts, control=None, steps=STEPS, seed=0):
    """FluxPipeline's Euler sampling: sigmas linspace(1, 1/N, N) shifted by mu, then 0; scaled latents."""
    torch = _torch()
    g = torch.Generator().manual_seed(seed)
    b = len(prompts)
    x = torch.randn((b, LATENT_CHANNELS, SIZE // 4, SIZE // 4), generator=g)
    m = mu()
    s = [shifted(v, m) for v in np.linspace(1.0, 1 / steps, steps)] + [0.0]
    with torch.no_grad():
        states, pooled = text.t5(t5, prompts), text.pool(prompts)
        for i in range(steps):
            v = velocity(transformer, x, torch.full((b,), s[i]), states, pooled, control)
            x = x + (s[i + 1] - s[i]) * v
    return x


def decode(latents):
    torch = _torch()
    from diffusers import AutoencoderKL

    vae = decode.vae = getattr(decode, "vae", None) or AutoencoderKL.from_pretrained(sd15_dir() / "vae").float().eval()
    with torch.no_grad():
        x = vae.decode(latents / vae.config.scaling_factor).sample
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def edge_f1(frame: np.ndarray, edges: np.ndarray) -> float:
    """F1 of the output's Canny edges against the control map's, within one pixel."""
    import cv2

    def binary_dilation(m):
        return cv2.dilate(m.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0

    a, b = canny(frame)[..., 0] > 0, edges[..., 0] > 0
    if not a.any() or not b.any():
        return 0.0
    p = (a & binary_dilation(b)).sum() / a.sum()
    r = (b & binary_dilation(a)).sum() / b.sum()
    return float(2 * p * r / max(p + r, 1e-9))


def evaluate(transformer, t5, text: Text, control: bool, n=8) -> dict:
    """Held-out frames: the prompted colour's share of the object pixels (one-shape prompts), edge F1 for canny."""
    torch = _torch()
    from diffusers import AutoencoderKL

    from vsynth.metrics.motion import object_masks

    clips = [world.make_motion_clip(EVAL_SEED + i, frames=9, size=SIZE, colour=world.COLOURS[i % len(world.COLOURS)]) for i in range(n)]
    prompts = [c.caption for c in clips]
    maps = None
    if control:
        vae = AutoencoderKL.from_pretrained(sd15_dir() / "vae").float().eval()
        edge_maps = np.stack([canny(c.frames[0]) for c in clips])
        with torch.no_grad():
            maps = vae.encode(torch.from_numpy(edge_maps).permute(0, 3, 1, 2).float() / 127.5 - 1).latent_dist.mean * vae.config.scaling_factor
    frames = decode(sample(transformer, t5, text, prompts, maps, seed=EVAL_SEED))
    share = []
    for f, c in zip(frames, clips):
        fg = object_masks(f[None], None)
        share.append(float((object_masks(f[None], c.shapes[0][1]) & fg).sum() / max(fg.sum(), 1)))
    out = {"colour_share": round(float(np.mean(share)), 3), "n": n}
    if control:
        out["edge_f1"] = round(float(np.mean([edge_f1(f, e) for f, e in zip(frames, edge_maps)])), 3)
    return out | {"frames": frames}


# ----------------------------------------------------------------------------------------------- training
def train(args, work: Path, stage: str):
    torch = _torch()
    r = RECIPE[stage]
    control = stage == "canny"
    data = torch.load(work / "data.pt", weights_only=False)
    lat, edges, captions = data["latents"], data["edges"], data["captions"]
    text = Text()
    t5, transformer = build(32 if control else 16, SEEDS[stage])
    ckpt = work / "ckpt" / f"{stage}.pt"
    if control and not ckpt.exists():  # from dev's EMA weights, the control half of the input projection at zero
        dev = torch.load(work / "ckpt" / "dev.pt", weights_only=False)
        t5.load_state_dict(dev["ema_t5"])
        state = dict(dev["ema_transformer"])
        w = state["x_embedder.weight"]
        state["x_embedder.weight"] = torch.cat([w, torch.zeros_like(w)], 1)
        transformer.load_state_dict(state)
    params = list(t5.parameters()) + list(transformer.parameters())
    opt = torch.optim.AdamW(params, lr=r["lr"], weight_decay=0.01)
    ema_t, ema_5 = copy.deepcopy(transformer), copy.deepcopy(t5)
    step, minutes_done = 0, 0.0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        transformer.load_state_dict(state["transformer"])
        t5.load_state_dict(state["t5"])
        ema_t.load_state_dict(state["ema_transformer"])
        ema_5.load_state_dict(state["ema_t5"])
        opt.load_state_dict(state["opt"])
        step, minutes_done = state["step"], state["minutes"]
    for m in (ema_t, ema_5):
        m.requires_grad_(False).eval()
    minutes = args.minutes or r["minutes"]
    m = mu()
    rng = np.random.default_rng(SEEDS[stage] + step)
    g = torch.Generator().manual_seed(SEEDS[stage] + step)
    t0 = time.time() - minutes_done * 60
    last_save = time.time()
    losses = []
    history = eval_history(work, stage)
    log(work, f"{stage}: transformer {sum(p.numel() for p in transformer.parameters()) / 1e6:.3f} M, t5 "
        f"{sum(p.numel() for p in t5.parameters()) / 1e6:.3f} M; {minutes} min from step {step}")  # fmt: skip
    while True:
        elapsed = (time.time() - t0) / 60
        done, lr = schedule(args, r, step, elapsed, minutes)
        for gr in opt.param_groups:
            gr["lr"] = lr
        if not done:
            idx = rng.integers(len(lat), size=r["batch"])
            x0 = lat[idx]
            caps = [captions[i] for i in idx]
            u = torch.sigmoid(torch.randn(len(idx), generator=g))  # logit-normal levels at FLUX's resolution shift
            s = shifted(u, m)
            noise = torch.randn(x0.shape, generator=g)
            xt = (1 - s.view(-1, 1, 1, 1)) * x0 + s.view(-1, 1, 1, 1) * noise
            guidance = torch.rand(len(idx), generator=g) * 4 + 1
            v = velocity(transformer, xt, s, text.t5(t5, caps), text.pool(caps), edges[idx] if control else None, guidance)
            loss = (v - (noise - x0)).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            ema_update(((ema_t, transformer), (ema_5, t5)), step, r["ema"])
            losses.append(float(loss.detach()))
            step += 1
            if step % 25 == 0:
                log(work, f"{stage} step {step} loss {np.mean(losses[-25:]):.4f} lr {lr:.2e} {elapsed:.1f} min")
        if done or time.time() - last_save > 240 or (step % r["eval_every"] == 0 and not args.smoke):
            torch.save({"transformer": transformer.state_dict(), "t5": t5.state_dict(), "ema_transformer": ema_t.state_dict(),
                        "ema_t5": ema_5.state_dict(), "opt": opt.state_dict(), "step": step, "minutes": (time.time() - t0) / 60}, ckpt)  # fmt: skip
            last_save = time.time()
            if done or step % r["eval_every"] == 0:
                res = evaluate(ema_t, ema_5, text, control, n=4 if args.smoke else 8)
                np.save(work / "samples" / f"{stage}_{step:06d}.npy", res.pop("frames"))
                log(work, f"{stage} eval {json.dumps(add_eval(work, stage, history, step, t0, losses, res))}")
        if done:
            break


# ----------------------------------------------------------------------------------------------- export
def export(args, work: Path, out: Path):
    """FluxPipeline (flux-dev) and FluxControlPipeline (flux-canny) folders in float16."""
    torch = _torch()
    import diffusers
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler

    for stage, name, pipeline in (("dev", "flux-dev", "FluxPipeline"), ("canny", "flux-canny", "FluxControlPipeline")):
        state = torch.load(work / "ckpt" / f"{stage}.pt", weights_only=False)
        t5, transformer = build(32 if stage == "canny" else 16)
        t5.load_state_dict(state["ema_t5"])
        transformer.load_state_dict(state["ema_transformer"])
        tok, clip = clip_parts()
        vae = AutoencoderKL.from_pretrained(sd15_dir() / "vae")
        vae.register_to_config(shift_factor=0.0)  # FluxPipeline adds it when decoding
        pipe = getattr(diffusers, pipeline)(scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER), vae=vae.half(), text_encoder=clip.half(),
                                            tokenizer=tok, text_encoder_2=t5.half(), tokenizer_2=t5_tokenizer(), transformer=transformer.half())  # fmt: skip
        pipe.save_pretrained(out / name)
        log(work, f"export: {out / name} (step {state['step']}, {state['minutes']:.1f} min)")


def ship(args, work: Path, out: Path):
    """Copy both folders into the shipped weights and enter them in manifest.json with hashes, figures and command."""
    import shutil

    from .shipped import WEIGHTS_DIR

    manifest_path = WEIGHTS_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for stage, name in (("dev", "flux-dev"), ("canny", "flux-canny")):
        target = WEIGHTS_DIR / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(out / name, target)
        files = manifest_files(target)
        history = eval_history(work, stage)
        last = history[-1]
        manifest["models"][name] = dict(
            files=files,
            stages={stage: {"steps": last["step"], "minutes": last["minutes"], "seed": SEEDS[stage], "final_loss": last["loss"]}},
            metrics={stage: {"history": history}},
            size=SIZE,
            command=f"vsynth toy train --flux --work {args.work}   (python -m vsynth.toy.train_flux; dev {RECIPE['dev']['minutes']} min, "
            f"canny {RECIPE['canny']['minutes']} min of one CPU thread by default)",
            stage_command=" ; ".join(f"python -m vsynth.toy.train_flux --stage {s} --work {args.work}" for s in ("data", "dev", "canny", "export", "ship")),
        )
        log(work, f"shipped {name}: {sum(f['bytes'] for f in files) / 1e6:.2f} MB")
    manifest["total_bytes"] = sum(f["bytes"] for m in manifest["models"].values() for f in m["files"])
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str))
    log(work, f"all toy weights {manifest['total_bytes'] / 1e6:.2f} MB")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default="toywork-flux")
    p.add_argument("--out", default="toy-flux")
    p.add_argument("--stage", choices=("all", "data", "dev", "canny", "export", "ship"), default="all")
    p.add_argument("--minutes", type=float, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    work, out = Path(args.work), Path(args.out)
    for d in ("ckpt", "logs", "samples", "stats"):
        (work / d).mkdir(parents=True, exist_ok=True)
    stages = ("data", "dev", "canny", "export") if args.stage == "all" else (args.stage,)
    for stage in stages:
        t = time.time()
        if stage == "data":
            stage_data(args, work)
        elif stage in ("dev", "canny"):
            train(args, work, stage)
        elif stage == "export":
            export(args, work, out)
        else:
            ship(args, work, out)
        log(work, f"stage {stage} took {(time.time() - t) / 60:.1f} min")


if __name__ == "__main__":
    main()
