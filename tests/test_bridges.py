"""EVS's encapsulated bridge, Selective Feature Injection and the composition baselines, on tiny models."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from diffusers.models.attention_processor import Attention
from pydantic import ValidationError

from tests.benchmark_scripts import load_benchmark
from tests.conftest import SAMPLE_VIDEO, load_tiny
from vsynth.cli import cli
from vsynth.core.diffusion import processes, sampling
from vsynth.core.diffusion.attention import FeatureInjection, InjectionProcessor, select_layers, spatial_self_attention
from vsynth.core.diffusion.inputs import BridgeInputs
from vsynth.core.diffusion.denoiser import Denoiser
from vsynth.core.diffusion.inputs import FrameInputs, Sources
from vsynth.core.run.progress import Stages
from vsynth.errors import InvalidParamsError
from vsynth.plugins.bridges import EncapsulatedParams
from vsynth.plugins.bridges.composition import SDEdit
from vsynth.plugins.bridges.encapsulated import inverted_block
from vsynth.testing import load_bridge

PROMPT = "a red ball"
VDM_SAMPLING = {"animatediff-lightning": (4, 1.0), "zeroscope": (4, 7.5)}  # (steps, guidance): Lightning without CFG


@pytest.fixture(scope="module")
def sd15():
    return load_tiny("sd15")


@pytest.fixture(scope="module")
def vdms(zeroscope):
    return {"animatediff-lightning": load_tiny("animatediff-lightning"), "zeroscope": zeroscope}


def bridge_inputs(idm, frames, vdm_name, steps=4) -> BridgeInputs:
    vdm_steps, vdm_guidance = VDM_SAMPLING[vdm_name]
    sources = Sources(video=frames)
    return BridgeInputs(
        frames=len(frames), height=64, width=64, steps=steps, guidance=7.5, vdm_steps=vdm_steps, vdm_guidance=vdm_guidance,
        prompt=PROMPT, image_prompt=PROMPT, negative_prompt="", sources=sources,
        frame_inputs=idm.prepare(sources) if idm is not None else FrameInputs(),
    )  # fmt: skip


def run_bridge(name, idm, vdm, inputs, **params):
    """The bridge's result, and every UNet call in order as (role, timestep)."""
    calls = []

    def recorder(role):
        return lambda _m, args, kwargs: calls.append((role, float(args[1] if len(args) > 1 else kwargs["timestep"])))

    unets = {"vdm": vdm.denoiser.unet} | ({"idm": idm.denoiser.unet} if idm is not None else {})
    handles = [unet.register_forward_pre_hook(recorder(role), with_kwargs=True) for role, unet in unets.items()]
    try:
        result = load_bridge(name, **params).run(idm, vdm, inputs, torch.Generator().manual_seed(0), Stages())
    finally:
        for handle in handles:
            handle.remove()
    return result, calls


def timesteps(model, steps) -> list[float]:
    return [float(t) for t in sampling.timesteps(model.denoiser, steps)]


# --- the encapsulated bridge ---------------------------------------------------------------------


def test_identity_block_equals_idm_only(sd15, vdms, source_frames):
    inputs = bridge_inputs(sd15, source_frames, "animatediff-lightning", steps=6)
    vdm = vdms["animatediff-lightning"]
    evs, evs_calls = run_bridge("encapsulated", sd15, vdm, inputs, strength=0.5, t2v_steps=0)
    base, base_calls = run_bridge("idm-only", sd15, vdm, inputs, strength=0.5)
    torch.testing.assert_close(evs.latents, base.latents)
    # the T2I step at the block (t2v_at 0.5 of 3 steps: the second) runs again on the re-noised latent
    t2i = [t for _, t in base_calls]
    assert t2i == [333.0, 167.0, 1.0] and evs_calls == [("idm", t) for t in t2i[:2] + t2i[1:]]
    with_block, _ = run_bridge("encapsulated", sd15, vdm, inputs, strength=0.5)
    assert not torch.allclose(with_block.latents, base.latents)


