"""SDXL image models (issue 25): frame-wise generation equals diffusers' SDXL pipelines on the tiny
components, runs across latent spaces write every output, and the listings say what they are."""

import json

import pytest
import torch
from diffusers import StableDiffusionXLControlNetPipeline, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
from PIL import Image

from tests.conftest import SAMPLE_VIDEO, load_tiny
from tests.test_equivalence import TOL
from vsynth.core.diffusion.inputs import BridgeInputs, Sources
from vsynth.core.media import video as videoio
from vsynth.testing import run_cli

STEPS, GUIDANCE, PROMPT = 3, 7.5, "a red ball"
FRAMES = 2


@pytest.fixture(scope="module")
def frames(source_frames):
    return source_frames[:FRAMES]


def ours(idm, frames, sources=None, seed=0, negative=""):
    """vsynth's frame-wise generation (all frames in one batch, or ``batch_size`` chunks), as (F, C, h, w)."""
    sources = Sources(video=frames) if sources is None else sources
    inputs = BridgeInputs(
        frames=len(frames), height=frames.shape[1], width=frames.shape[2], steps=STEPS, guidance=GUIDANCE, vdm_steps=STEPS,
        vdm_guidance=GUIDANCE, prompt=PROMPT, image_prompt=PROMPT, negative_prompt=negative, sources=sources,
        frame_inputs=idm.prepare(sources),
    )  # fmt: skip
    return idm.generate(inputs, torch.Generator().manual_seed(seed))[0].permute(1, 0, 2, 3), inputs


def components(idm):
    d = idm.denoiser
    return dict(vae=idm.codec.vae, text_encoder=d.text_encoder, text_encoder_2=d.text_encoder_2, tokenizer=d.tokenizer,
                tokenizer_2=d.tokenizer_2, unet=d.unet, scheduler=d.new_scheduler(), add_watermarker=False)  # fmt: skip


def call(pipe, n, **kwargs):
    """The pipeline on ``n`` frames in one batch, without a negative prompt (SDXL then zeroes it, as vsynth's empty one)."""
    return pipe(
        prompt=[PROMPT] * n, num_inference_steps=STEPS, guidance_scale=GUIDANCE, output_type="latent",
        generator=torch.Generator().manual_seed(0), **kwargs,
    ).images  # fmt: skip


def test_sdxl_text_to_image_equals_stable_diffusion_xl_pipeline(frames):
    idm = load_tiny("sdxl")
    latents, _ = ours(idm, frames, sources=Sources())
    reference = call(StableDiffusionXLPipeline(**components(idm)), FRAMES, height=64, width=64)
    assert latents.shape == (FRAMES, 4, 8, 8)
    torch.testing.assert_close(latents, reference, **TOL)
    assert not torch.allclose(reference[0], reference[1], atol=1e-3)  # each frame has its own noise
    # a negative prompt is encoded by both encoders, not zeroed
    negative = call(StableDiffusionXLPipeline(**components(idm)), FRAMES, height=64, width=64, negative_prompt=["blurry"] * FRAMES)
    torch.testing.assert_close(ours(idm, frames, sources=Sources(), negative="blurry")[0], negative, **TOL)
    assert not torch.allclose(negative, reference, atol=1e-3)


def test_sdxl_sdedit_equals_img2img_pipeline(frames):
    idm = load_tiny("sdxl", strength=0.5)
    pipe = StableDiffusionXLImg2ImgPipeline(**components(idm), requires_aesthetics_score=False)
    reference = call(pipe, FRAMES, image=[Image.fromarray(f) for f in frames], strength=0.5)
    torch.testing.assert_close(ours(idm, frames)[0], reference, **TOL)


def test_sdxl_controlnet_equals_its_pipeline_and_chunks_match(frames):
    idm = load_tiny("controlnet-sdxl-canny")
    latents, inputs = ours(idm, frames)
    d = idm.denoiser
    pipe = StableDiffusionXLControlNetPipeline(controlnet=d.controlnet, **components(idm))
    reference = call(pipe, FRAMES, image=inputs.frame_inputs.extras["control"], height=64, width=64)
    torch.testing.assert_close(latents, reference, **TOL)
    torch.testing.assert_close(ours(load_tiny("controlnet-sdxl-canny", batch_size=1), frames)[0], reference, **TOL)
    # the control matters, and the image-side inversion runs SDXL's plain UNet
    assert not torch.allclose(ours(load_tiny("controlnet-sdxl-canny", conditioning_scale=0.0), frames)[0], reference, atol=1e-3)
    assert idm.inversion_denoiser.unet is d.unet and not hasattr(idm.inversion_denoiser, "controlnet")
    assert list(idm.offload_units()) == ["text_encoder", "text_encoder_2", "unet", "vae"]  # --offload model moves both encoders


def test_sdxl_latents_are_their_own_space():
    sdxl, zeroscope = load_tiny("sdxl"), load_tiny("zeroscope")
    assert sdxl.codec.scale == 0.13025 and sdxl.spec.latent_space.name == "sdxl-vae" != zeroscope.spec.latent_space.name


