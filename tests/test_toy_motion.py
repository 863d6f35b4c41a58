"""The moving toy world and the motion metrics: ground truth in, the prompted motion out (numpy only, fast)."""

import numpy as np
import pytest

from tests.benchmark_scripts import load_benchmark
from vsynth.metrics.motion import direction_agreement, motion_report, object_track, speed_agreement
from vsynth.metrics.report import run_metrics
from vsynth.toy.world import DIRECTIONS, make_motion_clip, parse_motion, words_outside_vocabulary


@pytest.mark.parametrize("motion", DIRECTIONS)
def test_motion_clips_move_as_captioned_and_the_metrics_see_it(motion):
    clip = make_motion_clip(7, motion=motion, background="black")
    assert clip.caption.endswith(f"moving {motion} on a black background") and not words_outside_vocabulary(clip.caption)
    colour = clip.shapes[0][1]
    track = object_track(clip.frames, colour)
    assert np.allclose(track[:, :2], clip.positions[:, 0], atol=0.6)  # the centroid is the ground-truth centre
    assert direction_agreement(clip.frames, motion, colour) == 1.0
    assert direction_agreement(clip.frames, motion, None) == 1.0  # found without a colour, as foreground
    assert direction_agreement(clip.frames[::-1], motion, colour) == 0.0  # played backwards: the opposite way
    assert direction_agreement(clip.frames[:1].repeat(9, 0), motion, colour) == 0.0  # a still object does not move
    assert speed_agreement(clip.frames, clip.extra["speed"], colour) > 0.95
    assert speed_agreement(clip.frames, 2 * clip.extra["speed"], colour) < 0.6


def test_growing_speed_words_and_the_run_metrics():
    grow = make_motion_clip(3, motion="growing", speed="quickly", background="white")
    assert grow.caption == f"a {grow.shapes[0][1]} {grow.shapes[0][0]} growing quickly on a white background"
    assert direction_agreement(grow.frames, "growing", grow.shapes[0][1]) == 1.0
    assert direction_agreement(grow.frames[::-1], "growing", grow.shapes[0][1]) == 0.0
    slow = make_motion_clip(4, motion="right", speed="slowly")
    assert parse_motion(slow.caption) == {"motion": "right", "speed": 2.0, "colour": slow.shapes[0][1], "shape": slow.shapes[0][0]}
    assert parse_motion("a red circle on a white background") is None
    report = motion_report(slow.frames, slow.caption)
    assert report["direction_agreement"] == 1.0 and report["speed_agreement"] > 0.9
    metrics = run_metrics({"final": slow.frames, "idm": slow.frames[::-1].copy()}, prompt=slow.caption)
    assert metrics["direction_agreement"] == {"final": 1.0, "idm": 0.0}


