"""The four BIVDiff tasks from the CLI on tiny models: every IDM runs, and each task's inputs are checked."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import SAMPLE_VIDEO
from vsynth.cli import cli

MASK_VIDEO = Path(__file__).parents[1] / "examples" / "shapes_mask.mp4"
BASE = ["run", "--tiny", "--vdm", "zeroscope", "--prompt", "a green ball", "--frames", "2", "--height", "64", "--width", "64",
        "--steps", "2", "--quiet"]  # fmt: skip

RUNS = {
    "controlnet-canny": (["--video", SAMPLE_VIDEO], "controllable-generation"),
    "controlnet-depth": (["--video", SAMPLE_VIDEO], "controllable-generation"),
    "controlnet-openpose": (["--condition-video", SAMPLE_VIDEO], "controllable-generation"),
    "t2i-adapter-canny": (["--video", SAMPLE_VIDEO], "controllable-generation"),
    "t2i-adapter-depth": (["--video", SAMPLE_VIDEO], "controllable-generation"),
    "instruct-pix2pix": (["--video", SAMPLE_VIDEO, "--idm-prompt", "make it green"], "editing"),
    "prompt2prompt": (["--video", SAMPLE_VIDEO, "--source-prompt", "a red ball"], "editing"),
    "sd-inpaint": (["--video", SAMPLE_VIDEO, "--mask", MASK_VIDEO], "inpainting"),
    "sd15": (["--video", SAMPLE_VIDEO], "generation"),
}


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("idm", list(RUNS))
def test_every_idm_runs_with_zeroscope(idm, tmp_path):
    args, task = RUNS[idm]
    out = tmp_path / "out"
    result = run(*BASE, "--idm", idm, *args, "--out", out)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert record["task"] == task
    files = {p.name for p in out.iterdir()}
    assert {"video.mp4", "video.gif", "idm_frames.mp4", "grid.png", "run.json"} <= files
    shows_condition = idm not in ("sd15", "instruct-pix2pix", "prompt2prompt")  # control maps, or the masked frames
    assert ("condition.mp4" in files) == shows_condition


def test_outpainting_is_its_own_task(tmp_path):
    result = run(*BASE, "--idm", "sd-inpaint", "--video", SAMPLE_VIDEO, "--outpaint", "vertical", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "o" / "run.json").read_text())
    assert record["task"] == "outpainting" and record["bridge"]["params"]["mixing_ratio"] == 0.1


def test_text_to_image_idm_needs_no_video(tmp_path):
    result = run(*BASE, "--idm", "sd15", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "source" not in json.loads((tmp_path / "o" / "run.json").read_text())["metrics"]["mean_abs_frame_difference"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--idm", "sd-inpaint", "--video", SAMPLE_VIDEO], "sd-inpaint (inpainting) needs --mask or --outpaint"),
        (["--idm", "prompt2prompt", "--video", SAMPLE_VIDEO], "prompt2prompt (editing) needs --source-prompt"),
        (["--idm", "instruct-pix2pix"], "instruct-pix2pix (editing) needs --video"),
        (["--idm", "controlnet-canny", "--video", SAMPLE_VIDEO, "--mask", SAMPLE_VIDEO], "--mask is not used by controlnet-canny"),
        (["--idm", "sd-inpaint", "--video", SAMPLE_VIDEO, "--mask", SAMPLE_VIDEO, "--outpaint", "vertical"], "not both"),
        (["--idm", "sd-inpaint", "--video", SAMPLE_VIDEO, "--outpaint", "diagonal"], "--outpaint 'diagonal'"),
        (["--idm", "sd-inpaint", "--video", SAMPLE_VIDEO, "--mask", "nowhere.mp4"], "nowhere.mp4"),
    ],
)
def test_task_inputs_are_checked_before_loading(args, message, tmp_path, monkeypatch):
    monkeypatch.setattr("vsynth.core.diffusion.weights.resolve_sources", lambda *a, **k: pytest.fail("weights were looked up"))
    result = run(*BASE, *args, "--out", tmp_path / "o")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert message in line
    assert not (tmp_path / "o").exists()


def test_mask_video_of_another_size_is_resized(tmp_path):
    """Masks are resized to the run's size like the source (documented); too few frames are refused."""
    from vsynth.core.media.masks import read_mask
    from vsynth.core.media.video import write_mp4
    import numpy as np

    frames = np.zeros((4, 40, 24, 3), dtype=np.uint8)
    frames[:, :20] = 255
    write_mp4(tmp_path / "m.mp4", frames, 8)
    mask = read_mask(tmp_path / "m.mp4", frames=4, stride=1, size=(64, 48))
    assert mask.shape == (4, 64, 48) and set(np.unique(mask)) <= {0, 255}
    assert mask[:, :28].min() == 255 and mask[:, 36:].max() == 0
    result = run(*BASE, "--idm", "sd-inpaint", "--video", SAMPLE_VIDEO, "--mask", tmp_path / "m.mp4", "--frames", 3, "--stride", 2, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "m.mp4 has 4 frames" in result.stderr
