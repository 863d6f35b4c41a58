"""Where and how a run computes: --dtype, --offload, --compile, VAE upcast and tiling, SDPA attention,
and the memory planner that checks a run against the device's free memory before anything loads.

No GPU is available to the suite: offloading is exercised on the CPU as its own execution device,
which checks the wiring (which networks are hooked, in which units, moved in which order, and that
the output does not change), not the transfers themselves.
"""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tests.conftest import SAMPLE_VIDEO
from vsynth.cli import cli
from vsynth.core.run import memory, pipeline
from vsynth.core.run.config import RunConfig
from vsynth.core.run.pipeline import execute, plan_run
from vsynth.errors import InsufficientMemoryError, InvalidParamsError, VsynthInputError

TINY = dict(tiny=True, frames=2, height=64, width=64, steps=2)
CANNY = dict(idm="controlnet-canny", vdm="zeroscope", video=SAMPLE_VIDEO, prompt="a red ball", **TINY)
GiB = 2**30


def _run(tmp_path, name="out", **values):
    return execute(plan_run(RunConfig(**{**CANNY, "out": tmp_path / name, **values})))


# ------------------------------------------------------------------ settings and their checks


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"offload": "model"}, "--offload model: offloading keeps weights in host memory for a GPU, and this run is on the CPU"),
        ({"offload": "sequential", "device": "cpu"}, "--offload sequential: offloading"),
    ],
)
def test_offload_on_the_cpu_is_refused_in_one_line(tmp_path, values, expected):
    with pytest.raises(VsynthInputError) as caught:
        plan_run(RunConfig(**{**CANNY, "out": tmp_path / "out", **values}))
    assert str(caught.value).startswith(expected) and "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_unknown_dtype_and_offload_are_refused_by_name():
    with pytest.raises(InvalidParamsError, match="--dtype float8: must be one of 'auto', 'float16', 'bfloat16' or 'float32'"):
        RunConfig(**{**CANNY, "dtype": "float8"})
    with pytest.raises(InvalidParamsError, match="--offload gpu: must be one of"):
        RunConfig(**{**CANNY, "offload": "gpu"})


def test_run_json_records_the_runtime_settings_and_the_estimate(tmp_path):
    report = _run(tmp_path)
    record = json.loads((report.out_dir / "run.json").read_text())
    assert (record["device"], record["dtype"], record["offload"], record["compile"], record["vae_tiling"]) == ("cpu", "float32", "none", False, False)
    assert record["config"]["dtype"] == "auto" and record["config"]["memory_check"] is True
    estimate = record["memory"]
    assert estimate["estimated_peak_mb"] > estimate["weights_mb"] > 0 and estimate["free_source"] == "MemAvailable in /proc/meminfo"


def test_bfloat16_runs_on_the_cpu_and_keeps_the_scheduler_in_float32(tmp_path):
    report = _run(tmp_path, dtype="bfloat16")
    assert report.record["dtype"] == "bfloat16" and report.latents.dtype == torch.bfloat16
    assert np.isfinite(report.latents.float().numpy()).all() and report.frames.std() > 0
    models = report.loaded.models
    assert {p.dtype for p in models["idm"].denoiser.unet.parameters()} == {torch.bfloat16}
    assert models["vdm"].denoiser.scheduler.alphas_cumprod.dtype == torch.float32
    assert models["vdm"].codec.vae.dtype == torch.bfloat16  # only float16 upcasts, as in diffusers


def test_a_float16_vae_that_asks_for_it_runs_in_float32_and_returns_float16_latents(tmp_path):
    report = _run(tmp_path, dtype="float16")
    codec = report.loaded.models["idm"].codec
    assert codec.vae.config.force_upcast and codec.vae.dtype == torch.float32 and codec.dtype == torch.float16
    assert report.loaded.models["idm"].denoiser.unet.dtype == torch.float16
    assert codec.encode(np.zeros((1, 64, 64, 3), np.uint8)).dtype == torch.float16
    assert np.isfinite(report.latents.float().numpy()).all()


def test_the_vae_tiles_frames_above_768_pixels_only(tmp_path):
    from vsynth.core.diffusion.components import TILE_ABOVE

    codec = _run(tmp_path).loaded.models["vdm"].codec
    assert TILE_ABOVE == 768
    assert codec.set_tiling(768, 512) is False and not codec.vae.use_tiling
    assert codec.set_tiling(512, 1024) is True and codec.vae.use_tiling


def test_every_attention_runs_on_pytorch_sdpa(tmp_path):
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    report = _run(tmp_path)
    for model in report.loaded.models.values():
        for network in [n for unit in model.offload_units().values() for n in unit]:
            processors = {type(m.processor) for m in network.modules() if isinstance(m, Attention)}
            assert processors <= {AttnProcessor2_0}, (type(network).__name__, processors)