def test_noise_does_not_move_the_prompted_way():
    """Frames of noise have a 'red' centroid that jumps about: no direction, whichever is asked."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (9, 64, 64, 3), dtype=np.uint8)
    assert all(direction_agreement(noise, m, "red") == 0.0 for m in DIRECTIONS)


def test_motion_clips_keep_their_ground_truth_beside_them(tmp_path):
    from vsynth.core.media.video import probe_video
    from vsynth.errors import GroundTruthError
    from vsynth.toy.truth import check_ground_truth, load_ground_truth, save_clip

    path = tmp_path / "clip.mp4"
    clip = save_clip(path, 5, generator="make_motion_clip", frames=9, motion="down")
    check_ground_truth(path, probe_video(path))
    truth = load_ground_truth(path, frames=9, stride=1, size=(64, 64))
    assert truth.caption == clip.caption and np.allclose(truth.positions, clip.positions)
    # another clip's sidecar of the same size and length was accepted, and the metrics measured against its shapes
    other = tmp_path / "other.mp4"
    save_clip(other, 6, generator="make_motion_clip", frames=9, motion="left")
    (tmp_path / "other.json").replace(tmp_path / "clip.json")
    with pytest.raises(GroundTruthError, match=r"clip.json is not the ground truth of .*clip.mp4: the first frame it describes differs"):
        check_ground_truth(path, probe_video(path))


def test_toy_examples_writes_motion_clips(tmp_path):
    from click.testing import CliRunner

    from vsynth.cli import cli

    from vsynth.core.media.video import probe_video
    from vsynth.toy.truth import load_ground_truth

    result = CliRunner().invoke(cli, ["toy", "examples", str(tmp_path), "--motion", "--count", "3"])
    assert result.exit_code == 0, result.output
    for line in result.output.strip().splitlines():
        path, caption = line.split("\t")
        assert " moving " in caption or " growing " in caption
        assert parse_motion(caption)["motion"] in caption
        truth = load_ground_truth(path, frames=9, stride=1, size=(64, 64))  # 9 frames by default, the Wan toy's length
        area = truth.masks.sum(axis=(1, 2, 3))
        if "growing" not in caption:
            assert area.min() == area.max(), "the shape crosses the frame whole, never half outside it"
        assert probe_video(path).num_frames == 9


@pytest.mark.parametrize(
    "args, line",
    [
        (("--motion", "--frames", "32"), "32: a shape moving 4 pixels a frame leaves the 64-pixel frame after 17 frames"),
        (("--motion", "--frames", "12", "--speed", "quickly"), "12: a shape moving 6 pixels a frame leaves the 64-pixel frame after 11 frames"),
        (("--count", "2"), "already holds toy1.json: toy examples never replaces a file"),
    ],
)
def test_toy_examples_refuse_clips_without_their_shape_and_never_replace_a_file(tmp_path, args, line):
    """--frames 32 wrote clips whose shape was out of the frame in 13 of 32 frames (a caption the clip did not show),
    and an existing toy1.json was replaced without a word."""
    from click.testing import CliRunner

    from vsynth.cli import cli

    (tmp_path / "toy1.json").write_text("mine")
    result = CliRunner().invoke(cli, ["toy", "examples", str(tmp_path), "--seed", "1", *args])
    assert result.exit_code == 2 and line in result.stderr, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy1.json"] and (tmp_path / "toy1.json").read_text() == "mine"
    growing = CliRunner().invoke(cli, ["toy", "examples", str(tmp_path / "g"), "--motion", "--moving", "growing", "--frames", "17", "--count", "1"])
    assert growing.exit_code == 0, growing.output  # in place: no path to leave the frame by


def test_toy_runs_default_to_every_source_frame(tmp_path):
    """The toy models learnt motion frame by frame: --toy samples at stride 1 unless told, other runs at BIVDiff's 4."""
    from vsynth.core.run.config import RunConfig
    from vsynth.core.run.pipeline import plan_run
    from vsynth.errors import VideoError
    from vsynth.toy.truth import save_clip

    path = tmp_path / "clip.mp4"
    caption = save_clip(path, 2, generator="make_motion_clip", frames=9).caption
    run = dict(vdm="wan2.1-t2v-1.3b", idm="flux-canny", video=path, prompt=caption, frames=9)
    assert plan_run(RunConfig(toy=True, out=tmp_path / "a", **run)).config.stride == 1
    assert plan_run(RunConfig(toy=True, stride=2, **{**run, "frames": 5}, out=tmp_path / "b")).config.stride == 2
    with pytest.raises(VideoError, match="at stride 4"):
        plan_run(RunConfig(tiny=True, out=tmp_path / "c", **run))


def test_the_wan_toy_flicker_benchmark_counts_ghost_objects():
    """benchmarks/wan_toy_flicker.py's 'objects a frame': one per drawn shape, not counting specks under 6 pixels."""
    benchmark = load_benchmark("wan_toy_flicker")
    frames = np.full((2, 32, 32, 3), 255, np.uint8)
    frames[:, 4:10, 4:10] = (230, 30, 30)  # the prompted object, in both frames
    frames[1, 20:26, 20:26] = (200, 0, 200)  # a ghost in the second frame
    frames[:, 30, 30] = (0, 0, 0)  # a speck
    assert benchmark.objects_per_frame(frames) == 1.5


