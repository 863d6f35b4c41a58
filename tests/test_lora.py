"""LoRAs (--idm-lora, --vdm-lora, --fuse-lora) and the distillation presets, on LoRAs the tests make with peft for
the tiny Wan transformer and the tiny SD1.5 UNet, saved as diffusers' save_lora_weights saves them."""

import json

import pytest
import torch
from click.testing import CliRunner

import vsynth
from tests.conftest import SAMPLE_VIDEO
from vsynth.cli import cli
from vsynth.core.diffusion import lora
from vsynth.core.run.config import RunConfig
from vsynth.core.run.pipeline import execute, plan_run
from vsynth.errors import LoraError
from vsynth.tiny import tiny_weights

WAN = dict(vdm="wan2.1-t2v-1.3b", bridge="none", tiny=True, frames=5, height=64, width=64, steps=2, prompt="a red ball", seed=3)
SD15 = dict(idm="sd15", vdm="zeroscope", bridge="mixed-inversion", tiny=True, frames=2, height=64, width=64, steps=2, prompt="a red ball")


@pytest.fixture(scope="module")
def loras(tmp_path_factory):
    from vsynth.testing.loras import write_tiny_lora

    root = tmp_path_factory.mktemp("loras")
    return {name: write_tiny_lora(tiny, root / name) for name, tiny in (("wan", "wan2.1-t2v"), ("sd15", "sd15"))}


def test_a_wan_lora_changes_the_output_as_diffusers_wan_pipeline_loads_it(loras):
    from diffusers import WanPipeline

    plain = vsynth.run(**WAN).latents
    ours = vsynth.run(**WAN, vdm_lora=[f"{loras['wan']}:0.8"]).latents
    assert not torch.allclose(ours, plain, atol=1e-3)  # the LoRA reaches the transformer
    pipe = WanPipeline.from_pretrained(tiny_weights("wan2.1-t2v")).to(torch.float32)
    pipe.load_lora_weights(str(loras["wan"]), adapter_name="style")
    pipe.set_adapters(["style"], adapter_weights=[0.8])
    theirs = pipe(prompt="a red ball", height=64, width=64, num_frames=5, num_inference_steps=2, output_type="latent",
                  generator=torch.Generator().manual_seed(3)).frames  # fmt: skip
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    fused = execute(plan_run(RunConfig(**WAN, vdm_lora=[f"{loras['wan']}:0.8"], fuse_lora=True)), write=False)
    torch.testing.assert_close(fused.latents, ours, rtol=1e-4, atol=1e-4)  # merged into the weights: the same model
    transformer = fused.loaded.models["vdm"].unets()[0]
    assert not any("lora" in name for name, _ in transformer.named_modules())  # no adapter left to run per step


