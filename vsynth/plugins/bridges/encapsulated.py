"""EVS's Encapsulated Composition (CVPR 2025, Algorithm 1): T2I + [T2V] + T2I.

EVS enhances a video: the source video, or, without one (the paper's setting, which refines
T2V models' outputs), the VDM's own text-to-video result for the prompt and seed, generated
first in the same run and kept as ``t2v_frames``. The IDM refines the source video by SDEdit, all frames batched: the source latent is noised to
t_I (``strength`` of the IDM's schedule) and denoised. At the T2I step t_T2V (``t2v_at``) the
[T2V] block runs, once:

1. Bridge in: x0_I, the clean latent that T2I step predicts, is noised to t_V (``t2v_strength``
   of the VDM's schedule) with fresh noise (SDEdit), or, with ``injection=sfi``, DDIM-inverted
   to t_V by the VDM while chosen self-attention layers record their Q, K, V.
2. The VDM runs n_V steps from t_V (``t2v_steps``; with SFI, attending with the recorded
   features). x0_V is the clean latent the last of them predicts, or the final latent when they
   run to the end of the schedule.
3. Bridge back: ``z = sqrt(abar_I(t_T2V)) x0_V + sqrt(1 - abar_I(t_T2V)) eps``, and T2I denoising
   resumes *at* t_T2V.

The two models meet only through clean latents: their noise schedules differ (REFERENCE.md).

Reading of the bridge back. Algorithm 1 assigns z_{t_T2V} after the step at t_T2V has already
consumed it, an off-by-one; vsynth re-runs the T2I step at t_T2V on the re-noised latent (one
extra IDM evaluation). By default (``renoise=predicted``) ``eps`` is the noise that T2I step
predicted: then an identity block (``t2v_steps=0``: x0_V = x0_I) gives back z_{t_T2V} up to
rounding and the run equals ``idm-only``, so the block changes the video only through what the VDM
changed, and the T2I trajectory is kept. ``renoise=fresh`` draws eps from the run's generator
instead, Algorithm 1's literal form, which throws that trajectory away at the block.
"""

from __future__ import annotations

import torch

from vsynth.core.diffusion import sampling
from vsynth.core.diffusion.attention import FeatureInjection, select_layers
from vsynth.core.diffusion.bridge import Bridge, BridgeResult
from vsynth.core.run.progress import Stages
from vsynth.errors import InvalidParamsError
from vsynth.plugins.bridges.composition import SDEdit, encode_source, transcode, video_codec
from vsynth.plugins.bridges.text_to_video import text_to_video


class Encapsulated(Bridge):
    def run(self, idm, vdm, inputs, generator, stages):
        p = self.params
        t2i = SDEdit.image(idm, inputs, p.strength)
        at = int(p.t2v_at * t2i.length)  # T2I steps before the block; t2v_at < 1 keeps it inside
        t2v, n_v = None, 0
        if p.t2v_steps != 0:
            t2v = SDEdit.video(vdm, inputs, p.t2v_strength)
            n_v = t2v.length if p.t2v_steps is None else p.t2v_steps
            if n_v > t2v.length:
                raise InvalidParamsError(
                    f"t2v_steps {n_v} exceeds the {t2v.length} VDM steps left at t2v_strength {p.t2v_strength} "
                    f"of {t2v.schedule.steps}: lower t2v_steps or raise t2v_strength"
                )
        d = idm.denoiser
        intermediates = {}
        if inputs.sources.video is None:  # the paper's setting: enhance what the T2V model makes of the prompt
            z_t2v = text_to_video(vdm, inputs, generator, stages)
            with stages.stage("decoding T2V frames", total=inputs.frames) as advance:
                intermediates["t2v_frames"] = vdm.codec.decode(z_t2v, advance)
        x0 = encode_source(idm.codec, inputs, stages, intermediates.get("t2v_frames")).to(d.dtype)

        with stages.stage("T2I denoising", total=at + 1) as advance:
            z = t2i.noise(x0, generator)
            x0_i, eps = sampling.denoise_predict(
                t2i.schedule, z, t2i.cond, t2i.start, t2i.start + at, guidance=t2i.guidance, advance=advance, generator=generator
            )
        x0_v = x0_i
        if t2v is not None:  # into the VDM's latent space and back, where the two differ
            codec = video_codec(idm, vdm)
            x0_v = transcode(t2v_block(t2v, transcode(x0_i, idm.codec, codec, stages), n_v, p, generator, stages), codec, idm.codec, stages)
        x0_v = x0_v.to(d.dtype)

        if p.renoise == "fresh":
            eps = sampling.initial_noise(d, tuple(x0_v.shape), generator)
        with stages.stage("T2I denoising after [T2V]", total=t2i.length - at) as advance:
            z = sampling.renoise(d, x0_v, eps, t2i.level(at))  # both models meet at the level of T2I step t_T2V
            z = sampling.denoise(t2i.schedule, z, t2i.cond, t2i.start + at, guidance=t2i.guidance, advance=advance, generator=generator)
        return BridgeResult(latents=z, codec=idm.codec, intermediates=intermediates)


def t2v_block(t2v: SDEdit, x0: torch.Tensor, n_v: int, params, generator: torch.Generator, stages: Stages) -> torch.Tensor:
    """The [T2V] block: x0 (B, C, F, H, W), the T2I prediction, to t_V and through ``n_v`` VDM steps; returns x0_V."""
    x0 = x0.to(t2v.denoiser.dtype)
    if params.injection == "none":
        return denoise_block(t2v, t2v.noise(x0, generator), n_v, stages)
    unet = t2v.denoiser.unet
    with FeatureInjection(unet, select_layers(unet, params.sfi_layers), params.sfi_gamma) as sfi:
        return inverted_block(t2v, x0, n_v, sfi, stages)


def inverted_block(t2v: SDEdit, x0: torch.Tensor, n_v: int, sfi: FeatureInjection, stages: Stages) -> torch.Tensor:
    """DDIM-invert x0 to t_V while ``sfi`` records, then denoise ``n_v`` steps while it injects."""
    with stages.stage("T2V inversion", total=t2v.length) as advance:
        sfi.set_mode("record")
        z = sampling.invert(t2v.schedule, x0, t2v.cond, t2v.start, advance=advance)
    sfi.set_mode("inject")
    return denoise_block(t2v, z, n_v, stages)


def denoise_block(t2v: SDEdit, z: torch.Tensor, n_v: int, stages: Stages) -> torch.Tensor:
    """``n_v`` VDM steps from t_V on ``z`` (process form): the final latent if they reach the end, else the clean
    latent the n_v-th step predicts."""
    with stages.stage("[T2V] block", total=n_v) as advance:
        if n_v == t2v.length:
            return sampling.denoise(t2v.schedule, z, t2v.cond, t2v.start, guidance=t2v.guidance, advance=advance)
        stop = t2v.start + n_v - 1
        return sampling.denoise_predict(t2v.schedule, z, t2v.cond, t2v.start, stop, guidance=t2v.guidance, advance=advance)[0]