@pytest.mark.parametrize("renoise", ["predicted", "fresh"])
def test_bridge_back_noise_is_the_t2i_prediction_or_the_generators_next_draw(renoise, sd15, vdms, source_frames, monkeypatch):
    """With an identity block, predicted noise gives idm-only back; fresh noise is the next draw of the run's
    generator after the T2I SDEdit noise (Algorithm 1's literal form), so the run differs but repeats per seed."""
    noises = []
    real_renoise = sampling.renoise

    def recording_renoise(denoiser, x0, noise, level):
        noises.append(noise)
        return real_renoise(denoiser, x0, noise, level)

    monkeypatch.setattr(sampling, "renoise", recording_renoise)
    inputs = bridge_inputs(sd15, source_frames, "animatediff-lightning", steps=6)
    vdm = vdms["animatediff-lightning"]
    evs, _ = run_bridge("encapsulated", sd15, vdm, inputs, strength=0.5, t2v_steps=0, renoise=renoise)
    again, _ = run_bridge("encapsulated", sd15, vdm, inputs, strength=0.5, t2v_steps=0, renoise=renoise)
    base, _ = run_bridge("idm-only", sd15, vdm, inputs, strength=0.5)
    start, bridge_back = noises[0], noises[1]  # the SDEdit noise at t_I, then the noise back at t_T2V
    torch.testing.assert_close(again.latents, evs.latents, rtol=0, atol=0)
    if renoise == "predicted":
        torch.testing.assert_close(evs.latents, base.latents)
        assert not torch.equal(bridge_back, start)
    else:
        generator = torch.Generator().manual_seed(0)
        draws = [sampling.initial_noise(sd15.denoiser, tuple(start.shape), generator) for _ in range(2)]
        assert torch.equal(start, draws[0]) and torch.equal(bridge_back, draws[1])
        assert not torch.allclose(evs.latents, base.latents)


@pytest.mark.parametrize("injection", ["none", "sfi"])
@pytest.mark.parametrize("vdm_name", ["animatediff-lightning", "zeroscope"])
def test_block_runs_once_at_the_requested_step_at_each_schedules_noise_level(vdm_name, injection, sd15, vdms, source_frames, monkeypatch):
    vdm = vdms[vdm_name]
    levels = []
    noised = processes.Process.noised

    def recording_noised(process, x0, noise, level):  # SDEdit, the inversion's steps and the way back
        levels.append(1 / (1 + float(level) ** 2))  # as abar
        return noised(process, x0, noise, level)

    monkeypatch.setattr(processes.Process, "noised", recording_noised)
    inputs = bridge_inputs(sd15, source_frames, vdm_name, steps=10)
    _, calls = run_bridge("encapsulated", sd15, vdm, inputs, strength=0.4, t2v_at=0.25, t2v_strength=0.5, t2v_steps=1, injection=injection)

    t2i = timesteps(sd15, 10)[-4:]  # strength 0.4 of 10 steps; the block after 0.25 of them, at the second
    t2v = timesteps(vdm, 4)[-2:]  # t2v_strength 0.5 of 4 steps; t2v_steps 1 runs the first
    assert t2i == [301.0, 201.0, 101.0, 1.0] and t2v == ([499.0, 249.0] if vdm_name == "animatediff-lightning" else [251.0, 1.0])
    inversion = t2v[::-1] if injection == "sfi" else []  # DDIM inversion evaluates at each denoising timestep, ascending
    expected = [("idm", t) for t in t2i[:2]] + [("vdm", t) for t in inversion + t2v[:1]] + [("idm", t) for t in t2i[1:]]
    assert calls == expected

    abar_i, abar_v = sd15.denoiser.scheduler.alphas_cumprod, vdm.denoiser.scheduler.alphas_cumprod
    into_t2v = [abar_v[int(t)] for t in inversion] if injection == "sfi" else [abar_v[int(t2v[0])]]
    # the T2I start at t_I, the T2V side at t_V (SDEdit) or along the inversion to it, then back at t_T2V
    assert levels == pytest.approx([float(a) for a in [abar_i[301], *into_t2v, abar_i[201]]], rel=1e-5)