@pytest.mark.filterwarnings("ignore:--compile on the CPU")  # said to users; expected here
def test_compile_compiles_the_unets_in_place(tmp_path, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(self))
    report = _run(tmp_path, compile=True)
    unets = [u for m in report.loaded.models.values() for u in m.unets()]
    assert len(unets) == 2 and report.record["compile"] is True
    # regional compilation where diffusers declares repeated blocks (SD1.5's UNet: its transformer blocks), else whole (UNet3D)
    blocks = [m for m in unets[0].modules() if type(m).__name__ == "BasicTransformerBlock"]
    assert blocks and compiled == [*blocks, unets[1]]
    assert report.record["accel"]["idm"]["compiled"] == ["UNet2DConditionModel: repeated blocks (BasicTransformerBlock)"]
    assert report.record["accel"]["vdm"]["compiled"] == ["UNet3DConditionModel: whole"]


# ------------------------------------------------------------------ offload, wired on the CPU


def _offloaded(tmp_path, mode):
    """A run whose plan asks for ``mode`` offload on the CPU (validation refuses it there; the wiring is the same)."""
    plan = plan_run(RunConfig(**{**CANNY, "out": tmp_path / mode}))
    plan.config = plan.config.model_copy(update={"offload": mode})
    return execute(plan)


def test_model_offload_hooks_every_network_once_in_units_and_moves_them_in_use_order(tmp_path):
    plain = _run(tmp_path, "plain")
    report = _offloaded(tmp_path, "model")
    offload = report.loaded.offload
    models = report.loaded.models
    idm = models["idm"]
    assert list(offload.units) == ["idm.text_encoder", "idm.unet", "idm.vae", "vdm.text_encoder", "vdm.unet", "vdm.vae"]
    assert offload.units["idm.unet"] == [idm.denoiser.unet, idm.denoiser.controlnet]  # the ControlNet moves with its UNet
    # BIVDiff: frame-wise generation, encoding, image inversion (its prompt, then the same UNet), video inversion and
    # smoothing, decoding with SD1.5's VAE
    assert offload.moves == [
        "idm.text_encoder", "idm.unet", "idm.vae", "idm.text_encoder", "idm.unet", "vdm.text_encoder", "vdm.unet", "idm.vae"
    ]  # fmt: skip
    assert offload.resident is None  # all back on the CPU after the run
    assert np.array_equal(report.frames, plain.frames) and torch.equal(report.latents, plain.latents)


def test_a_shared_vae_is_hooked_once(tmp_path):
    plan = plan_run(RunConfig(idm="sd15", vdm="animatediff", prompt="a red ball", out=tmp_path / "o", **TINY))
    plan.config = plan.config.model_copy(update={"offload": "model"})
    report = execute(plan)
    models = report.loaded.models
    assert models["idm"].codec.vae is models["vdm"].codec.vae
    assert "vdm.vae" not in report.loaded.offload.units and "vdm.text_encoder" not in report.loaded.offload.units


def test_sequential_offload_gives_the_same_output(tmp_path):
    plain = _run(tmp_path, "plain")
    report = _offloaded(tmp_path, "sequential")
    unet = report.loaded.models["vdm"].denoiser.unet
    assert {p.device.type for p in unet.parameters()} == {"meta"}  # weights wait in host memory, off the module
    assert report.loaded.models["vdm"].denoiser.device == torch.device("cpu")
    assert np.array_equal(report.frames, plain.frames) and torch.allclose(report.latents, plain.latents)


# ------------------------------------------------------------------ the memory planner


def test_the_estimate_counts_weights_from_the_files_and_shared_components_once():
    from diffusers import UNet2DConditionModel

    plan = plan_run(RunConfig(idm="sd15", vdm="animatediff", prompt="a red ball", **TINY))
    parts = plan.memory.parts
    vaes = [p for p in parts if p.unit.endswith(".vae")]
    assert len(vaes) == 1  # SD1.5's VAE, held once for the IDM and AnimateDiff
    unet = UNet2DConditionModel.from_pretrained(plan.sources["idm"]["base"], subfolder="unet")
    idm_unet = [p for p in parts if p.unit == "idm.unet"]
    assert sum(p.elements for p in idm_unet) == sum(t.numel() for t in unet.state_dict().values())


def test_the_estimate_counts_the_sd15_unet_an_idm_shares_with_animatediff_once():
    """The loader holds one SD1.5 UNet for both (shared tensors); under --offload model each unit still moves it."""
    plan = plan_run(RunConfig(idm="sd15", vdm="animatediff", prompt="a red ball", **TINY))
    alone = plan_run(RunConfig(vdm="animatediff", prompt="a red ball", **TINY)).memory
    assert plan.memory.weights == alone.weights  # sd15 adds nothing AnimateDiff does not hold already
    assert plan.memory.peaks["model"] >= alone.peaks["model"]  # the motion unit still moves SD1.5's UNet and the adapter


