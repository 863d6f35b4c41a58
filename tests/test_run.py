"""``vsynth run --tiny`` end to end: every file, a truthful run.json, and nothing left behind on failure."""

import json

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file

from tests.conftest import SAMPLE_VIDEO
from vsynth.cli import cli
from vsynth.core.media import video as videoio

FRAMES, STEPS = 3, 2
ARGS = ["run", "--tiny", "--idm", "controlnet-canny", "--vdm", "zeroscope", "--video", str(SAMPLE_VIDEO),
        "--prompt", "a red ball", "--frames", str(FRAMES), "--height", "64", "--width", "72", "--steps", str(STEPS)]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    result = CliRunner().invoke(cli, [*ARGS, "--save-latents", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    return out


def test_writes_every_file(run_dir):
    names = {"video.mp4", "video.gif", "idm_frames.mp4", "condition.mp4", "grid.png", "run.json", "latents.safetensors"}
    assert {p.name for p in run_dir.iterdir()} == names
    for name in ("video.mp4", "idm_frames.mp4", "condition.mp4"):
        info = videoio.probe_video(run_dir / name)
        assert (info.num_frames, info.height, info.width) == (FRAMES, 64, 72)


def test_latents_are_the_final_latent_video(run_dir):
    latents = load_file(str(run_dir / "latents.safetensors"))["latents"]
    assert latents.shape == (1, 4, FRAMES, 8, 9)


def test_run_json_reports_the_run(run_dir):
    record = json.loads((run_dir / "run.json").read_text())
    assert record["config"]["idm"] == "controlnet-canny" and record["bridge"]["name"] == "mixed-inversion"
    assert record["models"]["idm"]["weights"]["controlnet"].endswith("controlnet-canny")
    assert (record["seed"], record["frames"], record["height"], record["width"]) == (42, FRAMES, 64, 72)
    assert record["bridge"]["params"]["mixing_ratio"] == 1.0  # the IDM's BIVDiff default
    assert record["task"] == "controllable-generation"
    # frame-wise generation + image inversion on the IDM side; only smoothing on the VDM side (r = 1);
    # the ControlNet runs with every guided generation step, not in the (plain SD1.5) inversion
    assert record["nfe"] == {"idm": 2 * STEPS, "idm.controlnet": STEPS, "vdm": STEPS}
    assert record["frame_evals"] == {
        "idm": STEPS * FRAMES * 2 + STEPS * FRAMES, "idm.controlnet": STEPS * FRAMES * 2, "vdm": STEPS * FRAMES * 2,
    }  # fmt: skip
    expected_stages = {"loading models", "frame-wise generation", "image inversion", "temporal smoothing", "decoding", "writing"}
    assert expected_stages <= set(record["timings"])
    assert record["peak_memory_mb"] > 0 and record["versions"]["diffusers"]
    assert set(record["files"]) == {p.name for p in run_dir.iterdir()}


def test_run_json_counts_the_adapter_apart(tmp_path):
    """The T2I-Adapter computes its features once for all frames, outside the UNet calls."""
    adapter_args = [a if a != "controlnet-canny" else "t2i-adapter-canny" for a in ARGS]
    result = CliRunner().invoke(cli, [*adapter_args, "--quiet", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["nfe"] == {"idm": 2 * STEPS, "idm.adapter": 1, "vdm": STEPS}
    assert record["frame_evals"]["idm.adapter"] == FRAMES


def test_failure_while_writing_leaves_no_folder(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(videoio, "write_gif", broken)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, [*ARGS, "--quiet"])
    assert result.exit_code != 0
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())


def test_default_output_folder_is_new_under_outputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, [*ARGS, "--steps", "1", "--frames", "1"])
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "outputs").iterdir()
    assert "controlnet-canny-zeroscope" in folder.name and (folder / "video.mp4").is_file()


def test_local_weight_folders_load_without_tiny(tmp_path, monkeypatch):
    """The real loading path: `vsynth tiny export` writes diffusers folders, passed as local weights."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    exported = tmp_path / "weights"
    result = CliRunner().invoke(cli, ["tiny", "export", str(exported)])
    assert result.exit_code == 0, result.output
    from vsynth.tiny import TINY_MODELS

    assert {p.name for p in exported.iterdir()} == set(TINY_MODELS)

    args = [a for a in ARGS if a not in ("--tiny", "controlnet-canny")]
    args[args.index("--idm")] = "--idm"
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        *args[:2], "controlnet-depth", *args[2:], "--idm-weights", str(exported / "controlnet-depth"),
        "-o", f"base={exported / 'sd15'}", "-o", f"depth_estimator={exported / 'depth-estimator'}",
        "--vdm-weights", str(exported / "zeroscope"), "--steps", "1", "--quiet", "--out", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert record["models"]["idm"]["weights"] == {
        "controlnet": str(exported / "controlnet-depth"), "base": str(exported / "sd15"),
        "depth_estimator": str(exported / "depth-estimator"),
    }  # fmt: skip
    assert (out / "condition.mp4").is_file()


def test_missing_local_weight_folder_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, [*ARGS, "--idm-weights", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "controlnet weights directory not found" in result.stderr
    assert not (tmp_path / "o").exists()


def test_idm_only_loads_no_video_model(tmp_path):
    """idm-only is the IDM alone: no --vdm needed; a named one (with its settings and options) is said not to load,
    and its frame rule does not apply (Wan holds 1 + 4k frames: 3 would have run as 1)."""
    base = ["run", "--tiny", "--idm", "controlnet-canny", "--bridge", "idm-only", "--video", str(SAMPLE_VIDEO), "--prompt", "a red ball",
            "--frames", "3", "--height", "64", "--width", "64", "--steps", "3"]  # fmt: skip
    result = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "alone")])
    assert result.exit_code == 0, result.output
    named = CliRunner().invoke(cli, [*base, "--vdm", "wan2.1-t2v-1.3b", "--vdm-steps", "2", "-o", "window=4", "--out", str(tmp_path / "named")])
    assert named.exit_code == 0, named.output
    assert "Warning: bridge 'idm-only' uses no video model: --vdm wan2.1-t2v-1.3b, --vdm-steps, -o window not used" in named.output
    for out in ("alone", "named"):
        record = json.loads((tmp_path / out / "run.json").read_text())
        assert list(record["models"]) == ["idm"] and "vdm" not in record["nfe"] and record["frames"] == 3
        assert videoio.probe_video(tmp_path / out / "video.mp4").num_frames == 3
    missing = CliRunner().invoke(cli, [*base[:5], "mixed-inversion", *base[6:]])
    assert missing.exit_code == 2 and "missing --vdm" in missing.output and "bridge 'mixed-inversion' needs a video model" in missing.output


def test_a_stride_without_a_source_video_is_said_unused(tmp_path):
    from vsynth.core.run.config import RunConfig
    from vsynth.core.run.pipeline import plan_run
    from vsynth.errors import VsynthWarning

    with pytest.warns(VsynthWarning, match="--stride 2 is not used: this run reads no source video"):
        plan_run(RunConfig(vdm="zeroscope", prompt="a ball", tiny=True, stride=2, out=tmp_path / "out"))


@pytest.mark.parametrize(
    "args, line",
    [
        (["--idm", "prompt2prompt", "--video", str(SAMPLE_VIDEO), "--source-prompt", ""], '--source-prompt "": is empty: say what the source video shows'),
        (["--idm", "sd-inpaint", "--video", str(SAMPLE_VIDEO), "--outpaint", "0,0,0,0"], "fractions in [0, 0.5), at least one above 0"),
        (["--vdm", "wan2.1-vace-1.3b", "-o", f"reference={SAMPLE_VIDEO.parent}"], "is a folder: name one image file in it"),
        (["--out", ""], '--out "": is empty: name a folder, or drop --out'),
    ],
    ids=["empty source prompt", "no outpaint margin", "reference folder", "empty out"],
)
def test_bad_input_says_what_to_do(args, line):
    vdm = [] if "--vdm" in args else ["--vdm", "zeroscope"]
    result = CliRunner().invoke(cli, ["run", "--tiny", *vdm, "--prompt", "a ball", *args])
    assert result.exit_code == 2 and line in result.output and len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.parametrize(
    "text, value",
    [("010", 10), ("1e1", 10.0), ("1:00", "1:00"), ("0x10", "0x10"), ("None", None), ("null", None), ("yes", True),
     ("my #1.png", "my #1.png"), ("2020-01-01", "2020-01-01"), ('"a b"', "a b")],
)  # fmt: skip
def test_an_option_value_reads_as_typed(text, value):
    """YAML 1.1 read 010 as octal 8, 1:00 as 60, 0x10 as 16, '#' as a comment, and None as the text 'None'."""
    from vsynth.core.run.config import parse_option

    assert parse_option(f"k={text}") == ("k", value)


def test_options_refuse_a_bool_for_a_number_a_param_set_twice_and_nest_like_a_config_file(tmp_path):
    from vsynth.core.run.config import RunConfig
    from vsynth.core.run.pipeline import plan_run
    from vsynth.errors import InvalidParamsError, UnknownNameError

    settings = dict(idm="controlnet-canny", vdm="zeroscope", video=SAMPLE_VIDEO, prompt="a ball", tiny=True, out=tmp_path / "o")
    with pytest.raises(InvalidParamsError, match="-o window=true: must be a number or a choice, not true or false"):
        plan_run(RunConfig(**settings, options={"window": True}))  # it ran with a window of 1 frame
    with pytest.raises(UnknownNameError, match="sets idm.conditioning_scale, which another -o .* sets too: give it once"):
        plan_run(RunConfig(**settings, options={"conditioning_scale": 0.3, "idm.conditioning_scale": 0.6}))
    nested = plan_run(RunConfig(**settings, options={"idm": {"batch_size": 3}}))
    assert nested.params["idm"].batch_size == 3
    result = CliRunner().invoke(cli, ["run", "--tiny", "--idm", "controlnet-canny", "--vdm", "zeroscope", "--prompt", "a", "--video="])
    assert result.exit_code == 2 and '--video "": is empty' in result.output