def test_impossible_step_choices_are_refused_before_any_denoising(sd15, vdms, source_frames):
    vdm = vdms["animatediff-lightning"]
    inputs = bridge_inputs(sd15, source_frames, "animatediff-lightning")
    with pytest.raises(InvalidParamsError, match="t2v_steps 3 exceeds the 2 VDM steps left"):
        run_bridge("encapsulated", sd15, vdm, inputs, t2v_steps=3)
    with pytest.raises(InvalidParamsError, match="strength 0.2 leaves none of the 4 T2I steps"):
        run_bridge("encapsulated", sd15, vdm, inputs, strength=0.2)
    with pytest.raises(ValidationError, match="sfi_gamma applies only with -o injection=sfi"):
        EncapsulatedParams(sfi_gamma=0.5)
    with pytest.raises(ValidationError):
        EncapsulatedParams(t2v_at=1.0)  # the block must run at some T2I step


class FixedNoise(Denoiser):
    """Predicts the same noise everywhere, so DDIM stays on one line: sqrt(abar) x0 + sqrt(1 - abar) eps."""

    frame_folded = False

    def __init__(self, scheduler, eps):
        super().__init__(unet=None, scheduler=scheduler, tokenizer=None, text_encoder=None)
        self.eps, self.seen = eps, []

    device, dtype = torch.device("cpu"), torch.float32

    def predict_noise(self, latents, t, cond, guidance):
        self.seen.append(float(t))
        return self.eps


@pytest.mark.parametrize("vdm_name", ["animatediff-lightning", "zeroscope"])  # Euler and DDIM
def test_inversion_and_clean_prediction_keep_the_noise_levels(vdm_name, vdms):
    scheduler = vdms[vdm_name].denoiser.new_scheduler()
    x0, eps = torch.randn(2, 1, 4, 2, 2, generator=torch.Generator().manual_seed(0)).unbind(0)
    d = FixedNoise(scheduler, eps)
    schedule = sampling.Schedule(d, 8)
    steps = schedule.timesteps[4:]
    z = sampling.invert(schedule, x0, None, 4)
    assert d.seen == [float(t) for t in steps.flip(0)]  # ascending, at each timestep the denoising will evaluate
    abar = scheduler.alphas_cumprod[int(steps[0])]
    torch.testing.assert_close(z, abar.sqrt() * x0 + (1 - abar).sqrt() * eps)
    predicted, noise = sampling.denoise_predict(schedule, z, None, 4, 5, guidance=1.0)
    torch.testing.assert_close(predicted, x0)
    assert noise is eps


# --- Selective Feature Injection --------------------------------------------------------------------