def test_the_guided_loss_target_puts_the_guided_prediction_on_the_data():
    """train_wan.guided_target: the conditional velocity whose guided combination at Wan's 5 is the data's velocity."""
    import torch

    from vsynth.toy.train_wan import GUIDANCE, guided_target

    velocity, uncond = torch.randn(2, 16, 3, 4, 4).unbind(0)
    cond = guided_target(velocity, uncond)
    torch.testing.assert_close(uncond + GUIDANCE * (cond - uncond), velocity)


def test_oversampled_clips_are_drawn_that_many_times_as_often():
    """train_wan.clip_weights: a recipe's ``oversample`` word makes its clips that many times likelier than the rest."""
    from vsynth.toy.train_wan import clip_weights

    p = clip_weights(["a purple circle moving left", "a red square moving up", "a purple square moving up"], {"purple": 3.0})
    assert p.sum() == pytest.approx(1.0)
    assert p[0] == pytest.approx(3 * p[1]) and p[2] == pytest.approx(p[0])


def test_the_shipped_wan_toys_vae_puts_every_colour_well_away_from_white():
    """benchmarks/wan_toy_colours.py's latent contrast, which docs/toy-world.md gives as why purple lost its motion in run 11
    (purple 7, blue 37 against red 383): runs 12-13 moved purple's and blue's latents away from white (vsynth.toy.amplify_colour)
    and the shipped encoder gives them (measured, one clip: purple 48, blue 158, cyan 91, red 377)."""
    from vsynth.toy import shipped
    from vsynth.toy.world import COLOURS

    if "wan2.1-t2v" not in shipped.toy_models():
        pytest.skip("needs the toy Wan weights")
    benchmark = load_benchmark("wan_toy_colours")
    contrast = {colour: benchmark.latent_contrast(None, colour, clips=1) for colour in COLOURS}
    assert min(contrast.values()) > 25 and contrast["red"] > 100, contrast


def test_moving_a_colours_latents_away_from_white_keeps_white_and_scales_the_difference():
    """vsynth.toy.amplify_colour.away_from_white: white stays where it is, an object's distance from it is scaled."""
    import torch

    from vsynth.toy.amplify_colour import away_from_white

    white, z = torch.randn(2, 1, 16, 1, 8, 8).unbind(0)
    torch.testing.assert_close(away_from_white(white, white, 2.5), white)
    torch.testing.assert_close(away_from_white(z, white, 2.5) - white, 2.5 * (z - white))


def test_a_work_folder_rebuilt_from_the_shipped_wan_toy_exports_the_same_weights(tmp_path):
    """train_wan --stage from-shipped: the folder a further fine-tune starts from holds the shipped weights, and its export
    (what --stage ship would copy back) gives them unchanged."""
    import torch
    from safetensors.torch import load_file

    from vsynth.toy import shipped, train_wan

    if "wan2.1-t2v" not in shipped.toy_models():
        pytest.skip("needs the toy Wan weights")
    work, out = tmp_path / "work", tmp_path / "out"
    train_wan.main(["--stage", "from-shipped", "--work", str(work), "--smoke"])
    train_wan.main(["--stage", "export", "--work", str(work), "--out", str(out)])
    for part in ("vae", "transformer", "text_encoder"):
        before = load_file(next((shipped.WEIGHTS_DIR / "wan2.1-t2v" / part).glob("*.safetensors")))
        after = load_file(next((out / part).glob("*.safetensors")))
        assert before.keys() == after.keys(), part
        assert all(torch.equal(before[k], after[k]) for k in before), part


def test_training_clips_cross_the_middle_line_as_often_as_centred_says():
    """train_wan --centred: 1 puts every training clip's path within 8% of the middle line, 0 leaves them where
    `vsynth toy examples --motion` would put them (anywhere), and the default keeps the recipe's three in four."""
    import numpy as np

    from vsynth.toy import train_wan, world

    def offsets(centred):
        out = []
        for seed in range(40):
            clip = train_wan.training_clip(seed, centred)
            axis = 1 if clip.extra["motion"] in ("left", "right") else 0  # across the motion
            out.append(clip.positions[0, 0, axis] / 64)
        return np.array(out)

    assert np.all(np.abs(offsets(1.0) - 0.5) <= 0.08 + 1e-9)
    anywhere = world.make_motion_clip(3, frames=train_wan.FRAMES, size=train_wan.SIZE, motions=train_wan.TRAIN_MOTIONS,
                                      backgrounds=train_wan.TRAIN_BACKGROUNDS)  # fmt: skip
    np.testing.assert_array_equal(train_wan.training_clip(3, 0.0).frames, anywhere.frames)
    assert np.mean(np.abs(offsets(0.0) - 0.5) > 0.08) > 0.5
    np.testing.assert_array_equal(offsets(None), offsets(train_wan.RECIPE["t2v"]["centred"]))


