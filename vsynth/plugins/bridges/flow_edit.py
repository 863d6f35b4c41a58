"""FlowEdit (Kulikov et al., ICCV 2025, arXiv:2412.08629): inversion-free editing with a flow model,
alone or composed with an image model's frame-wise edit.

The editing path, as the reference code runs it (fallenshock/FlowEdit, ``FlowEditSD3``/``FlowEditFLUX``,
and its Wan, LTX and HunyuanVideo ports). In flow form a latent at s is (1 - s) x0 + s noise; the
edit latent Z starts at the clean source X_src and, for each step k of the model's schedule from
``n_max`` steps before the end down to ``n_min`` steps before it:

    for each of n_avg draws:   N ~ N(0, I)
        Z_src = (1 - s_k) X_src + s_k N             the source noised to the step's level
        Z_tar = Z + Z_src - X_src                   the target shifted by the same offset (same noise)
        dV   += (V(Z_tar, target prompt) - V(Z_src, source prompt)) / n_avg
    Z = Z + (s_{k+1} - s_k) dV                      an Euler step of the direct ODE

Below ``n_min``, the target Z + (1 - s) X_src + s N - X_src is sampled plainly from that level,
with the model's own solver. No inversion: the model's errors on the source appear in both
velocities and cancel, and with one prompt for both the path stays at the source.

The velocities come from the process (noise minus clean latent of the model's prediction), so
any denoiser that declares the flow process works; VP models are refused before loading.

**With an IDM** (``--idm``): the IDM edits every frame first, by its own edit (FLUX Kontext's
instruction edit, a control or fill model: ``idm.generate``) or, for a text-to-image flow IDM, by
FlowEdit frame-wise with its own denoiser and its family's defaults. Its frames give the look; the
VDM's edit path keeps the motion and the coherence. They meet through the clean edit, in the
VDM's latent space (through pixels where the spaces differ), as EVS's models meet through clean
latents: the IDM's edit is the *target* of the first ``idm_levels`` of the editing levels (the
coarse ones, where colour and layout are decided, as EVS gives the image model the steps that set
the look), and the VDM's target prompt that of the rest (the finer ones, where a frame-wise edit
flickers). A known clean target X_E (and the known clean source) have exact velocities, so over
those levels the step is dV = (Z_tar - X_E) / s - (Z_src - X_src) / s = (Z - X_E) / s, whatever the
noise, and Euler integrates it exactly:

    Z(s) = X_E + (s / s_max) (X_src - X_E)

so they cost no evaluation; the VDM's FlowEdit takes over from that latent. ``idm_levels=1`` with
``n_min=0`` returns the IDM's edit; small values leave the VDM's own edit.
"""

from __future__ import annotations

import torch

from vsynth.core.diffusion import processes, sampling
from vsynth.core.diffusion.bridge import Bridge, BridgeResult
from vsynth.core.diffusion.denoiser import Denoiser
from vsynth.core.diffusion.inputs import BridgeInputs, Conditioning
from vsynth.core.diffusion.latents import shares_latents
from vsynth.core.diffusion.models import ImageModel
from vsynth.core.run.progress import Stages
from vsynth.plugins.bridges.composition import encode_source
from vsynth.plugins.bridges.flow_edit_params import EditPlan, FlowEditParams, family_of


def flow_s(level: torch.Tensor) -> float:
    """The flow time s of a level (noise-to-signal ratio): 1 at pure noise, 0 clean."""
    return float(processes.FLOW_FORM.coefficients(level)[1])


def velocity(denoiser: Denoiser, z: torch.Tensor, t, cond: Conditioning, guidance: float, level: torch.Tensor) -> torch.Tensor:
    """noise - clean latent of the model's prediction for ``z`` (float32, flow form) at ``level``: the flow velocity."""
    output = denoiser.predict(z.to(denoiser.dtype), t, cond, guidance).float()
    x0, noise = sampling.split(denoiser, z, output, level)
    return noise - x0


def velocity_difference(
    d: Denoiser, z: torch.Tensor, x_src: torch.Tensor, noise: torch.Tensor, level, t, source: Conditioning, target: Conditioning, plan: EditPlan
) -> torch.Tensor:
    """V(Z_tar, target) - V(Z_src, source) for one draw: the source noised with ``noise`` to ``level``, and the
    target, the edit latent ``z`` shifted by the same offset (so both see the same noise)."""
    z_src = sampling.renoise(d, x_src, noise, level)
    z_tar = z + z_src - x_src
    return velocity(d, z_tar, t, target, plan.target_guidance, level) - velocity(d, z_src, t, source, plan.source_guidance, level)


