"""AnimateDiff-SDXL (issue 26): equal to AnimateDiffSDXLPipeline on the tiny weights, built on the SDXL image models'
own UNet tensors, VAE and text encoders, so that Mixed Inversion mixes both inversions with SDXL IDMs as it does
for SD1.5 with AnimateDiff."""

import json

import pytest
import torch

import vsynth
from tests.conftest import SAMPLE_VIDEO
from vsynth.testing import load_tiny_model, run_cli

TINY = dict(tiny=True, frames=4, height=64, width=64, steps=3, prompt="a red ball", seed=11)


def test_text_to_video_equals_animatediff_sdxl_pipeline(tmp_path):
    from diffusers import AnimateDiffSDXLPipeline, DDIMScheduler

    from vsynth.testing.fake_hub import real_config

    model = load_tiny_model("animatediff-sdxl")
    d = model.motion
    # the scheduler of diffusers' example: DDIMScheduler.from_pretrained(SDXL base, subfolder="scheduler", ...)
    example = DDIMScheduler.from_config(real_config("stabilityai/stable-diffusion-xl-base-1.0", "scheduler/scheduler_config.json"),
                                        clip_sample=False, timestep_spacing="linspace", beta_schedule="linear", steps_offset=1)  # fmt: skip
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(d.scheduler.config) == public(example.config)
    pipe = AnimateDiffSDXLPipeline(vae=model.codec.vae, text_encoder=d.text_encoder, text_encoder_2=d.text_encoder_2, tokenizer=d.tokenizer,
                                   tokenizer_2=d.tokenizer_2, unet=d.unet, motion_adapter=None, scheduler=d.new_scheduler())  # fmt: skip
    theirs = pipe(prompt=TINY["prompt"], num_frames=4, height=64, width=64, num_inference_steps=3, guidance_scale=7.5, output_type="latent",
                  generator=torch.Generator().manual_seed(TINY["seed"])).frames  # fmt: skip
    result = vsynth.run(vdm="animatediff-sdxl", bridge="none", out=tmp_path / "out", **TINY)
    ours = result.latents
    assert ours.shape == (1, 4, 4, 8, 8)
    assert {p.name for p in result.out_dir.iterdir()} == {"video.mp4", "video.gif", "grid.png", "run.json"}
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(theirs[:, :, 0], theirs[:, :, 1], atol=1e-3)


def test_it_holds_the_sdxl_idms_unet_tensors_vae_and_text_encoders():
    idm, vdm = load_tiny_model("controlnet-sdxl-depth"), load_tiny_model("animatediff-sdxl")
    storages = lambda module: {p.untyped_storage().data_ptr() for p in module.parameters()}  # noqa: E731
    assert storages(idm.denoiser.unet) <= storages(vdm.motion.unet)  # one SDXL UNet in memory, not two
    assert vdm.codec.vae is idm.codec.vae and vdm.spec.latent_space == idm.spec.latent_space
    assert vdm.motion.text_encoder is idm.denoiser.text_encoder and vdm.motion.text_encoder_2 is idm.denoiser.text_encoder_2
    assert list(vdm.offload_units()) == ["text_encoder", "text_encoder_2", "unet", "vae"]


def test_mixed_inversion_mixes_both_inversions_with_an_sdxl_idm(tmp_path):
    out = tmp_path / "out"
    result = run_cli("run", "--tiny", "--idm", "controlnet-sdxl-depth", "--vdm", "animatediff-sdxl", "--bridge", "mixed-inversion",
                     "-o", "mixing_ratio=0.5", "--video", str(SAMPLE_VIDEO), "--prompt", "a red ball", "--frames", "4",
                     "--height", "64", "--width", "64", "--steps", "3", "--quiet", "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "only the video-side inversion" not in result.stderr
    assert {p.name for p in out.iterdir()} == {"video.mp4", "video.gif", "idm_frames.mp4", "condition.mp4", "grid.png", "run.json"}
    record = json.loads((out / "run.json").read_text())
    assert record["bridge"]["params"]["mixing_ratio"] == 0.5
    assert {"image inversion", "video inversion"} <= set(record["timings"])
    assert record["nfe"]["idm"] == 6 and record["nfe"]["vdm"] == 6  # generation + image inversion; video inversion + smoothing
    # one latent space: the IDM's latents reach the VDM as they are, never through pixels
    assert record["codecs"]["vdm"]["latent_space"] == "sdxl-vae" and record["codecs"]["vdm"]["encoded_frames"] == 0


@pytest.mark.parametrize("idm, bridge, video", [("controlnet-canny", "mixed-inversion", True), ("sd15", "encapsulated", False)])
def test_sd_space_idms_reach_it_through_pixels_and_write_every_output(idm, bridge, video, tmp_path):
    settings = dict(TINY, idm=idm, vdm="animatediff-sdxl", bridge=bridge, out=tmp_path / "out", **({"video": SAMPLE_VIDEO} if video else {}))
    if bridge == "mixed-inversion":
        with pytest.warns(vsynth.errors.VsynthWarning, match="only the video-side inversion runs"):
            result = vsynth.run(**settings)
    else:
        result = vsynth.run(**settings)
    files = {p.name for p in result.out_dir.iterdir()}
    assert {"video.mp4", "video.gif", "grid.png", "run.json"} <= files
    assert ("idm_frames.mp4" in files) == video and ("t2v_frames.mp4" in files) == (not video)
    record = json.loads((result.out_dir / "run.json").read_text())
    assert record["codecs"]["idm"]["latent_space"] == "sd-vae" and record["codecs"]["vdm"]["latent_space"] == "sdxl-vae"
    assert result.frames.shape == (4, 64, 64, 3)


def test_models_lists_it_with_its_size_and_sdxls_latent_space():
    listing = {r["name"]: r for r in json.loads(run_cli("models", "--json", "--kind", "vdm").stdout)}
    assert listing["animatediff-sdxl"]["size_gb"] == pytest.approx(0.95 + 13.88)
    shown = run_cli("models", "animatediff-sdxl").stdout
    assert "sdxl-vae" in shown and "guoyww/animatediff-motion-adapter-sdxl-beta" in shown


def test_the_planner_counts_the_sdxl_unet_it_shares_with_an_sdxl_idm_once():
    from vsynth.core.host.registry import get_registry
    from vsynth.core.run import memory

    registry = get_registry()
    specs = {"idm": registry.model("controlnet-sdxl-depth"), "vdm": registry.model("animatediff-sdxl")}
    sources = {role: {w.role: w.id for w in spec.weights} for role, spec in specs.items()}
    estimate = memory.estimate(specs, sources, {role: spec.params() for role, spec in specs.items()}, frames=16, height=1024, width=1024,
                               guidance={"idm": 7.5, "vdm": 7.5}, dtype="float16", device="cpu", offload="none")  # fmt: skip
    keys = [p.key for p in estimate.parts]
    assert sum(k.endswith("unet/diffusion_pytorch_model.safetensors") for k in keys) == 1
    assert next(p for p in estimate.parts if "motion-adapter-sdxl" in p.key).bytes == 236_779_200 * 2  # layouts.json's count
