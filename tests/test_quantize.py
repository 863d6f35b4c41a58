"""--quantize (torchao int8/fp8 weight-only, bitsandbytes nf4), the planner's quantized sizes, --offload group and
regional --compile, on the tiny Wan model. No GPU is available to the suite: nf4 and group offload are checked for
their refusal on the CPU and their wiring (the CPU as its own device), not for speed or GPU memory."""

import json

import pytest
import torch
from click.testing import CliRunner

import vsynth
from tests.extras import need
from vsynth.cli import cli
from vsynth.core.run.config import RunConfig
from vsynth.core.run.pipeline import execute, plan_run
from vsynth.errors import QuantizationError, VsynthInputError

WAN = dict(vdm="wan2.1-t2v-1.3b", bridge="none", tiny=True, frames=5, height=64, width=64, steps=2, prompt="a red ball", seed=3)
INSTALL = "pip install 'vsynth[quantize]'"


@pytest.fixture(scope="module")
def plain():
    return vsynth.run(**WAN).latents


def test_nf4_without_a_gpu_exits_2_with_one_line_before_loading(tmp_path, monkeypatch):
    from vsynth.core.run import pipeline

    monkeypatch.setattr(pipeline, "load_models", lambda *a, **k: pytest.fail("loaded weights"))
    args = ["run", "--tiny", "--vdm", "wan2.1-t2v-1.3b", "--prompt", "a ball", "--quantize", "nf4", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert result.output.strip() == (
        "Error: --quantize nf4: bitsandbytes 4-bit NormalFloat runs on a CUDA GPU only, and this run is on cpu; "
        "use --quantize int8 (runs on the CPU), or run on a GPU"
    )
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("scheme", ["int8", "fp8"])
def test_weight_only_schemes_run_on_the_cpu_close_to_the_unquantized_run(scheme, plain, tmp_path):
    need("torchao", INSTALL)
    report = execute(plan_run(RunConfig(**WAN, quantize=scheme, out=tmp_path / scheme)))
    record = json.loads((report.out_dir / "run.json").read_text())
    quantized = record["accel"]["vdm"]["quantize"]
    transformer = report.loaded.models["vdm"].unets()[0]
    linears = [m for m in transformer.modules() if isinstance(m, torch.nn.Linear)]
    assert quantized["layers"] == len(linears) > 0 and quantized["scheme"] == scheme
    assert all(type(m.weight).__module__.startswith("torchao") for m in linears)
    assert not torch.equal(report.latents, plain)  # quantized weights...
    assert (report.latents - plain).abs().max() < 0.05 * plain.abs().max()  # ...close to the float32 model's output


def test_a_missing_backend_is_one_line_naming_the_extra(monkeypatch):
    import importlib.util

    from vsynth.core.diffusion import quantize

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real(name, *a))
    with pytest.raises(QuantizationError, match=r"--quantize int8: needs the torchao package: pip install 'vsynth\[quantize\]'"):
        quantize.check("int8", "cpu")


def test_nf4_replaces_linear_layers_by_bitsandbytes_4bit_ones():
    """The wiring of nf4 (bitsandbytes also computes 4-bit layers on the CPU, slowly; runs refuse it there)."""
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed (pip install 'vsynth[nf4]'; not a CI extra: nf4 is CUDA only)")
    import bitsandbytes as bnb

    from vsynth.core.diffusion.quantize import to_nf4

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 64))
    x = torch.randn(3, 64)
    before = net(x)
    to_nf4(net, torch.float32)
    assert isinstance(net[0], bnb.nn.Linear4bit) and net[0].weight.quant_type == "nf4"
    layer = net[0]
    weight = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state)
    torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, weight, layer.bias), rtol=1e-4, atol=1e-4)  # 4-bit weights, used
    assert (net(x) - before).abs().mean() < 0.15 * before.abs().mean()  # 16 levels per block of 64: close, not equal


def test_the_planner_counts_quantized_networks_at_their_size():
    plain_plan = plan_run(RunConfig(**WAN)).memory
    plan = plan_run(RunConfig(**WAN, quantize="int8")).memory
    nets = [p for p in plan.parts if p.quantized]
    assert nets and all(p.quantized_bytes == 1.0 for p in nets)
    # float32 run: the transformer's linear weights from 4 bytes to 1; everything else unchanged
    saved = sum(p.quantized * 3 for p in nets)
    assert plain_plan.weights - plan.weights == saved > 0
    nf4 = [p for p in memory_parts("nf4") if p.quantized]
    assert all(abs(p.quantized_bytes - 0.516) < 0.01 for p in nf4)


def memory_parts(scheme):
    from vsynth.core.run import memory

    plan = plan_run(RunConfig(**WAN))
    return memory.estimate({"vdm": plan.vdm}, plan.sources, plan.params, frames=5, height=64, width=64, guidance={"vdm": 5.0},
                           dtype="bfloat16", device="cpu", offload="none", quantize=scheme).parts  # fmt: skip


