"""Windowed video denoising: any VDM over a clip of any length, in overlapping windows."""

import json

import pytest
import torch

from tests.benchmark_scripts import load_benchmark
from tests.conftest import load_tiny
from vsynth.core.diffusion import sampling
from vsynth.core.diffusion.windows import WindowedDenoiser, blend_weights, spans
from vsynth.core.media.video import probe_video
from vsynth.testing import run_cli, write_sample_video

PROMPT = "a red ball"


@pytest.fixture(scope="module")
def animatediff():
    return load_tiny("animatediff")


@pytest.mark.parametrize("frames, window, overlap", [(5, 8, 2), (17, 16, 4), (64, 16, 4), (128, 24, 6), (10, 4, 3)])
def test_windows_are_full_cover_the_clip_and_overlap_at_least_as_asked(frames, window, overlap):
    windows = spans(frames, window, overlap)
    assert windows[0][0] == 0 and windows[-1][1] == frames
    assert all(stop - start == min(window, frames) for start, stop in windows)
    assert all(prev[1] - nxt[0] >= overlap and nxt[0] > prev[0] for prev, nxt in zip(windows, windows[1:]))


@pytest.mark.parametrize("noise", ["independent", "freenoise"])
@pytest.mark.parametrize("vdm", ["zeroscope", "animatediff"])
def test_a_window_covering_the_clip_reproduces_the_unwindowed_run_bit_for_bit(vdm, noise, zeroscope, animatediff):
    model = {"zeroscope": zeroscope, "animatediff": animatediff}[vdm]
    plain = model.denoiser
    windowed = WindowedDenoiser(plain, window=4, overlap=2, noise=noise)

    def run(d):
        noise = sampling.initial_noise(d, (1, 4, 4, 8, 8), torch.Generator().manual_seed(3))
        return sampling.sample(d, noise, d.condition(PROMPT, ""), steps=2, guidance=7.5)

    assert torch.equal(run(windowed), run(plain))


def test_a_frame_in_two_windows_depends_on_both_and_is_their_blend(animatediff):
    d = animatediff.denoiser
    cond = d.condition(PROMPT, "")
    x = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    for blend in ("uniform", "tapered"):
        windowed = WindowedDenoiser(d, window=2, overlap=1, blend=blend)  # windows [0, 2) and [1, 3)
        eps = windowed.predict_noise(x, 500, cond, 7.5)
        first, second = d.predict_noise(x[:, :, :2], 500, cond, 7.5), d.predict_noise(x[:, :, 1:], 500, cond, 7.5)
        w_first, w_second = blend_weights(2, blend)[1], blend_weights(2, blend)[0]  # frame 1: last of one, first of the other
        blended = (w_first * first[:, :, 1] + w_second * second[:, :, 0]) / (w_first + w_second)
        torch.testing.assert_close(eps[:, :, 1], blended)
        torch.testing.assert_close(eps[:, :, 0], first[:, :, 0])
        torch.testing.assert_close(eps[:, :, 2], second[:, :, 1])
    for changed in (0, 2):  # the shared frame follows a change in either window
        y = x.clone()
        y[:, :, changed] = torch.randn(1, 4, 8, 8)
        assert not torch.allclose(windowed.predict_noise(y, 500, cond, 7.5)[:, :, 1], eps[:, :, 1])


def test_freenoise_repeats_shuffled_noise_of_one_window_earlier(zeroscope):
    d = WindowedDenoiser(zeroscope.denoiser, window=4, overlap=2, noise="freenoise")
    noise = sampling.initial_noise(d, (1, 4, 9, 8, 8), torch.Generator().manual_seed(0))
    first = sampling.initial_noise(zeroscope.denoiser, (1, 4, 4, 8, 8), torch.Generator().manual_seed(0))
    assert torch.equal(noise[:, :, :4], first)

    def frames(a, b):
        return sorted(tuple(noise[0, :, i].flatten()[:3].tolist()) for i in range(a, b))

    assert frames(4, 6) == frames(0, 2) and frames(6, 8) == frames(2, 4) and set(frames(8, 9)) <= set(frames(4, 6))
    independent = WindowedDenoiser(zeroscope.denoiser, window=4, overlap=2)
    assert not torch.equal(sampling.initial_noise(independent, (1, 4, 9, 8, 8), torch.Generator().manual_seed(0))[:, :, 4:6], noise[:, :, 4:6])


def test_freenoise_under_mixed_inversion_is_said_unused(tmp_path):
    """Mixed Inversion starts the VDM from the inverted IDM frames, so the noise schedule cannot change it (seams.py's equal rows)."""
    from vsynth.core.run.config import RunConfig
    from vsynth.core.run.pipeline import plan_run
    from vsynth.errors import VsynthWarning

    video = write_sample_video(tmp_path / "in.mp4", frames=4)
    config = RunConfig(idm="controlnet-canny", vdm="animatediff", video=video, prompt=PROMPT, tiny=True, frames=4, stride=1,
                       options={"noise": "freenoise"})
    with pytest.warns(VsynthWarning, match="-o noise=freenoise is not used: bridge 'mixed-inversion' starts the VDM from an inversion"):
        plan_run(config)


