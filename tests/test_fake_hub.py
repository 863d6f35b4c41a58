"""Every default hub id loads through `vsynth run` (no --tiny) from an offline cache with its real layout.

The cache holds the real configs and file names of :mod:`vsynth.configs` with random weights, at
the reduced scale of :mod:`vsynth.testing.fake_hub`. A handful of runs covers every id; each id's
test checks that its run succeeded and recorded that id as the weights it loaded.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.benchmark_scripts import load_benchmark
from vsynth.core.host.registry import get_registry
from vsynth.testing import run_cli, sample_frames
from vsynth.testing.fake_hub import build_fake_hub, layouts, offline_hub, real_config, snapshot_dir

# Each run loads the ids listed for it; together they load every default id once or more.
RUNS = {
    "controlnet-depth+zeroscope": ["--idm", "controlnet-depth", "--vdm", "zeroscope"],
    "controlnet-canny+modelscope": ["--idm", "controlnet-canny", "--vdm", "modelscope"],
    "controlnet-openpose+animatediff": ["--idm", "controlnet-openpose", "--vdm", "animatediff", "--condition-video", "{poses}"],
    "t2i-adapter-canny+lightning": ["--idm", "t2i-adapter-canny", "--vdm", "animatediff-lightning", "-o", "vdm.checkpoint_steps=1"],
    "t2i-adapter-depth+zeroscope": ["--idm", "t2i-adapter-depth", "--vdm", "zeroscope"],
    "instruct-pix2pix+zeroscope": ["--idm", "instruct-pix2pix", "--vdm", "zeroscope", "--idm-prompt", "make it red"],
    "sd-inpaint+zeroscope": ["--idm", "sd-inpaint", "--vdm", "zeroscope", "--mask", "{mask}"],
    "canny+wan2.1-1.3b": ["--idm", "controlnet-canny", "--vdm", "wan2.1-t2v-1.3b"],
    **{name: ["--vdm", vdm, "--bridge", "vdm-only", "-o", "t2v_strength=1"]
       for name, vdm in (("wan2.1-14b", "wan2.1-t2v-14b"), ("wan2.2-ti2v", "wan2.2-ti2v-5b"), ("wan2.2-a14b", "wan2.2-t2v-a14b"))},
    "vace-1.3b": ["--vdm", "wan2.1-vace-1.3b", "--bridge", "none"],
    "vace-14b": ["--vdm", "wan2.1-vace-14b", "--bridge", "none", "--mask", "{mask}"],
    "controlnet-sdxl-depth+zeroscope": ["--idm", "controlnet-sdxl-depth", "--vdm", "zeroscope"],
    "controlnet-sdxl-canny+zeroscope": ["--idm", "controlnet-sdxl-canny", "--vdm", "zeroscope"],
    "flux-dev+zeroscope": ["--idm", "flux-dev", "--vdm", "zeroscope"],
    "flux-schnell+zeroscope": ["--idm", "flux-schnell", "--vdm", "zeroscope"],
    "flux-canny+zeroscope": ["--idm", "flux-canny", "--vdm", "zeroscope"],
    "flux-depth+zeroscope": ["--idm", "flux-depth", "--vdm", "zeroscope"],
    "flux-fill+zeroscope": ["--idm", "flux-fill", "--vdm", "zeroscope", "--mask", "{mask}"],
    "flux-kontext+zeroscope": ["--idm", "flux-kontext", "--vdm", "zeroscope", "--idm-prompt", "make it red"],
    "ltx-video": ["--vdm", "ltx-video", "--bridge", "none", "--vdm-steps", "2"],  # its schedule needs 2 steps
    "controlnet-sdxl-canny+animatediff-sdxl": ["--idm", "controlnet-sdxl-canny", "--vdm", "animatediff-sdxl", "-o", "mixing_ratio=0.5"],
    "hunyuanvideo": ["--vdm", "hunyuanvideo", "--bridge", "vdm-only", "-o", "t2v_strength=1"],
    "cogvideox-2b": ["--vdm", "cogvideox-2b", "--bridge", "vdm-only", "-o", "t2v_strength=1"],
    "canny+cogvideox-5b": ["--idm", "controlnet-canny", "--vdm", "cogvideox-5b"],
}
RUN_OF_ID = {
    "stable-diffusion-v1-5/stable-diffusion-v1-5": "controlnet-depth+zeroscope",
    "lllyasviel/control_v11f1p_sd15_depth": "controlnet-depth+zeroscope",
    "Intel/dpt-hybrid-midas": "controlnet-depth+zeroscope",
    "cerspense/zeroscope_v2_576w": "controlnet-depth+zeroscope",
    "lllyasviel/control_v11p_sd15_canny": "controlnet-canny+modelscope",
    "ali-vilab/text-to-video-ms-1.7b": "controlnet-canny+modelscope",
    "lllyasviel/control_v11p_sd15_openpose": "controlnet-openpose+animatediff",
    "guoyww/animatediff-motion-adapter-v1-5-2": "controlnet-openpose+animatediff",
    "TencentARC/t2iadapter_canny_sd15v2": "t2i-adapter-canny+lightning",
    "ByteDance/AnimateDiff-Lightning": "t2i-adapter-canny+lightning",
    "TencentARC/t2iadapter_depth_sd15v2": "t2i-adapter-depth+zeroscope",
    "timbrooks/instruct-pix2pix": "instruct-pix2pix+zeroscope",
    "stable-diffusion-v1-5/stable-diffusion-inpainting": "sd-inpaint+zeroscope",
    "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": "canny+wan2.1-1.3b",
    "Wan-AI/Wan2.1-T2V-14B-Diffusers": "wan2.1-14b",
    "Wan-AI/Wan2.2-TI2V-5B-Diffusers": "wan2.2-ti2v",
    "Wan-AI/Wan2.2-T2V-A14B-Diffusers": "wan2.2-a14b",
    "Wan-AI/Wan2.1-VACE-1.3B-diffusers": "vace-1.3b",
    "Wan-AI/Wan2.1-VACE-14B-diffusers": "vace-14b",
    "stabilityai/stable-diffusion-xl-base-1.0": "controlnet-sdxl-depth+zeroscope",
    "diffusers/controlnet-depth-sdxl-1.0": "controlnet-sdxl-depth+zeroscope",
    "diffusers/controlnet-canny-sdxl-1.0": "controlnet-sdxl-canny+zeroscope",
    "black-forest-labs/FLUX.1-dev": "flux-dev+zeroscope",
    "black-forest-labs/FLUX.1-schnell": "flux-schnell+zeroscope",
    "black-forest-labs/FLUX.1-Canny-dev": "flux-canny+zeroscope",
    "black-forest-labs/FLUX.1-Depth-dev": "flux-depth+zeroscope",
    "black-forest-labs/FLUX.1-Fill-dev": "flux-fill+zeroscope",
    "black-forest-labs/FLUX.1-Kontext-dev": "flux-kontext+zeroscope",
    "Lightricks/LTX-Video": "ltx-video",
    "guoyww/animatediff-motion-adapter-sdxl-beta": "controlnet-sdxl-canny+animatediff-sdxl",
    "hunyuanvideo-community/HunyuanVideo": "hunyuanvideo",
    "THUDM/CogVideoX-2b": "cogvideox-2b",
    "THUDM/CogVideoX-5b": "canny+cogvideox-5b",
}


def _default_hub_ids() -> set[str]:
    return {w.id for spec in get_registry().models.values() if spec.plugin == "vsynth" for w in spec.weights}


@pytest.fixture(scope="session")
def hub_runs(tmp_path_factory):
    """run name -> (exit code, output, run.json), each run made once, lazily, against one fake cache."""
    root = tmp_path_factory.mktemp("fake-hub")
    cache = build_fake_hub(root / "hub")
    frames = sample_frames(2, 64, 64)
    mask = np.zeros_like(frames)
    mask[:, 16:48, 16:48] = 255
    from vsynth.core.media.video import write_mp4

    inputs = {"video": root / "video.mp4", "poses": root / "poses.mp4", "mask": root / "mask.mp4"}
    for name, content in (("video", frames), ("poses", frames), ("mask", mask)):
        write_mp4(inputs[name], content, 8.0)
    done = {}

    def run(name):
        if name not in done:
            args = [str(a).format(**inputs) for a in RUNS[name]]
            if "--condition-video" not in args:
                args += ["--video", inputs["video"]]
            out = root / name
            with offline_hub(cache):
                result = run_cli("run", *args, "--prompt", "a ball", "--frames", 2, "--stride", 1, "--height", 64,
                                 "--width", 64, "--steps", 1, "--out", out, "--quiet")  # fmt: skip
            record = json.loads((out / "run.json").read_text()) if result.exit_code == 0 else None
            done[name] = (result.exit_code, result.output, record)
        return done[name]

    return run


def test_every_default_id_has_a_layout_and_a_run():
    assert _default_hub_ids() == set(layouts()) == set(RUN_OF_ID)


@pytest.mark.parametrize("hub_id", sorted(RUN_OF_ID))
def test_default_id_loads_from_an_offline_cache_without_tiny(hub_runs, hub_id):
    code, output, record = hub_runs(RUN_OF_ID[hub_id])
    assert code == 0, output
    loaded = {source for model in record["models"].values() for source in model["weights"].values()}
    assert hub_id in loaded


def test_fake_snapshot_has_the_real_file_names_and_configs(tmp_path):
    cache = build_fake_hub(tmp_path, ["stable-diffusion-v1-5/stable-diffusion-v1-5"], scale="reduced")
    snapshot = snapshot_dir(cache, "stable-diffusion-v1-5/stable-diffusion-v1-5")
    assert (snapshot.parents[1] / "refs" / "main").read_text() == snapshot.name
    files = {str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file()}
    assert files <= set(layouts()["stable-diffusion-v1-5/stable-diffusion-v1-5"]["files"])
    assert {"unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors", "tokenizer/vocab.json"} <= files
    unet = json.loads((snapshot / "unet" / "config.json").read_text())
    real = real_config("stable-diffusion-v1-5/stable-diffusion-v1-5", "unet/config.json")
    changed = {k for k in real if unet.get(k) != real[k]}
    assert changed == {"block_out_channels", "cross_attention_dim"}  # only widths are reduced
    assert Path(snapshot / "scheduler" / "scheduler_config.json").read_text() == json.dumps(
        real_config("stable-diffusion-v1-5/stable-diffusion-v1-5", "scheduler/scheduler_config.json"), indent=2
    ) + "\n"


def test_real_scale_benchmark_measures_every_stage(tmp_path, capsys):
    """benchmarks/real_scale.py on a reduced-scale cache (the full size is its job, not the suite's)."""
    benchmark = load_benchmark("real_scale")
    cache = build_fake_hub(tmp_path / "hub", benchmark.REPOS)
    figures = benchmark.main(["--cache", str(cache), "--device", "cpu", "--sizes", "32x32x2"])
    assert [row["model"].split()[0] for row in figures["loads"]] == ["controlnet-canny", "zeroscope", "animatediff"]
    networks = ["SD1.5 UNet (IDM)", "ControlNet", "VAE decode", "ZeroScope UNet3D", "AnimateDiff motion UNet"]
    assert [row["network"] for row in figures["evals"]] == networks
    assert all(row["per_frame_s"] > 0 and row["peak_mb"] > 0 for row in figures["evals"])
    assert "| AnimateDiff motion UNet | 32x32 | 2 |" in capsys.readouterr().out
