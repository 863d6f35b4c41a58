"""The metrics read what they claim on the toy world's ground truth: perfect on the truth, worse on damage."""

import numpy as np
import pytest

from vsynth.metrics import background_adherence, background_flicker, colour_adherence, edge_f1, warping_error
from vsynth.metrics.control import canny_edges
from vsynth.toy.world import SHAPES, make_clip


@pytest.fixture(scope="module")
def clip():
    return make_clip(2, frames=8, n_shapes=2, background="white")


def test_edge_f1_is_one_on_its_own_edges_and_falls_with_drift(clip):
    condition = canny_edges(clip.frames)
    assert edge_f1(clip.frames, condition) == 1.0
    frozen = np.repeat(clip.frames[:1], len(clip.frames), axis=0)
    assert edge_f1(frozen, condition) < 0.8
    assert edge_f1(np.zeros_like(clip.frames), condition) == 0.0


def test_edge_f1_tolerates_a_one_pixel_shift(clip):
    condition = canny_edges(clip.frames)
    shifted = np.roll(clip.frames, 1, axis=2)
    assert edge_f1(shifted, condition, tolerance=2) > 0.95
    assert edge_f1(shifted, condition, tolerance=0) < 0.5


def test_colour_and_background_adherence(clip):
    colours = [colour for _, colour in clip.shapes]
    assert colour_adherence(clip.frames, clip.masks, colours) == 1.0
    wrong = [c for c in ("red", "green", "blue") if c not in colours][:1] * len(colours)
    assert colour_adherence(clip.frames, clip.masks, wrong) == 0.0
    assert background_adherence(clip.frames, clip.masks, "white") == 1.0
    assert background_adherence(clip.frames, clip.masks, "black") == 0.0


def test_warping_error_follows_the_motion_and_flicker_the_background(clip):
    assert warping_error(clip.frames, clip.masks, clip.positions) < 0.005
    frozen = np.repeat(clip.frames[:1], len(clip.frames), axis=0)
    assert warping_error(frozen, clip.masks, clip.positions) > 0.02
    assert background_flicker(clip.frames, clip.masks) == 0.0
    noisy = np.clip(clip.frames.astype(int) + np.random.default_rng(0).integers(-20, 21, clip.frames.shape), 0, 255).astype(np.uint8)
    assert background_flicker(noisy, clip.masks) > 0.03


def test_ground_truth_travels_beside_a_toy_clip(tmp_path):
    from vsynth.core.media.video import read_video
    from vsynth.toy.truth import load_ground_truth, save_clip

    clip = save_clip(tmp_path / "clip.mp4", 4, frames=12, n_shapes=2)
    truth = load_ground_truth(tmp_path / "clip.mp4", frames=4, stride=3, size=(64, 64))
    assert (truth.frames == clip.frames[::3][:4]).all() and truth.caption == clip.caption
    read = read_video(tmp_path / "clip.mp4", frames=4, stride=3, size=(64, 64)).frames
    assert warping_error(read, truth.masks, truth.positions) < 0.02  # the mp4 round trip is nearly lossless
    bigger = load_ground_truth(tmp_path / "clip.mp4", frames=4, stride=3, size=(128, 96))
    assert bigger.masks.shape == (4, 2, 128, 96)
    assert load_ground_truth(tmp_path / "other.mp4", frames=4, stride=1, size=(64, 64)) is None


def test_run_metrics_reports_what_the_inputs_allow(clip):
    from vsynth.metrics.report import parse_toy_prompt, run_metrics

    assert parse_toy_prompt("a red circle and a blue square on a white background") == (["red", "blue"], "white")
    assert parse_toy_prompt("a corgi on the beach") is None
    condition = np.repeat(canny_edges(clip.frames)[..., None] * 255, 3, axis=-1).astype(np.uint8)
    frozen = np.repeat(clip.frames[:1], len(clip.frames), axis=0)
    videos = {"source": clip.frames, "condition": condition, "final": frozen}
    plain = run_metrics(videos, prompt="a photo")
    assert set(plain) == {"mean_abs_frame_difference"} and set(plain["mean_abs_frame_difference"]) == {"source", "final"}
    full = run_metrics(videos, prompt=clip.caption, canny=(100, 200), truth=clip)
    assert full["edge_f1"]["final"] < 0.8
    assert full["warping_error"]["source"] < full["warping_error"]["final"]
    assert full["colour_adherence"]["source"] == 1.0 and full["background_adherence"]["source"] == 1.0
    assert full["shape_speed"]["final"] == 0.0 < full["shape_speed"]["source"]


