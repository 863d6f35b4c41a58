"""Running from Python: ``vsynth.run`` and ``vsynth.Session`` on the tiny models, the same typed
errors as the CLI, and no library chatter unless asked."""

import json
import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

import vsynth
from tests.conftest import SAMPLE_VIDEO
from vsynth.core.run import pipeline
from vsynth.core.run.config import RunConfig
from vsynth.core.run.pipeline import plan_run
from vsynth.errors import InvalidParamsError, OutputExistsError, UnknownNameError, VideoError, VsynthInputError

GOOD = dict(idm="controlnet-canny", vdm="zeroscope", video=SAMPLE_VIDEO, prompt="a ball", tiny=True, frames=2, steps=1)


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"frames": 0}, "--frames 0: must be between 1 and 257"),
        ({"guidance": float("nan")}, "--guidance nan: must be a finite number"),
        ({"options": 5}, "--options 5: must be a mapping"),
        ({"idm": ""}, '--idm "": is empty'),
        ({"options": {None: 1}}, "--options: the key None must be text"),
    ],
)
def test_a_bad_config_raises_a_typed_one_line_error(values, expected):
    with pytest.raises(InvalidParamsError) as caught:
        RunConfig(**{**GOOD, **values})
    assert not isinstance(caught.value, ValidationError) and str(caught.value).startswith(expected)


@pytest.mark.parametrize(
    "values, expected",
    [({"steps": 5000}, "--steps 5000"), ({"out": "/proc/vsynth-out"}, "cannot create folders in /proc"), ({"device": "meta"}, "--device meta")],
)
def test_plan_run_refuses_what_the_cli_refuses(tmp_path, values, expected):
    with pytest.raises(VsynthInputError, match=expected):
        plan_run(RunConfig(**{**GOOD, "out": tmp_path / "out", **values}))


def test_a_run_from_python_prints_no_loading_bars_nor_backend_chatter(tmp_path):
    """Nor what torchao (installed with the quantize extra) logs as diffusers imports it: CUDA kernels a CPU build
    cannot load, torch's enum notices, diffusers' note on torchao's tensor classes."""
    code = f"import vsynth; vsynth.run(**{dict(GOOD, video=str(SAMPLE_VIDEO), out=str(tmp_path / 'out'), height=64, width=64)!r})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Loading" not in result.stderr and "it/s" not in result.stderr, result.stderr
    assert not any(word in result.stderr for word in ("Failed to load", "register_constant", "torchao")), result.stderr
    assert "has been deprecated" not in result.stderr, result.stderr  # diffusers' notice on TextToVideoSDPipeline (ZeroScope)


def test_a_warning_of_the_run_points_at_the_callers_line():
    """Not at vsynth's own code (api.py), where a caller cannot tell which of their calls raised it."""
    with pytest.warns(vsynth.errors.VsynthWarning, match="holds 1 \\+ 4k frames; running 5") as caught:
        vsynth.run(vdm="wan2.1-t2v-1.3b", prompt="a ball", tiny=True, frames=8, height=64, width=64, steps=1)
    assert {w.filename for w in caught if issubclass(w.category, vsynth.errors.VsynthWarning)} == {__file__}


TINY = dict(tiny=True, frames=2, height=64, width=64, steps=1)
CANNY = dict(idm="controlnet-canny", vdm="zeroscope", video=SAMPLE_VIDEO, prompt="a red ball", **TINY)


def test_run_returns_frames_latents_and_record_without_writing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = vsynth.run(**CANNY, options={"mixing_ratio": 0.5})
    assert result.frames.dtype == np.uint8 and result.frames.shape == (2, 64, 64, 3)
    assert tuple(result.latents.shape) == (1, 4, 2, 8, 8)
    assert result.record["bridge"]["params"]["mixing_ratio"] == 0.5
    assert result.record["nfe"]["idm"] > 0 and "loading models" in result.record["timings"]
    assert result.out_dir is None and list(tmp_path.iterdir()) == []
    shown = repr(result)  # what a notebook prints: shapes and figures, not every value of the tensors
    assert len(shown) < 500 and shown.startswith("RunResult(frames=ndarray(2, 64, 64, 3), latents=Tensor(1, 4, 2, 8, 8)"), shown
    assert "bridge=mixed-inversion" in shown and "out_dir=None" in shown