def test_the_activation_formula_at_real_size():
    """SD1.5 + ZeroScope at BIVDiff's 512x512, 8 frames, guidance 7.5, float16: 34 * 320 * 16 * 64 * 64 * 2 bytes."""
    unet = memory._unet_activations(_spec("controlnet-canny"), _params("controlnet-canny"), {"block_out_channels": [320]},
                                    {"block_out_channels": [128, 256, 512, 512]}, 8, 512, 512, 7.5, 2)  # fmt: skip
    assert unet == 34 * 320 * 16 * 64 * 64 * 2  # 1.33 GiB
    vae = memory._vae_activations(_params("zeroscope"), {"block_out_channels": [128, 256, 512, 512]}, 8, 512, 512, "float16", None)
    assert vae == 8 * 480 * 128 * 64 * 64 * 4  # 7.5 GiB: 8 frames decoded at once by a float32 (upcast) VAE
    sliced = memory._vae_activations(_params("zeroscope"), {"block_out_channels": [128, 256, 512, 512]}, 8, 512, 512, "float16", 1)
    assert sliced == 480 * 128 * 64 * 64 * 4  # 0.94 GiB: one frame at a time


def _spec(name):
    from vsynth.core.host.registry import get_registry

    return get_registry().model(name)


def _params(name):
    return _spec(name).params()


def test_a_run_that_will_not_fit_is_refused_before_any_model_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "free_memory", lambda device: (1024, "faked"))
    monkeypatch.setattr(pipeline, "load_models", lambda *a: pytest.fail("loaded models"))
    with pytest.raises(InsufficientMemoryError) as caught:
        plan_run(RunConfig(**{**CANNY, "out": tmp_path / "out"}))
    message = str(caught.value)
    assert message.startswith("this run needs about ") and "on cpu" and "0 GiB are free" in message
    assert "--offload" not in message and "lower --frames" in message and message.endswith("--no-memory-check to run anyway")
    assert not (tmp_path / "out").exists()


def test_a_run_that_fits_only_with_fewer_frames_through_the_vae_at_once_gets_them(tmp_path, monkeypatch):
    values = {**CANNY, "frames": 8}
    whole = plan_run(RunConfig(**values, out=tmp_path / "whole"))
    assert whole.memory.vae_batch is None and whole.memory.fits
    monkeypatch.setattr(memory, "free_memory", lambda device: (whole.memory.peak - 1, "faked"))
    sliced = plan_run(RunConfig(**values, out=tmp_path / "sliced"))
    assert sliced.memory.vae_batch == 4 and sliced.memory.peak < whole.memory.peak  # the largest batch that fits
    from vsynth.core.diffusion.components import VaeCodec

    seen, decode = [], VaeCodec.decode
    monkeypatch.setattr(VaeCodec, "decode", lambda self, *a, **k: seen.append(self.batch_size) or decode(self, *a, **k))
    lowered, plain = execute(sliced), execute(whole)
    assert seen[0] == sliced.memory.vae_batch and seen[-1] == 8  # the planner's cap, then the codec's own
    assert np.abs(lowered.frames.astype(int) - plain.frames.astype(int)).max() <= 1  # frames decode independently
    assert json.loads((tmp_path / "sliced" / "run.json").read_text())["memory"]["vae_batch"] == sliced.memory.vae_batch


def test_the_refusal_suggests_the_offload_that_fits_on_a_gpu(monkeypatch):
    estimate = memory.MemoryEstimate("cuda:0", "none", 9 * GiB, 1 * GiB, {"none": 11 * GiB, "model": 5 * GiB, "sequential": 2 * GiB}, 7 * GiB, "faked")
    with pytest.raises(InsufficientMemoryError, match=r"needs about 11 GiB on cuda:0 \(weights 9, activations 1\) and 7 GiB are free: add --offload model \(about 5 GiB\), or lower --frames"):
        memory.check_fits(estimate)
    memory.check_fits(memory.MemoryEstimate("cuda:0", "model", 9 * GiB, GiB, estimate.peaks, 7 * GiB, "faked"))  # fits


def test_the_cli_refuses_in_one_line_with_exit_2_and_no_memory_check_overrides(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "free_memory", lambda device: (1024, "faked"))
    args = ["run", "--tiny", "--idm", "controlnet-canny", "--vdm", "zeroscope", "--video", str(SAMPLE_VIDEO), "--prompt", "a ball",
            "--frames", "2", "--height", "64", "--width", "64", "--steps", "1"]  # fmt: skip
    refused = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "a")])
    assert refused.exit_code == 2 and refused.stderr.startswith("Error: this run needs about") and refused.stderr.count("\n") == 1
    ran = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "b"), "--no-memory-check"])
    assert ran.exit_code == 0, ran.stderr
    assert "memory planner: estimated peak" in ran.stderr
    assert json.loads((tmp_path / "b" / "run.json").read_text())["memory"]["free_mb"] == 0.0
