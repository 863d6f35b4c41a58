"""The loop that fine-tunes a shipped toy model of the old family for the guidance it is sampled with.

:mod:`vsynth.toy.tune_zeroscope` (the ZeroScope slot's UNet3D) and :mod:`vsynth.toy.tune_controlnet` (the toy
ControlNet) share it: half of the timesteps are drawn from 600-999 (:func:`timesteps`; the rest uniformly), where
the layout and the colours are decided, and their losses add there the guided loss of the Wan toy
(vsynth.toy.train_wan.guided_target) for vsynth's default guidance. The loop around each model's loss is the same:
seeded steps, warm-up, gradient clipping, an EMA exported in float16 every ``export_every`` steps, and a checkpoint
loaded with ``map_location`` on resume, so that a GPU run's checkpoint resumes on a CPU.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from .train import log

GUIDANCE = 7.5  # vsynth's default guidance (cli --guidance), which the old family is sampled with
HIGH_FROM = 600  # timesteps from here up are "high noise": half the batch is drawn there (the rest uniformly), and the guided loss applies


def timesteps(rng, batch: int, share: float):
    """Uniform timesteps, a ``share`` of them drawn from HIGH_FROM..999 instead."""
    t = rng.integers(0, 1000, batch)
    high = rng.random(batch) < share
    t[high] = rng.integers(HIGH_FROM, 1000, int(high.sum()))
    return t


def noise_loss(pred, eps, t, tokens, empty, uncond: Callable, guided_weight: float):
    """The noise-prediction loss of ``pred`` (the conditional branch), plus, for the captioned samples at high
    noise, ``guided_weight`` times its distance from the prediction whose guided combination at :data:`GUIDANCE` is
    the true noise (:func:`vsynth.toy.train_wan.guided_target`). ``uncond(pick)`` gives the unconditional prediction
    of the samples picked by the boolean mask; it is held fixed (no gradient)."""
    import torch
    import torch.nn.functional as F

    from .train_wan import guided_target

    loss = F.mse_loss(pred, eps)
    high = (t >= HIGH_FROM) & (tokens != empty).any(1).to(t.device)
    if high.any():
        with torch.no_grad():
            u = uncond(high)
        loss = loss + guided_weight * F.mse_loss(pred[high], guided_target(eps[high], u, GUIDANCE))
    return loss


def text_inputs(tok, te, captions: list[str], device: str):
    """The captions' CLIP token ids (padded to 77, on the CPU, as :func:`vsynth.toy.train.dropped_captions` takes them),
    the empty prompt's ids, and its embedding on ``device``: the unconditional branch's text."""
    import torch

    ids = tok(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    empty = tok([""], padding="max_length", max_length=77, return_tensors="pt").input_ids[0]
    with torch.no_grad():
        empty_cond = te(empty[None].to(device))[0]
    return ids, empty, empty_cond


def save_ema(module, ema, folder: Path):
    """``module`` with the EMA's weights, saved in float16 (as shipped) into ``folder``."""
    import copy

    import torch

    m = copy.deepcopy(module)
    ema.copy_to(m)
    m.to(torch.float16).save_pretrained(folder)


def run(module, name: str, work: Path, recipe: dict, loss_fn: Callable, minutes: float, steps: int | None, export_every: int, device: str):
    """Train ``module`` on ``loss_fn(rng, step)`` (a scalar loss) until ``minutes`` or ``steps``; resume from
    ``work``/ckpt.pt (the module's weights under the key ``name``) and export ``work``/``NAME-STEP``/."""
    import torch

    from .train import EMA

    ema = EMA(module, recipe["ema"])
    opt = torch.optim.AdamW(module.parameters(), lr=recipe["lr"], weight_decay=0.0)
    step, seconds = 0, 0.0
    ckpt = work / "ckpt.pt"
    if ckpt.exists():
        s = torch.load(ckpt, weights_only=False, map_location=device)
        module.load_state_dict(s[name])
        opt.load_state_dict(s["opt"])
        ema.shadow, step, seconds = s["ema"], s["step"], s["seconds"]
        log(f"resumed at step {step}")
    t0, losses = time.time() - seconds, []
    while time.time() - t0 < minutes * 60 and not (steps and step >= steps):
        rng = np.random.default_rng(recipe["seed"] * 1_000_003 + step)
        torch.manual_seed(recipe["seed"] * 1_000_003 + step)
        for g in opt.param_groups:
            g["lr"] = recipe["lr"] * min(1.0, (step + 1) / recipe["warmup"])
        loss = loss_fn(rng, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        ema.update(module, step)
        losses.append(loss.item())
        step += 1
        if step % 25 == 0:
            log(f"step {step} loss {np.mean(losses[-25:]):.4f} {(time.time() - t0) / 60:.1f} min")
        if step % export_every == 0:
            torch.save({name: module.state_dict(), "opt": opt.state_dict(), "ema": ema.shadow, "step": step, "seconds": time.time() - t0},
                       ckpt.with_suffix(".tmp"))  # fmt: skip
            ckpt.with_suffix(".tmp").replace(ckpt)
            save_ema(module, ema, work / f"{name}-{step}")
            log(f"checkpoint and EMA at step {step}")
    if step and step % export_every:
        save_ema(module, ema, work / f"{name}-{step}")
    log(f"done: {step} steps in {(time.time() - t0) / 60:.1f} min")