def test_session_loads_once_per_model_set_and_reuse_changes_nothing(tmp_path):
    fresh = vsynth.run(vdm="zeroscope", prompt="a corgi", **TINY)
    loads = []
    real_load = pipeline.load_models

    def counting_load(plan, stages):
        loads.append(plan.vdm.name)
        return real_load(plan, stages)

    with pytest.MonkeyPatch.context() as mp, vsynth.Session() as session:
        mp.setattr(pipeline, "load_models", counting_load)
        first = session.run(vdm="zeroscope", prompt="a corgi", **TINY)
        again = session.run(vdm="zeroscope", prompt="a corgi", out=tmp_path / "again", **TINY)
        session.run(vdm="modelscope", prompt="a corgi", **TINY)
    assert loads == ["zeroscope", "modelscope"]
    assert "loading models" in first.record["timings"] and "loading models" not in again.record["timings"]
    np.testing.assert_array_equal(again.frames, fresh.frames)  # models reused, results unchanged
    assert again.out_dir == tmp_path / "again"
    assert json.loads((again.out_dir / "run.json").read_text())["nfe"] == again.record["nfe"]


@pytest.mark.parametrize(
    "settings, error, words",
    [
        (dict(CANNY, idm="controlnet-cany"), UnknownNameError, "controlnet-canny"),
        (dict(CANNY, frames=0), InvalidParamsError, "frames"),
        (dict(CANNY, frame=3), InvalidParamsError, "frame"),
        (dict(CANNY, video="missing.mp4"), VideoError, "missing.mp4"),
        (dict(CANNY, frames=99), VideoError, "fewer than the 99 requested"),
        (dict(CANNY, options={"mixing_ratoi": 1}), UnknownNameError, "mixing_ratio"),
        (dict(CANNY, options={"mixing_ratio": "lots"}), InvalidParamsError, "mixing_ratio"),
        (dict(CANNY, mask=SAMPLE_VIDEO), VsynthInputError, "--mask is not used"),
    ],
)
def test_bad_input_raises_typed_errors_before_loading(settings, error, words, monkeypatch):
    monkeypatch.setattr(pipeline, "load_models", pytest.fail)
    with pytest.raises(error, match=words):
        vsynth.run(**settings)


def test_an_output_folder_that_holds_files_is_refused(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        vsynth.run(vdm="zeroscope", prompt="a corgi", out=tmp_path, **TINY)


def test_importing_vsynth_and_its_api_names_imports_no_torch():
    code = "import sys, vsynth; vsynth.Session, vsynth.run, vsynth.RunResult; print(sorted({'torch', 'ray', 'gradio'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_session_s_reused_windowed_vdm_gives_what_a_fresh_one_gives():
    settings = dict(vdm="zeroscope", prompt="a corgi", options={"window": 2, "overlap": 1}, **{**TINY, "frames": 4})
    fresh = vsynth.run(**settings)
    with vsynth.Session() as session:
        session.run(**settings)
        again = session.run(**settings)
    assert again.record["windows"] == fresh.record["windows"] and len(fresh.record["windows"]) > 1
    np.testing.assert_array_equal(again.frames, fresh.frames)


def test_a_prompt_longer_than_the_text_encoder_reads_is_said():
    """diffusers' pipelines cut it at 77 CLIP tokens and log that at a level vsynth quiets: it was dropped silently."""
    long = "a red ball on a wooden table " * 20
    with pytest.warns(vsynth.errors.VsynthWarning, match=r"CLIPTextModel reads 77 tokens of a prompt of \d+: the rest of"):
        vsynth.run(vdm="zeroscope", prompt=long, tiny=True, frames=2, height=64, width=64, steps=1)


@pytest.mark.parametrize("given, size", [({"width": 416}, (240, 416)), ({"height": 256}, (256, 432)), ({}, (480, 832))])
def test_one_side_given_alone_keeps_the_default_size_s_aspect(given, size):
    """--width 416 on Wan (480x832 by default) ran 480x416, a squeezed frame no one asked for."""
    plan = plan_run(RunConfig(vdm="wan2.1-t2v-1.3b", prompt="a ball", tiny=True, **given))
    assert (plan.height, plan.width) == size


def test_none_is_the_default_of_any_setting_from_python(monkeypatch, tmp_path):
    """seed=None, frames=None or negative_prompt=None were refused ('must be a whole number') while steps=None was taken."""
    monkeypatch.chdir(tmp_path)
    result = vsynth.run(vdm="zeroscope", prompt="a ball", tiny=True, seed=None, frames=None, negative_prompt=None, device=None,
                        vdm_lora=None, height=64, width=64, steps=1)  # fmt: skip
    assert (result.record["seed"], result.record["frames"], result.record["config"]["negative_prompt"]) == (42, 8, "")
