"""The plugin-style denoisers of tests/plugin_denoisers.py, on tiny random networks: vsynth's sampling
through them is diffusers' own loop with the same network and scheduler, and its inversion is DDIM
inversion (v) or the reverse Euler step of the flow ODE, written here from the schedulers' tables."""

import pytest
import torch
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler, UNet2DConditionModel, WanTransformer3DModel

from tests.plugin_denoisers import FlowDenoiser, VPredictionDenoiser
from vsynth.core.diffusion import processes, sampling, solvers
from vsynth.core.diffusion.inputs import Conditioning
from vsynth.core.diffusion.schedules import SD15_DDIM
from vsynth.tiny.build import _UNET2D

SHAPE = (1, 4, 2, 8, 8)  # (B, C, F, H, W)
STEPS, GUIDANCE = 4, 3.0


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return UNet2DConditionModel(**_UNET2D).eval()


@pytest.fixture(scope="module")
def transformer():
    torch.manual_seed(0)
    config = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4, text_dim=32,
                  freq_dim=16, ffn_dim=32, num_layers=1, rope_max_seq_len=32)  # fmt: skip
    return WanTransformer3DModel(**config).eval()


def conditioning(seed: int = 1) -> Conditioning:
    g = torch.Generator().manual_seed(seed)
    return Conditioning(text=torch.randn(1, 7, 32, generator=g), negative=torch.randn(1, 7, 32, generator=g))


def latents(seed: int) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


def v_denoiser(unet, solver: str) -> VPredictionDenoiser:
    base = DDIMScheduler(**dict(SD15_DDIM, prediction_type="v_prediction"))
    return VPredictionDenoiser(unet, solvers.build(solver, base), None, None)


def flow_denoiser(transformer, solver: str) -> FlowDenoiser:
    return FlowDenoiser(transformer, solvers.build(solver, FlowMatchEulerDiscreteScheduler(shift=3.0)), None, None)


def unet_v(unet, x, t, cond, guidance):
    """What StableDiffusionPipeline computes: the UNet on every frame, classifier-free guidance."""
    b, c, f, h, w = x.shape
    frames = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
    uncond, text = (unet(frames, t, encoder_hidden_states=e.expand(b * f, -1, -1)).sample for e in (cond.negative, cond.text))
    return (uncond + guidance * (text - uncond)).reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)


def wan_velocity(transformer, x, t, cond, guidance):
    """What WanPipeline computes: the transformer on the clip, timestep expanded to the batch, guidance."""
    timestep = t.expand(x.shape[0])
    uncond, text = (transformer(hidden_states=x, timestep=timestep, encoder_hidden_states=e).sample for e in (cond.negative, cond.text))
    return uncond + guidance * (text - uncond)


def diffusers_loop(scheduler, network, x, cond):
    """diffusers' denoising loop, as its pipelines write it."""
    scheduler.set_timesteps(STEPS)
    x = x * getattr(scheduler, "init_noise_sigma", 1.0)
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(x, t) if hasattr(scheduler, "scale_model_input") else x
        x = scheduler.step(network(model_input, t), t, x, return_dict=False)[0]
    return x


@torch.no_grad()
@pytest.mark.parametrize("solver", ["ddim", "euler", "dpm++", "unipc", "heun"])
def test_v_prediction_plugin_samples_as_diffusers_does(unet, solver):
    denoiser, cond, noise = v_denoiser(unet, solver), conditioning(), latents(0)
    assert denoiser.process is processes.VP_V
    got = sampling.sample(denoiser, noise, cond, steps=STEPS, guidance=GUIDANCE)
    scheduler = type(denoiser.scheduler).from_config(denoiser.scheduler.config)
    want = diffusers_loop(scheduler, lambda x, t: unet_v(unet, x, t, cond, GUIDANCE), noise, cond)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("solver", ["euler", "dpm++", "unipc", "heun"])
def test_flow_plugin_samples_as_diffusers_does(transformer, solver):
    denoiser, cond, noise = flow_denoiser(transformer, solver), conditioning(), latents(0)
    assert denoiser.process is processes.FLOW
    got = sampling.sample(denoiser, noise, cond, steps=STEPS, guidance=GUIDANCE)
    scheduler = type(denoiser.scheduler).from_config(denoiser.scheduler.config)
    want = diffusers_loop(scheduler, lambda x, t: wan_velocity(transformer, x, t, cond, GUIDANCE), noise, cond)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_v_prediction_plugin_inverts_by_ddim_inversion(unet):
    denoiser, cond, x0 = v_denoiser(unet, "ddim"), conditioning(), latents(2)
    schedule, start = sampling.Schedule(denoiser, STEPS), STEPS // 2
    got = sampling.invert(schedule, x0, cond, start)
    abar = denoiser.scheduler.alphas_cumprod
    x, previous = x0, torch.tensor(1.0)  # abar of the clean latent
    for t in reversed(schedule.timesteps[start:].tolist()):  # 251, then 501
        v = unet_v(unet, x, torch.tensor(t), cond, 1.0)
        clean, noise = previous.sqrt() * x - (1 - previous).sqrt() * v, (1 - previous).sqrt() * x + previous.sqrt() * v
        x, previous = abar[t].sqrt() * clean + (1 - abar[t]).sqrt() * noise, abar[t]
    torch.testing.assert_close(got, x, atol=1e-5, rtol=1e-5)
    back = sampling.denoise(schedule, got, cond, start, guidance=1.0)
    assert back.shape == x0.shape and torch.isfinite(back).all()


@torch.no_grad()
def test_flow_plugin_inverts_by_the_reverse_euler_step(transformer):
    denoiser, cond, x0 = flow_denoiser(transformer, "euler"), conditioning(), latents(2)
    schedule, start = sampling.Schedule(denoiser, STEPS), STEPS // 2
    got = sampling.invert(schedule, x0, cond, start)
    sigmas, timesteps = schedule.fresh().sigmas, schedule.timesteps
    x, previous = x0, 0.0
    for k in reversed(range(start, STEPS)):
        x = x + (sigmas[k] - previous) * wan_velocity(transformer, x, timesteps[k], cond, 1.0)
        previous = sigmas[k]
    torch.testing.assert_close(got, x, atol=1e-5, rtol=1e-5)
    back = sampling.denoise(schedule, got, cond, start, guidance=1.0)
    assert back.shape == x0.shape and torch.isfinite(back).all()