@torch.no_grad()
def flow_edit(
    schedule: sampling.Schedule,
    x_src: torch.Tensor,
    source: Conditioning,
    target: Conditioning,
    plan: EditPlan,
    generator: torch.Generator,
    *,
    begin: int | None = None,
    z: torch.Tensor | None = None,
    advance=None,
) -> torch.Tensor:
    """FlowEdit of the clean latent ``x_src`` (B, C, F, H, W) from ``source`` to ``target``: a clean latent.

    Editing runs the steps ``steps - n_max`` .. ``steps - n_min - 1`` of ``schedule``; ``begin`` and ``z``
    enter it later, at step ``begin`` with the edit latent ``z`` there (the composition with an IDM).
    ``advance(1)`` once per step.
    """
    d, steps = schedule.denoiser, schedule.steps
    first, last = steps - plan.n_max, steps - plan.n_min
    begin = first if begin is None else begin
    x_src = x_src.float()
    z = x_src.clone() if z is None else z.float()
    for k in range(begin, last):
        level, t = schedule.level(k), schedule.timestep(k)
        dv = torch.zeros_like(x_src)
        for _ in range(plan.n_avg):
            noise = sampling.initial_noise(d, tuple(x_src.shape), generator).float()
            dv += velocity_difference(d, z, x_src, noise, level, t, source, target, plan) / plan.n_avg
        z = z + (flow_s(schedule.level(k + 1)) - flow_s(level)) * dv
        sampling.check_finite(z, k - begin + 1, last - begin)
        if advance:
            advance(1)
    if plan.n_min == 0:
        return d.finish(z.to(d.dtype))
    noise = sampling.initial_noise(d, tuple(x_src.shape), generator).float()
    z_tar = z + sampling.renoise(d, x_src, noise, schedule.level(last)) - x_src
    return sampling.denoise(schedule, z_tar.to(d.dtype), target, last, guidance=plan.target_guidance, advance=advance, generator=generator)


def toward_target(x_src: torch.Tensor, x_e: torch.Tensor, s_max: float, s: float) -> torch.Tensor:
    """The edit latent at flow time ``s`` after the levels from ``s_max`` whose target is the known clean ``x_e``:
    X_E + (s / s_max) (X_src - X_E), the exact solution of dZ/ds = (Z - X_E) / s from Z(s_max) = X_src."""
    return x_e + (s / s_max) * (x_src - x_e)


class FlowEdit(Bridge):
    def run(self, idm, vdm, inputs, generator, stages):
        p, d = self.params, vdm.denoiser
        schedule = sampling.Schedule(d, inputs.vdm_steps)
        plan = p.plan(family_of(vdm.spec), inputs.vdm_steps)
        record: dict = {"vdm": plan.record()}
        x_src = encode_source(vdm.codec, inputs, stages).float()
        begin, z, intermediates = schedule.steps - plan.n_max, None, {}
        if idm is not None:
            z_idm, record["idm"] = image_edit(idm, inputs, p.image_edit(idm.spec), generator, stages)
            with stages.stage("decoding IDM frames", total=inputs.frames) as advance:
                intermediates["idm_frames"] = idm.codec.decode(z_idm, advance)
            vdm.condition_on_frames(intermediates["idm_frames"])  # Wan 2.2 TI2V with -o first_frame=idm holds the IDM's first frame
            with stages.stage("encoding IDM frames", total=1) as advance:  # into the VDM's latent space, through pixels
                x_e = z_idm if shares_latents(idm.codec, vdm.codec) else vdm.codec.encode(intermediates["idm_frames"])
                advance(1)
            levels = p.idm_level_count(plan)
            s_max, s = flow_s(schedule.level(begin)), flow_s(schedule.level(begin + levels))
            z, begin = toward_target(x_src, x_e.float(), s_max, s), begin + levels
            record["idm_levels"] = levels
        source = d.condition(inputs.sources.source_prompt, inputs.negative_prompt)
        target = d.condition(inputs.prompt, inputs.negative_prompt)
        with stages.stage("flow edit", total=schedule.steps - begin) as advance:
            z = flow_edit(schedule, x_src, source, target, plan, generator, begin=begin, z=z, advance=advance)
        return BridgeResult(latents=z, codec=vdm.codec, intermediates=intermediates, record=record)


def image_edit(idm: ImageModel, inputs: BridgeInputs, how: str, generator: torch.Generator, stages: Stages) -> tuple[torch.Tensor, dict]:
    """The IDM's frame-wise edit of the source, as clean latents in its space, and what run.json says of it:
    its own edit (``idm.generate``) or FlowEdit frame-wise from --source-prompt to its prompt."""
    if how == "own":
        with stages.stage("frame-wise edit", total=inputs.steps) as advance:
            return idm.generate(inputs, generator, advance), {"edit": "own"}
    d = idm.denoiser
    schedule = sampling.Schedule(d, inputs.steps)
    plan = FlowEditParams().plan(family_of(idm.spec), inputs.steps)  # the IDM family's published settings
    x_src = encode_source(idm.codec, inputs, stages)
    extras = inputs.frame_inputs.extras
    source = d.condition(inputs.sources.source_prompt, inputs.negative_prompt, **extras)
    target = d.condition(inputs.image_prompt, inputs.negative_prompt, **extras)
    with stages.stage("frame-wise flow edit", total=plan.n_max) as advance:
        z = flow_edit(schedule, x_src, source, target, plan, generator, advance=advance)
    return z, {"edit": "flow-edit", **plan.record()}