def test_the_toy_classifier_sees_what_a_clip_shows_and_not_what_it_does_not():
    from vsynth.metrics.quality import classifier_accuracy, parse_toy_subject

    assert parse_toy_subject("a red circle and a blue square on a white background") is None  # two shapes
    assert parse_toy_subject("a Red circle on a gray background") == ("circle", "red", "gray")
    assert parse_toy_subject("a green triangle") == ("triangle", "green", None)
    for seed in range(4):
        clip = make_clip(seed, frames=3, n_shapes=1)
        shape, colour, background = parse_toy_subject(clip.caption)
        assert classifier_accuracy(clip.frames, shape, colour, background) == 1.0
        other_shape = next(s for s in SHAPES if s != shape)
        assert classifier_accuracy(clip.frames, other_shape, colour) == 0.0
        bigger = np.repeat(np.repeat(clip.frames, 2, axis=1), 2, axis=2)  # 128x128 frames are resized to the classifier's 64
        assert classifier_accuracy(bigger, shape, colour, background) == 1.0
    noise = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    assert classifier_accuracy(noise, "circle", "red", "white") == 0.0


def test_run_metrics_adds_frame_quality_for_a_one_shape_prompt():
    from vsynth.metrics.report import run_metrics

    clip = make_clip(3, frames=4, n_shapes=1)
    noise = np.random.default_rng(1).integers(0, 256, clip.frames.shape, dtype=np.uint8)
    metrics = run_metrics({"source": clip.frames, "final": noise}, prompt=clip.caption)
    assert metrics["classifier_accuracy"] == {"source": 1.0, "final": 0.0}
    assert "classifier_accuracy" not in run_metrics({"final": noise}, prompt="a red circle and a blue square")


def test_an_edit_s_source_is_measured_against_the_source_prompt():
    """A red circle moving left, edited to blue: measured against the target prompt its motion read 0 (no blue moves)."""
    from vsynth.core.host.registry import get_registry
    from vsynth.core.run import measure
    from vsynth.toy import world

    clip = world.make_motion_clip(3, frames=9, motion="left", colour="red", shape="circle", background="white")
    specs = measure.choose(get_registry(), ["direction_agreement"])
    target = "a blue circle moving left on a white background"
    edit = measure.Sample(prompt=target, source_prompt="a red circle moving left on a white background", source=clip.frames)
    result = measure.measure(specs, {"source": clip.frames, "final": clip.frames}, edit)
    assert result.values["direction_agreement"] == {"source": 1.0, "final": 0.0}  # the final is still red: no blue to follow
    plain = measure.measure(specs, {"source": clip.frames}, measure.Sample(prompt=target, source=clip.frames))
    assert plain.values["direction_agreement"] == {"source": 0.0}


def test_raft_downloads_say_so_on_stderr_so_that_eval_json_stays_json(monkeypatch, capsys):
    """torch.hub writes "Downloading: ..." to stdout, which `vsynth eval --json` printed before its JSON."""
    import urllib.error

    from torchvision.models import optical_flow

    from vsynth.errors import WeightsUnavailableError
    from vsynth.metrics.flow import load_raft

    def offline(weights=None, progress=False):
        print(f'Downloading: "{weights.url}" to the cache')
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(optical_flow, "raft_large", offline)
    with pytest.raises(WeightsUnavailableError, match="cannot get raft weights"):
        load_raft("torchvision:raft_large")
    out = capsys.readouterr()
    assert out.out == "" and "Downloading" in out.err


def test_background_adherence_of_a_run_that_is_not_square():
    """A --toy run at --height 96 --width 128 failed the metric: 'background of (96, 96) for frames of (96, 128)'."""
    from vsynth.metrics.prompt import background_adherence
    from vsynth.toy.world import background_image

    frames = np.repeat(background_image("gradient", 96, 128)[None], 2, axis=0)
    masks = np.zeros((2, 1, 96, 128), bool)
    assert background_adherence(frames, masks, "gradient") == 1.0 and background_adherence(frames, masks, "black") < 0.5