def test_group_offload_is_refused_on_the_cpu_and_hooks_blocks_with_the_same_output(plain, tmp_path):
    with pytest.raises(VsynthInputError, match="--offload group: offloading keeps weights in host memory for a GPU"):
        plan_run(RunConfig(**WAN, offload="group"))
    plan = plan_run(RunConfig(**WAN, out=tmp_path / "g"))
    plan.config = plan.config.model_copy(update={"offload": "group"})  # the CPU as its own onload device: the wiring
    report = execute(plan)
    from diffusers.hooks.group_offloading import _is_group_offload_enabled

    offload = report.loaded.offload
    assert type(offload).__name__ == "GroupOffload" and list(offload.units) == ["vdm.text_encoder", "vdm.unet", "vdm.vae"]
    assert all(_is_group_offload_enabled(m) for modules in offload.units.values() for m in modules)
    torch.testing.assert_close(report.latents, plain, rtol=1e-5, atol=1e-5)
    estimate = plan.memory.peaks
    assert estimate["sequential"] <= estimate["group"] < estimate["none"]


def test_compile_compiles_a_transformers_repeated_blocks(monkeypatch):
    from diffusers import WanTransformer3DModel

    from vsynth.core.run.pipeline import compile_network
    from vsynth.tiny import tiny_weights

    transformer = WanTransformer3DModel.from_pretrained(tiny_weights("wan2.1-t2v"), subfolder="transformer")
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(type(self).__name__))
    assert compile_network(transformer) == "WanTransformer3DModel: repeated blocks (WanTransformerBlock)"
    assert compiled == ["WanTransformerBlock"] * len(transformer.blocks)  # each block, not the whole network
    unet = torch.nn.Linear(2, 2)
    assert compile_network(unet) == "Linear: whole" and compiled[-1] == "Linear"


def test_a_gguf_transformer_loads_through_vdm_weights_and_is_counted_at_its_size(plain, tmp_path):
    need("gguf", INSTALL)
    from vsynth.testing.gguf import write_tiny_wan_gguf

    file = write_tiny_wan_gguf(tmp_path / "tiny-wan.gguf")
    plan = plan_run(RunConfig(**WAN, vdm_weights=str(file), out=tmp_path / "o"))
    assert plan.sources["vdm"]["gguf"] == str(file.resolve())
    gguf_parts = [p for p in plan.memory.parts if p.key == str(file.resolve())]
    assert gguf_parts and gguf_parts[0].bytes == file.stat().st_size
    assert not any("transformer/" in p.key for p in plan.memory.parts)  # the folder's own transformer is not counted
    report = execute(plan)
    transformer = report.loaded.models["vdm"].unets()[0]
    assert any(type(p).__name__ == "GGUFParameter" for p in transformer.parameters())  # Q8_0 tensors stay quantized
    assert not torch.equal(report.latents, plain) and (report.latents - plain).abs().max() < 0.05 * plain.abs().max()


def test_a_gguf_file_for_a_model_that_cannot_read_one_is_refused_in_one_line(tmp_path):
    (tmp_path / "x.gguf").write_bytes(b"GGUF" + bytes(16))
    with pytest.raises(VsynthInputError, match="wan2.2-t2v-a14b has 2 expert transformers, and a GGUF file holds one"):
        plan_run(RunConfig(**{**WAN, "vdm": "wan2.2-t2v-a14b"}, vdm_weights=str(tmp_path / "x.gguf")))
    with pytest.raises(VsynthInputError, match="wan2.1-vace-1.3b does not read GGUF checkpoints"):
        plan_run(RunConfig(**{**WAN, "vdm": "wan2.1-vace-1.3b"}, vdm_weights=str(tmp_path / "x.gguf")))
    (tmp_path / "y.gguf").write_bytes(b"PK\x03\x04")
    with pytest.raises(VsynthInputError, match="not a GGUF file"):
        plan_run(RunConfig(**WAN, vdm_weights=str(tmp_path / "y.gguf")))


def test_a_cut_gguf_download_is_refused_in_one_line_before_loading(tmp_path):
    """Only the magic was checked: half a GGUF file (a download cut short) loaded the models, then crashed in a traceback."""
    need("gguf", INSTALL)
    from vsynth.testing.gguf import write_tiny_wan_gguf

    data = write_tiny_wan_gguf(tmp_path / "whole.gguf").read_bytes()
    (tmp_path / "half.gguf").write_bytes(data[: len(data) // 2])
    with pytest.raises(VsynthInputError, match="not a readable GGUF file"):
        plan_run(RunConfig(**WAN, vdm_weights=str(tmp_path / "half.gguf")))