@pytest.mark.parametrize("layers", ["deep", "shallow", "all"])
@pytest.mark.parametrize("vdm_name", ["animatediff-lightning", "zeroscope"])
def test_sfi_records_qkv_at_the_named_layers_only(vdm_name, layers, vdms, source_frames):
    vdm = vdms[vdm_name]
    unet = vdm.denoiser.unet
    spatial = spatial_self_attention(unet)
    decoder = [name for name in spatial if name.startswith("up_blocks.")]
    assert len(decoder) == 2 and all(".attentions." in n and "temp" not in n and "motion" not in n for n in spatial)
    names = select_layers(unet, layers)
    assert names == {"deep": decoder[:1], "shallow": decoder[1:], "all": spatial}[layers]

    modules = {name: m for name, m in unet.named_modules() if isinstance(m, Attention)}
    before = {name: m.processor for name, m in modules.items()}
    t2v = SDEdit.video(vdm, bridge_inputs(None, source_frames, vdm_name), 0.5)
    x0 = vdm.codec.encode(source_frames)
    with FeatureInjection(unet, names, 0.8) as sfi:
        assert list(sfi.processors) == names
        during = {name: m.processor for name, m in modules.items()}
        seen = {name: [] for name in names}  # (timestep, the input of the module) while recording
        hooks = [
            modules[name].register_forward_pre_hook(
                lambda _m, args, name=name: seen[name].append(((sfi.processors[name].timestep, sfi.processors[name].call), args[0]))
                if sfi.processors[name].mode == "record" else None
            )
            for name in names
        ]  # fmt: skip
        try:
            inverted_block(t2v, x0, 1, sfi, Stages())
        finally:
            for hook in hooks:
                hook.remove()
    assert {name for name, p in during.items() if isinstance(p, InjectionProcessor)} == set(names)
    assert all(during[name] is before[name] for name in modules if name not in names)
    assert all(m.processor is before[name] for name, m in modules.items())  # restored
    for name, processor in sfi.processors.items():
        assert set(processor.recorded) == {(float(t), 0) for t in t2v.timesteps}  # one UNet call per timestep
        module = modules[name]
        for t, hidden in seen[name]:
            q, k, v = processor.recorded[t]
            for recorded, projection in ((q, module.to_q), (k, module.to_k), (v, module.to_v)):
                torch.testing.assert_close(recorded, projection(hidden))


@pytest.mark.parametrize("gamma", [1.0, 0.0])
@pytest.mark.parametrize("vdm_name", ["animatediff-lightning", "zeroscope"])  # zeroscope: guidance doubles the batch
def test_gamma_one_at_every_layer_reproduces_the_inversion_self_attention(vdm_name, gamma, vdms, source_frames, monkeypatch):
    """With gamma 1 at every spatial self-attention layer, each injected output equals the inversion's at the same
    timestep, for both halves of a guided batch; with gamma 0 the queries are the denoising's own and it does not."""
    log = []
    call = InjectionProcessor.__call__

    def logging_call(self, attn, hidden_states, *args, **kwargs):
        out = call(self, attn, hidden_states, *args, **kwargs)
        log.append((self, self.mode, self.timestep, out))
        return out

    monkeypatch.setattr(InjectionProcessor, "__call__", logging_call)
    vdm = vdms[vdm_name]
    unet = vdm.denoiser.unet
    inputs = bridge_inputs(None, source_frames, vdm_name)
    t2v = SDEdit.video(vdm, inputs, 0.5)
    with FeatureInjection(unet, spatial_self_attention(unet), gamma) as sfi:
        inverted_block(t2v, vdm.codec.encode(source_frames), t2v.length, sfi, Stages())

    recorded = {(p, t): out for p, mode, t, out in log if mode == "record"}
    injected = [(p, t, out) for p, mode, t, out in log if mode == "inject"]
    assert sorted(t for _, t, _ in injected) == sorted(float(t) for t in t2v.timesteps for _ in sfi.processors)
    halves = 2 if inputs.vdm_guidance > 1 else 1
    same = [torch.allclose(half, recorded[(p, t)], atol=1e-6) for p, t, out in injected for half in out.chunk(halves)]
    assert all(same) if gamma == 1.0 else not any(same)


