"""CogVideoX 2b and 5b on the tiny models: equal to CogVideoXPipeline (DDIM; DPM with dynamic guidance) and to
CogVideoXVideoToVideoPipeline, in every bridge, with the frame and size rules of the real checkpoints."""

import json

import pytest
import torch
from PIL import Image

import vsynth
from tests.conftest import SAMPLE_VIDEO
from vsynth.core.media.video import read_video
from vsynth.tiny import tiny_weights

TINY = dict(tiny=True, frames=5, height=64, width=64, steps=3, prompt="a red ball", seed=11)
PIPELINE = dict(prompt="a red ball", height=64, width=64, num_frames=5, num_inference_steps=3, output_type="latent")


def pipeline(cls_name: str, tiny: str, scheduler: str | None = None):
    import diffusers

    pipe = getattr(diffusers, cls_name).from_pretrained(tiny_weights(tiny)).to(torch.float32)
    if scheduler is not None:
        pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config)
    return pipe


def as_ours(frames: torch.Tensor) -> torch.Tensor:
    """CogVideoX's pipelines return latents (B, F, C, H, W); vsynth's are (B, C, F, H, W)."""
    return frames.permute(0, 2, 1, 3, 4)


@pytest.mark.parametrize(
    "name, scheduler, dynamic",
    [("cogvideox-2b", None, False), ("cogvideox-5b", "CogVideoXDPMScheduler", True)],  # 5b: THUDM's DPM, dynamic guidance, RoPE
)
def test_text_to_video_equals_cogvideox_pipeline(name, scheduler, dynamic):
    options = {"dynamic_cfg": True} if dynamic else {}
    ours = vsynth.run(vdm=name, bridge="none", vdm_scheduler="dpm++" if scheduler else None, options=options, **TINY)
    theirs = pipeline("CogVideoXPipeline", name, scheduler)(**PIPELINE, use_dynamic_cfg=dynamic, generator=torch.Generator().manual_seed(11)).frames
    torch.testing.assert_close(ours.latents, as_ours(theirs), rtol=1e-4, atol=1e-4)
    sampling = json.loads((ours.out_dir / "run.json").read_text())["models"]["vdm"]["sampling"] if ours.out_dir else None
    assert sampling is None or sampling["process"] == "vp-v"


def test_vdm_only_equals_cogvideox_video_to_video_pipeline():
    ours = vsynth.run(vdm="cogvideox-2b", bridge="vdm-only", video=SAMPLE_VIDEO, options={"t2v_strength": 0.7}, **TINY).latents
    frames = read_video(SAMPLE_VIDEO, frames=5, stride=4, size=(64, 64)).frames
    settings = {k: v for k, v in PIPELINE.items() if k != "num_frames"}  # the video's frames
    theirs = pipeline("CogVideoXVideoToVideoPipeline", "cogvideox-2b")(
        **settings, video=[Image.fromarray(f) for f in frames], strength=0.7, generator=torch.Generator().manual_seed(11)
    ).frames
    torch.testing.assert_close(ours, as_ours(theirs), rtol=1e-4, atol=1e-4)