def test_controlnet_sdxl_depth_with_zeroscope_encapsulated_writes_every_output(tmp_path):
    out = tmp_path / "out"
    result = run_cli("run", "--tiny", "--idm", "controlnet-sdxl-depth", "--vdm", "zeroscope", "--bridge", "encapsulated",
                     "--video", str(SAMPLE_VIDEO), "--prompt", "a red ball", "--frames", str(FRAMES), "--height", "64",
                     "--width", "64", "--steps", "4", "--quiet", "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    # what the bridge makes of a source video: no IDM-only frames (the IDM refines the source around the [T2V] block)
    assert {p.name for p in out.iterdir()} == {"video.mp4", "video.gif", "condition.mp4", "grid.png", "run.json"}
    for name in ("video.mp4", "condition.mp4"):
        info = videoio.probe_video(out / name)
        assert (info.num_frames, info.height, info.width) == (FRAMES, 64, 64)
    record = json.loads((out / "run.json").read_text())
    # the SDXL latents reach ZeroScope through pixels and come back the same way
    assert record["codecs"]["idm"]["latent_space"] == "sdxl-vae" and record["codecs"]["vdm"]["latent_space"] == "sd-vae"
    assert record["codecs"]["vdm"]["encoded_frames"] >= FRAMES and record["codecs"]["vdm"]["decoded_frames"] >= FRAMES


def test_mixed_inversion_with_an_sd_space_vdm_inverts_the_video_side_only(tmp_path):
    args = ["run", "--tiny", "--idm", "sdxl", "--vdm", "zeroscope", "--prompt", "a red ball", "--frames", str(FRAMES),
            "--height", "64", "--width", "64", "--steps", "2", "--quiet"]  # fmt: skip
    result = run_cli(*args, "--out", str(tmp_path / "default"))
    assert result.exit_code == 0, result.stderr
    record = json.loads((tmp_path / "default" / "run.json").read_text())
    assert record["bridge"]["params"]["mixing_ratio"] == 0.0 and "image inversion" not in record["timings"]
    assert "only the video-side inversion runs" in result.stderr  # the default ratio 1.0 became 0, said so
    refused = run_cli(*args, "-o", "mixing_ratio=1", "--out", str(tmp_path / "refused"))
    assert refused.exit_code == 2 and "sdxl-vae" in refused.stderr and not (tmp_path / "refused").exists()


def test_models_lists_the_sdxl_models_with_sizes_and_guidance():
    listing = json.loads(run_cli("models", "--json", "--kind", "idm").stdout)
    sizes = {r["name"]: r["size_gb"] for r in listing}
    assert sizes["sdxl"] == 13.88 and sizes["controlnet-sdxl-canny"] == 18.88 and sizes["controlnet-sdxl-depth"] > 18.88
    shown = run_cli("models", "sdxl").stdout
    assert "guidance: classifier-free" in shown and "latent_space" in shown and "solver: euler" in shown


def test_the_planner_counts_sdxl_weights_once_and_its_activations_at_1024():
    """The four SDXL files at float16 (its VAE upcast to float32), the second text encoder a unit of its own, shared
    like the first; activations by SDXL's measured bound: 24 * 320 * 16 * 128 * 128 * 2 bytes (1.88 GiB)."""
    from vsynth.core.host.registry import get_registry
    from vsynth.core.run import memory
    from vsynth.testing.fake_hub import layouts

    spec = get_registry().model("sdxl")
    files = layouts()[spec.weights[0].id]["files"]
    estimate = memory.estimate({"idm": spec}, {"idm": {"base": spec.weights[0].id}}, {"idm": spec.params()}, frames=8,
                               height=1024, width=1024, guidance={"idm": 7.5}, dtype="float16", device="cpu", offload="none")  # fmt: skip
    half = sum(files[f"{c}/{n}"] // 4 * 2 for c, n in (("unet", "diffusion_pytorch_model.safetensors"),
                                                      ("text_encoder", "model.safetensors"), ("text_encoder_2", "model.safetensors")))  # fmt: skip
    assert estimate.weights == half + files["vae/diffusion_pytorch_model.safetensors"]
    assert {p.unit for p in estimate.parts} == {"idm.unet", "idm.vae", "idm.text_encoder", "idm.text_encoder_2"}
    unet = memory._unet_activations(spec, spec.params(), {"block_out_channels": [320], "addition_embed_type": "text_time"},
                                    {"block_out_channels": [128, 256, 512, 512]}, 8, 1024, 1024, 7.5, 2)  # fmt: skip
    assert unet == 24 * 320 * 16 * 128 * 128 * 2


def test_sdxl_samples_with_its_repos_euler_and_ddim_is_sd15s():
    """The default is the checkpoint's own Euler; --idm-scheduler ddim is SD1.5's DDIM on the same training schedule."""
    from diffusers import DDIMScheduler

    from vsynth.core.diffusion import solvers
    from vsynth.core.diffusion.schedules import SD15_DDIM
    from vsynth.testing.fake_hub import real_config

    scheduler = load_tiny("sdxl").denoiser.scheduler
    real = real_config("stabilityai/stable-diffusion-xl-base-1.0", "scheduler/scheduler_config.json")
    assert type(scheduler).__name__ == real["_class_name"]
    assert all(scheduler.config[k] == v for k, v in real.items() if not k.startswith("_"))
    ddim = solvers.build("ddim", scheduler)
    assert {k: ddim.config[k] for k in SD15_DDIM} == {k: DDIMScheduler(**SD15_DDIM).config[k] for k in SD15_DDIM}