def test_sfi_with_a_windowed_vdm_injects_each_windows_own_features(vdms, source_frames, monkeypatch):
    """A windowed VDM calls the UNet once per window at each timestep: with gamma 1, every window's injected
    self-attention equals what the same window recorded at that timestep, not what the last window did."""
    from vsynth.core.diffusion.windows import WindowedDenoiser

    log = []
    call = InjectionProcessor.__call__

    def logging_call(self, attn, hidden_states, *args, **kwargs):
        out = call(self, attn, hidden_states, *args, **kwargs)
        log.append((self, self.mode, self.timestep, out))
        return out

    monkeypatch.setattr(InjectionProcessor, "__call__", logging_call)
    vdm = vdms["zeroscope"]
    inputs = bridge_inputs(None, source_frames, "zeroscope")
    t2v = SDEdit.video(vdm, inputs, 0.5)
    t2v.schedule.denoiser = WindowedDenoiser(vdm.denoiser, window=2, overlap=1)  # 3 frames: windows [0, 2) and [1, 3)
    unet = vdm.denoiser.unet
    with FeatureInjection(unet, spatial_self_attention(unet), 1.0) as sfi:
        inverted_block(t2v, vdm.codec.encode(source_frames), t2v.length, sfi, Stages())

    calls = {}  # (processor, mode, timestep) -> outputs in call order: one per window
    for p, mode, t, out in log:
        calls.setdefault((p, mode, t), []).append(out)
    injected = {key: outs for key, outs in calls.items() if key[1] == "inject"}
    assert injected and all(len(outs) == 2 for outs in calls.values())
    for (p, _, t), outs in injected.items():
        for window, out in enumerate(outs):
            recorded = calls[(p, "record", t)]
            for half in out.chunk(2):  # guided batch
                torch.testing.assert_close(half, recorded[window], atol=1e-6, rtol=0)


def test_recording_leaves_the_attention_unchanged(vdms):
    d = vdms["zeroscope"].denoiser
    cond = d.condition(PROMPT, "")
    x = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    plain = d.predict_noise(x, 501, cond, 7.5)
    with FeatureInjection(d.unet, spatial_self_attention(d.unet), 0.8):
        recording = d.predict_noise(x, 501, cond, 7.5)
    torch.testing.assert_close(recording, plain)


# --- the CLI --------------------------------------------------------------------------------------


def cli_run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


BASE = ["run", "--tiny", "--video", SAMPLE_VIDEO, "--prompt", PROMPT, "--frames", 3, "--height", 64, "--width", 64, "--steps", 4, "--quiet"]  # fmt: skip
IDM_ARGS = {"sd15": [], "controlnet-canny": [], "instruct-pix2pix": ["--idm-prompt", "make it red"]}
IDM_CFG = {"sd15": 2, "controlnet-canny": 2, "instruct-pix2pix": 3}  # UNet batch per frame under guidance


@pytest.mark.parametrize("vdm_name", ["animatediff-lightning", "zeroscope"])
@pytest.mark.parametrize("idm", list(IDM_ARGS))
def test_encapsulated_from_the_cli(idm, vdm_name, tmp_path):
    out = tmp_path / "out"
    result = cli_run(*BASE, "--idm", idm, *IDM_ARGS[idm], "--vdm", vdm_name, "--bridge", "encapsulated", "-o", "bridge.strength=0.5", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert record["task"] == "enhance" and record["bridge"]["params"]["strength"] == 0.5
    # 2 T2I steps plus the one re-run after the block; the block: t2v_strength 0.5 of the VDM's 4 steps
    vdm_cfg = 2 if VDM_SAMPLING[vdm_name][1] > 1 else 1
    controlnet = idm == "controlnet-canny"  # counted apart, once per T2I UNet call
    assert record["nfe"] == {"idm": 3, "vdm": 2} | ({"idm.controlnet": 3} if controlnet else {})
    idm_evals = {"idm": 3 * IDM_CFG[idm] * 3} | ({"idm.controlnet": 3 * 2 * 3} if controlnet else {})
    assert record["frame_evals"] == idm_evals | {"vdm": 2 * vdm_cfg * 3}


@pytest.mark.parametrize(
    "bridge, idm, nfe, idm_frames",
    [
        ("idm-only", "controlnet-canny", {"idm": 1, "idm.controlnet": 1}, False),
        ("vdm-only", None, {"vdm": 2}, False),
        ("idm-then-vdm", "controlnet-canny", {"idm": 1, "idm.controlnet": 1, "vdm": 2}, True),
        ("vdm-then-idm", "sd15", {"idm": 1, "vdm": 2}, False),
    ],
)
def test_baselines_from_the_cli(bridge, idm, nfe, idm_frames, tmp_path):
    out = tmp_path / "out"
    idm_args = ["--idm", idm] if idm else []
    result = cli_run(*BASE, *idm_args, "--vdm", "animatediff-lightning", "--bridge", bridge, "--out", out)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert record["task"] == "enhance" and record["nfe"] == nfe  # strength 0.4 of 4 T2I steps: 1; 0.5 of 4 T2V: 2
    assert (out / "idm_frames.mp4").is_file() == idm_frames


def test_sfi_from_the_cli(tmp_path):
    args = ["--idm", "sd15", "--vdm", "animatediff-lightning", "--bridge", "encapsulated", "-o", "bridge.strength=0.5"]
    result = cli_run(*BASE, *args, "-o", "injection=sfi", "-o", "sfi_layers=shallow", "-o", "sfi_gamma=0.5", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "o" / "run.json").read_text())
    assert record["nfe"] == {"idm": 3, "vdm": 4}  # the inversion to t_V and the 2 steps back
    assert {"T2V inversion", "[T2V] block"} <= set(record["timings"])