@pytest.mark.parametrize("option, message", [("window=33", "at most 32 frames at once: lower -o window=33 to 32 or less"), ("overlap=16", "overlap 16 must be smaller than window 16")])
def test_a_window_the_model_cannot_take_is_refused_in_one_line(option, message, tmp_path):
    result = run_cli("run", "--tiny", "--vdm", "animatediff", "--prompt", PROMPT, "--frames", 64, "-o", option, "--out", tmp_path / "o")
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert message in line


@pytest.mark.parametrize(
    "args, windows",
    [
        (["--idm", "controlnet-canny", "--vdm", "animatediff", "--steps", 2], [[0, 16], [12, 28], [24, 40], [36, 52], [48, 64]]),
        (["--idm", "controlnet-canny", "--vdm", "zeroscope", "--steps", 2], [[0, 24], [13, 37], [27, 51], [40, 64]]),
        (["--idm", "controlnet-canny", "--vdm", "animatediff", "--bridge", "encapsulated", "--steps", 4], [[0, 16], [12, 28], [24, 40], [36, 52], [48, 64]]),
    ],
)
def test_64_frames_run_in_windows_and_run_json_records_them(args, windows, tmp_path):
    video = write_sample_video(tmp_path / "long.mp4", frames=64)
    out = tmp_path / "out"
    result = run_cli("run", "--tiny", *args, "--video", video, "--frames", 64, "--stride", 1, "--prompt", PROMPT, "--height", 64, "--width", 64, "--quiet", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert record["windows"] == windows and record["frames"] == 64
    assert record["frame_evals"]["vdm"] == record["nfe"]["vdm"] * windows[0][1] * 2  # every VDM call: one window, guided
    assert probe_video(out / "video.gif").num_frames == 32  # every 2nd frame: the GIF stays small


def test_long_video_benchmark_measures_each_length_in_its_own_process(tmp_path, capsys):
    benchmark = load_benchmark("long_videos")
    figures = benchmark.main(["--frames", "18", "--size", "32", "--steps", "1", "--device", "cpu", "--json", str(tmp_path / "f.json")])
    (result,) = figures["results"]
    assert (result["frames"], result["windows"]) == (18, 2)  # AnimateDiff: windows of 16
    # per frame: 1 guided IDM step (UNet and ControlNet), 1 image-inversion step, and the VDM's guided step over 2 windows of 16
    assert result["frame_evals_per_frame"] == round(2 + 2 + 1 + 2 * 32 / 18, 3)
    assert all(r["peak_memory_mb"] > 0 and r["peak_memory_source"] == "process_max_rss" for r in figures["results"])
    assert json.loads((tmp_path / "f.json").read_text()) == figures
    assert "| 18 | 2 |" in capsys.readouterr().out


@pytest.mark.parametrize("model", ["zeroscope", "canny"])
def test_a_delegating_denoiser_passes_everything_through(model, zeroscope, canny):
    """The base that WindowedDenoiser and plugins' wrappers share: with nothing overridden, it is its inner denoiser."""
    from vsynth.core.diffusion.denoiser import DelegatingDenoiser
    from vsynth.core.run.evals import EvalCounter

    inner = {"zeroscope": zeroscope, "canny": canny}[model].denoiser
    wrapper = DelegatingDenoiser(inner)
    assert (wrapper.frame_folded, wrapper.unet, wrapper.device, wrapper.dtype) == (inner.frame_folded, inner.unet, inner.device, inner.dtype)
    assert type(wrapper.new_scheduler()) is type(inner.new_scheduler()) and wrapper.process is inner.process
    extras = {"control": torch.zeros(2, 3, 16, 16)} if model == "canny" else {}
    cond = wrapper.condition(PROMPT, "", **extras)
    assert torch.equal(cond.text, inner.condition(PROMPT, "").text) and cond.extras.keys() == extras.keys()
    shape = (1, 4, 2, 2, 2)
    noise = wrapper.initial_noise(shape, torch.Generator().manual_seed(1))
    assert torch.equal(noise, inner.initial_noise(shape, torch.Generator().manual_seed(1)))
    counter = EvalCounter()
    counter.attach(inner.unet, "model")
    eps = wrapper.predict(noise, 981, cond, 7.5)
    assert torch.equal(eps, inner.predict(noise, 981, cond, 7.5)) and counter.calls["model"] == 2


def test_a_clip_beyond_the_frame_window_is_told_of_windows():
    """'lower --frames' alone: -o window runs the whole clip."""
    from vsynth.core.run.config import RunConfig
    from vsynth.core.run.pipeline import plan_run
    from vsynth.errors import VsynthInputError

    with pytest.raises(VsynthInputError, match=r"at most 81 frames at once \(its frame window\); lower --frames or denoise it in windows \(-o window\)$"):
        plan_run(RunConfig(vdm="wan2.1-t2v-1.3b", tiny=True, prompt="a ball", frames=85, height=32, width=32))