def test_the_cli_loads_an_sd15_lora_through_idm_lora_and_records_it(loras, tmp_path):
    runner = CliRunner()
    out = tmp_path / "lora"
    result = runner.invoke(cli, ["run", *_flags(SD15), "--idm-lora", str(loras["sd15"]), "--save-latents", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    plain = tmp_path / "plain"
    assert runner.invoke(cli, ["run", *_flags(SD15), "--save-latents", "--out", str(plain), "-q"]).exit_code == 0
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["idm_lora"] == [str(loras["sd15"])]
    assert record["accel"]["idm"]["loras"][0]["scale"] == 1.0 and record["accel"]["idm"]["loras"][0]["fused"] is False
    from safetensors.torch import load_file

    assert not torch.allclose(load_file(out / "latents.safetensors")["latents"], load_file(plain / "latents.safetensors")["latents"], atol=1e-3)


def _flags(values: dict) -> list[str]:
    flags = []
    for key, value in values.items():
        flag = f"--{key.replace('_', '-')}"
        flags += [flag] if value is True else [flag, str(value)]
    return flags


def test_a_lora_for_another_architecture_exits_2_with_one_line_before_loading(loras, tmp_path, monkeypatch):
    from vsynth.core.run import pipeline

    monkeypatch.setattr(pipeline, "load_models", lambda *a, **k: pytest.fail("loaded weights"))
    result = CliRunner().invoke(cli, ["run", *_flags(WAN), "--vdm-lora", str(loras["sd15"]), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    line = result.output.strip()
    assert "\n" not in line and "do not fit wan2.1-t2v-1.3b's WanTransformer3DModel" in line and "another architecture" in line
    with pytest.raises(LoraError, match="do not fit sd15's UNet2DConditionModel"):
        plan_run(RunConfig(**SD15, idm_lora=[str(loras["wan"])]))
    assert not (tmp_path / "o").exists()


def test_a_model_without_a_lora_loader_and_bad_names_are_refused_before_loading(loras, tmp_path):
    with pytest.raises(LoraError, match="zeroscope's UNet3DConditionModel has no LoRA loader"):
        plan_run(RunConfig(**{**SD15, "idm": None, "bridge": "none"}, vdm_lora=[str(loras["sd15"])]))
    with pytest.raises(LoraError, match="no such file or folder, nor a hub id"):
        plan_run(RunConfig(**WAN, vdm_lora=[str(tmp_path / "missing.safetensors")]))
    (tmp_path / "l.bin").write_bytes(b"x")
    with pytest.raises(LoraError, match="from .safetensors files only"):
        plan_run(RunConfig(**WAN, vdm_lora=[str(tmp_path / "l.bin")]))
    with pytest.raises(Exception, match="--idm-lora is a LoRA of the image model, and this run has none"):
        plan_run(RunConfig(**WAN, idm_lora=[str(loras["sd15"])]))
    with pytest.raises(Exception, match="--fuse-lora fuses the run's LoRAs, and it has none"):
        plan_run(RunConfig(**WAN, fuse_lora=True))
    assert lora.parse("org/repo:0.5") == ("org/repo", 0.5) and lora.parse("a/b") == ("a/b", None)
    with pytest.raises(LoraError, match="^--vdm-lora .*:abc: the scale after ':' must be a number"):
        plan_run(RunConfig(**WAN, vdm_lora=[f"{loras['wan']}:abc"]))
    with pytest.raises(LoraError, match="no such file or folder"):  # not the hub repo tmp_path/missing.safetensors
        plan_run(RunConfig(**WAN, vdm_lora=[f"{loras['wan'].parent.name}/missing.safetensors"]))
    with pytest.raises(LoraError, match="is a preset of wan2.1-t2v-14b, not of wan2.1-t2v-1.3b"):
        plan_run(RunConfig(**WAN, vdm_lora=["lightx2v-4step"]))


@pytest.mark.parametrize(
    "content",
    [b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n", b"\x02\x00\x00\x00\x00\x00\x00\x00[]",
     b"\x2f\x00\x00\x00\x00\x00\x00\x00{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 0]}}"],
    ids=["git-lfs pointer", "header a list", "entry without shape"],
)  # fmt: skip
def test_a_lora_file_that_is_not_safetensors_is_one_error_before_loading(tmp_path, content):
    """A git-lfs pointer read its first 8 bytes as a header length of 8e18 (MemoryError); other headers crashed on their keys."""
    path = tmp_path / "l.safetensors"
    path.write_bytes(content)
    with pytest.raises(LoraError, match="^--vdm-lora .* is not a readable safetensors file"):
        plan_run(RunConfig(**WAN, vdm_lora=[str(path)]))


def test_a_distillation_preset_sets_solver_steps_and_guidance_unless_given(loras, monkeypatch):
    # wan2.1-t2v-14b's tiny stand-in is the 1.3B's tiny transformer, so the tiny LoRA stands in for the preset's file
    monkeypatch.setattr(lora, "_hub_file", lambda repo, filename, flag, text: str(loras["wan"]))
    with pytest.warns(UserWarning, match="--vdm-lora lightx2v-4step: sampling as it was distilled"):
        plan = plan_run(RunConfig(**{**WAN, "vdm": "wan2.1-t2v-14b", "steps": None}, vdm_lora=["lightx2v-4step"]))
    assert (plan.sampling.vdm_steps, plan.sampling.vdm_guidance, plan.config.vdm_scheduler) == (4, 1.0, "euler")
    assert plan.loras["vdm"][0].preset.name == "lightx2v-4step"
    given = plan_run(RunConfig(**{**WAN, "vdm": "wan2.1-t2v-14b", "steps": 6}, vdm_lora=["lightx2v-4step:0.5"], vdm_scheduler="unipc"))
    assert (given.sampling.vdm_steps, given.sampling.vdm_guidance, given.config.vdm_scheduler) == (6, 1.0, "unipc")
    assert given.loras["vdm"][0].scale == 0.5
    listed = CliRunner().invoke(cli, ["models", "wan2.1-t2v-14b"]).output
    assert "LoRA presets (--vdm-lora NAME[:SCALE]):" in listed and "lightx2v-4step" in listed and "steps 4" in listed


def test_a_kohya_sd15_lora_loads_as_its_peft_twin(loras, tmp_path):
    """kohya's keys (lora_unet_..._to_q.lora_down.weight, .alpha) convert to the old attention-processor names, which
    the fit check did not read: a valid file was refused as holding no layer for the UNet."""
    import torch
    from safetensors.torch import load_file, save_file

    kohya = {}
    for key, tensor in load_file(str(loras["sd15"])).items():
        module, part = key.removeprefix("unet.").rsplit(".lora_", 1)
        name = "lora_unet_" + module.replace(".", "_")
        kohya[f"{name}.lora_{'down' if part.startswith('A') else 'up'}.weight"] = tensor
        kohya[f"{name}.alpha"] = torch.tensor(float(tensor.shape[0] if part.startswith("A") else tensor.shape[1]))
    save_file(kohya, str(tmp_path / "kohya.safetensors"))
    settings = dict(idm="sd15", bridge="idm-only", video=SAMPLE_VIDEO, prompt="a ball", tiny=True, frames=2, height=64, width=64, steps=4)
    peft = vsynth.run(**settings, idm_lora=[str(loras["sd15"])]).latents
    converted = vsynth.run(**settings, idm_lora=[str(tmp_path / "kohya.safetensors")]).latents
    torch.testing.assert_close(converted, peft)


def test_an_idms_preset_leaves_the_video_models_steps_and_guidance_alone(loras, monkeypatch, tmp_path):
    """--steps and --guidance are shared: the LCM preset on the IDM ran ZeroScope at 4 steps without guidance."""
    from vsynth.testing import write_sample_video

    monkeypatch.setattr(lora, "_hub_file", lambda repo, filename, flag, text: str(loras["sd15"]))
    video = write_sample_video(tmp_path / "in.mp4", frames=2)
    config = RunConfig(idm="sd15", vdm="zeroscope", video=video, prompt="a ball", tiny=True, frames=2, stride=1, idm_lora=["lcm-4step"])
    with pytest.warns(UserWarning, match="--steps 4, --guidance 1.0 \\(the image model's; the video model keeps its own\\)"):
        plan = plan_run(config)
    assert (plan.sampling.steps, plan.sampling.guidance, plan.sampling.vdm_steps, plan.sampling.vdm_guidance) == (4, 1.0, 50, 7.5)


def test_fusing_an_idms_lora_leaves_the_sd15_unet_animatediff_shares_untouched(loras):
    """The IDM and AnimateDiff hold one SD1.5 UNet's tensors: fusing writes into a copy of each LoRA layer's weight."""
    from diffusers import UNet2DConditionModel

    from vsynth.core.run.pipeline import load_models
    from vsynth.core.run.progress import Stages

    plan = plan_run(RunConfig(idm="sd15", vdm="animatediff", bridge="mixed-inversion", prompt="a ball", tiny=True, frames=2, height=64,
                              width=64, steps=2, idm_lora=[str(loras["sd15"])], fuse_lora=True))  # fmt: skip
    models = load_models(plan, Stages(None)).models
    name = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    plain = UNet2DConditionModel.from_pretrained(tiny_weights("sd15"), subfolder="unet").state_dict()[name]
    idm = models["idm"].unets()[0].state_dict()[name]
    vdm = models["vdm"].unets()[0].state_dict()[name]
    assert not torch.allclose(idm, plain) and torch.equal(vdm, plain)
    shared = "down_blocks.1.resnets.0.conv1.weight"  # a layer no LoRA touches stays one tensor for both
    idm_params, vdm_params = dict(models["idm"].unets()[0].named_parameters()), dict(models["vdm"].unets()[0].named_parameters())
    assert idm_params[shared].data_ptr() == vdm_params[shared].data_ptr()