def test_the_composition_baselines_need_a_source_video(tmp_path):
    args = ["--idm", "sd15", "--vdm", "zeroscope", "--bridge", "idm-then-vdm", "--prompt", PROMPT]
    result = cli_run("run", "--tiny", *args, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "missing --video: bridge 'idm-then-vdm' works on a source video" in result.stderr
    assert not (tmp_path / "o").exists()


def test_encapsulated_without_a_video_enhances_the_vdms_own_video(tmp_path):
    """EVS in its paper's setting: the T2V result for the prompt and seed, made first, then enhanced, in one folder."""
    from vsynth.core.media.video import read_video

    small = ["run", "--tiny", "--prompt", PROMPT, "--frames", 3, "--height", 64, "--width", 64, "--steps", 4, "--quiet"]
    result = cli_run(*small, "--idm", "sd15", "--vdm", "zeroscope", "--bridge", "encapsulated", "--out", tmp_path / "evs")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "evs" / "run.json").read_text())
    assert {"text-to-video", "decoding T2V frames", "T2I denoising", "[T2V] block"} <= set(record["timings"])
    assert "t2v_frames.mp4" in record["files"] and "t2v" in record["metrics"]["mean_abs_frame_difference"]
    assert record["nfe"]["vdm"] == 4 + 2  # the text-to-video steps, then the [T2V] block's
    plain = cli_run(*small, "--vdm", "zeroscope", "--out", tmp_path / "t2v")
    assert plain.exit_code == 0, plain.output
    size = {"frames": 3, "stride": 1, "size": (64, 64)}
    t2v = read_video(tmp_path / "evs" / "t2v_frames.mp4", **size).frames
    assert np.array_equal(t2v, read_video(tmp_path / "t2v" / "video.mp4", **size).frames)  # same seed: plain T2V's video


def test_benchmark_reports_the_evaluation_and_time_ratios(tmp_path, capsys):
    benchmark = load_benchmark("evs_vs_bivdiff")
    figures = benchmark.main(["--frames", "2", "--size", "64", "--steps", "10", "--json", str(tmp_path / "f.json")])
    # EVS: 4 T2I steps + the re-run, guided; 4 of Lightning's 8 steps. BIVDiff: 10 guided steps (each with the
    # ControlNet), 10 inversion steps, 8 steps.
    assert figures["evs"]["frame_evals"] == {"idm": 5 * 2 * 2, "vdm": 4 * 2}
    assert figures["bivdiff"]["frame_evals"] == {"idm": (10 * 2 + 10) * 2, "idm.controlnet": 10 * 2 * 2, "vdm": 8 * 2}
    assert figures["ratios"]["frame_evals"] == round(116 / 28, 3) and figures["ratios"]["unet_frame_evals"] == round(76 / 28, 3)
    assert figures["ratios"]["wall_time"] > 0
    assert json.loads((tmp_path / "f.json").read_text()) == figures
    assert "BIVDiff / EVS: 4.14x frame evaluations of all networks (2.71x of the UNets alone)" in capsys.readouterr().out