def test_toy_examples_fix_the_words_their_captions_say(tmp_path):
    """`vsynth toy examples --motion --moving left --speed quickly --background black ...`: every clip says and does
    that (its ground truth reloads with it); a word outside the vocabulary, or a motion word without --motion, is one
    line and exit 2 before anything is written; the help lists the whole vocabulary."""
    from click.testing import CliRunner

    from vsynth.cli import cli
    from vsynth.toy import world
    from vsynth.toy.truth import load_ground_truth

    fixed = ["--moving", "up", "--speed", "slowly", "--background", "black", "--shape", "square", "--colour", "cyan"]
    result = CliRunner().invoke(cli, ["toy", "examples", str(tmp_path / "m"), "--motion", "--count", "2", *fixed])
    assert result.exit_code == 0, result.output
    for line in result.output.strip().splitlines():
        path, caption = line.split("\t")
        assert caption == "a cyan square moving up slowly on a black background"
        truth = load_ground_truth(path, frames=9, stride=1, size=(64, 64))
        assert truth.caption == caption and np.allclose(truth.velocities[..., 1], -2.0)  # up, 2 px a frame
    still = CliRunner().invoke(cli, ["toy", "examples", str(tmp_path / "s"), "--background", "gradient", "--count", "2"])
    assert still.exit_code == 0 and all(line.endswith("on a gradient background") for line in still.output.strip().splitlines())
    for bad in (["--motion", "--colour", "pink"], ["--moving", "left"]):
        result = CliRunner().invoke(cli, ["toy", "examples", str(tmp_path / "bad"), *bad])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
        assert not (tmp_path / "bad").exists()
    help_text = " ".join(CliRunner().invoke(cli, ["toy", "examples", "--help"]).output.split())
    for word in world.BACKGROUNDS + world.MOTIONS + tuple(world.SPEED_WORDS) + world.SHAPES + world.COLOURS:
        assert word in help_text, word


def test_a_toy_run_at_another_size_than_the_toys_learnt_is_warned(tmp_path):
    from vsynth.core.run.config import RunConfig
    from vsynth.core.run.pipeline import plan_run
    from vsynth.errors import VsynthWarning

    with pytest.warns(VsynthWarning, match="--toy at 128x128: the toy models learnt at 64x64"):
        plan_run(RunConfig(toy=True, vdm="wan2.1-t2v-1.3b", prompt="a red circle moving right", frames=5, height=128, out=tmp_path / "a"))


def test_the_toy_wan_refuses_more_latent_frames_than_its_positions_in_one_line():
    """Its VAE keeps every frame and its transformer places 64: 65 frames and more crashed on a reshape, exit 1."""
    import vsynth
    from vsynth.errors import VsynthInputError
    from vsynth.toy import shipped

    if "wan2.1-t2v" not in shipped.toy_models():
        pytest.skip("the toy Wan weights are not installed")
    with pytest.raises(VsynthInputError, match=r"^--frames 69: wan2.1-t2v-1.3b's transformer places at most 64 latent frames at once"):
        vsynth.run(toy=True, vdm="wan2.1-t2v-1.3b", prompt="a red circle moving right on a white background", frames=69, steps=1)
    # run.json's windows are the loaded VAE's: the toy's keeps every frame (they were counted in the real Wan's 4-frame steps)
    windows = vsynth.run(toy=True, vdm="wan2.1-t2v-1.3b", prompt="a red circle moving right on a white background", frames=9, steps=1,
                         options={"window": 5, "overlap": 2}).record["windows"]  # fmt: skip
    assert tuple(windows[0]) == (0, 5) and windows[-1][1] == 9
