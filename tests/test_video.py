"""Tests of vsynth.core.media.video: reading, writing, probing, grids and the shipped sample clip."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vsynth.core.media.video import (
    Video,
    make_grid,
    mean_abs_frame_difference,
    probe_video,
    read_video,
    round_size,
    write_gif,
    write_mp4,
)
from vsynth.errors import VideoError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def numbered_frames(count: int, height: int = 64, width: int = 64) -> np.ndarray:
    """Flat frames whose gray level encodes their index, so order survives lossy codecs."""
    levels = np.linspace(0, 240, count).round().astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).copy()


def frame_levels(frames: np.ndarray) -> np.ndarray:
    return frames.reshape(len(frames), -1).mean(axis=1)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    write_mp4(path, numbered_frames(20), fps=8)
    return path


def test_round_size_rounds_down_with_a_floor():
    assert round_size(263, 250) == (256, 248)
    assert round_size(263, 250, multiple=64) == (256, 192)
    assert round_size(30, 7, multiple=64) == (64, 64)
    assert round_size(512, 512, multiple=64) == (512, 512)


def test_probe_mp4(clip: Path):
    info = probe_video(clip)
    assert (info.num_frames, info.width, info.height, info.fps) == (20, 64, 64, 8.0)
    assert info.path == clip


def test_read_mp4_all_frames(clip: Path):
    video = read_video(clip)
    assert isinstance(video, Video)
    assert video.frames.shape == (20, 64, 64, 3) and video.frames.dtype == np.uint8
    assert video.fps == 8.0
    np.testing.assert_allclose(frame_levels(video.frames), frame_levels(numbered_frames(20)), atol=3)


def test_read_mp4_stride_start_frames_and_fps(clip: Path):
    video = read_video(clip, frames=4, stride=3, start=2)
    assert video.frames.shape == (4, 64, 64, 3)
    assert video.fps == pytest.approx(8 / 3)
    expected = frame_levels(numbered_frames(20))[[2, 5, 8, 11]]
    np.testing.assert_allclose(frame_levels(video.frames), expected, atol=3)


def test_read_mp4_stride_without_frame_count_takes_all_it_can(clip: Path):
    assert len(read_video(clip, stride=4).frames) == 5
    assert len(read_video(clip, stride=4, start=1).frames) == 5
    assert len(read_video(clip, stride=4, start=17).frames) == 1


def test_read_mp4_resizes_to_exact_size(clip: Path):
    video = read_video(clip, frames=2, size=(40, 24))
    assert video.frames.shape == (2, 40, 24, 3)


def test_write_mp4_odd_size_pads_to_even(tmp_path: Path):
    path = tmp_path / "odd.mp4"
    write_mp4(path, numbered_frames(3, height=33, width=65), fps=5)
    info = probe_video(path)
    assert (info.num_frames, info.height, info.width) == (3, 34, 66)
    assert read_video(path).frames.shape == (3, 34, 66, 3)


def test_write_mp4_tiny_clip(tmp_path: Path):
    path = tmp_path / "sub" / "tiny.mp4"
    rng = np.random.default_rng(0)
    write_mp4(path, rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8), fps=8)
    assert read_video(path).frames.shape == (8, 64, 64, 3)


def test_gif_round_trip(tmp_path: Path):
    path = tmp_path / "clip.gif"
    frames = numbered_frames(6, height=32, width=48)
    write_gif(path, frames, fps=10)
    info = probe_video(path)
    assert (info.num_frames, info.height, info.width) == (6, 32, 48)
    assert info.fps == pytest.approx(10)
    video = read_video(path, frames=3, stride=2)
    assert video.frames.shape == (3, 32, 48, 3)
    assert video.fps == pytest.approx(5)
    np.testing.assert_allclose(frame_levels(video.frames), frame_levels(frames)[[0, 2, 4]], atol=2)
    with Image.open(path) as gif:
        assert gif.info["loop"] == 0  # loops forever
    write_gif(tmp_path / "fast.gif", numbered_frames(24, height=8, width=8), fps=240)  # a GIF's shortest delay is 2 cs
    fast = probe_video(tmp_path / "fast.gif")
    assert (fast.num_frames, fast.fps) == (5, pytest.approx(50))  # every 5th frame: it plays as long as the clip (0.1 s)


def test_folder_of_images_in_natural_name_order(tmp_path: Path):
    frames = numbered_frames(12, height=16, width=20)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"frame_{i}.png")  # frame_10 must come after frame_9
    Image.fromarray(frames[0][..., 0], mode="L").save(tmp_path / "frame_12.png")  # grayscale is converted
    (tmp_path / "notes.txt").write_text("not a frame")
    info = probe_video(tmp_path)
    assert (info.num_frames, info.fps, info.width, info.height) == (13, None, 20, 16)
    video = read_video(tmp_path)
    assert video.fps is None
    assert video.frames.shape == (13, 16, 20, 3)
    np.testing.assert_array_equal(video.frames[:12], frames)
    np.testing.assert_array_equal(read_video(tmp_path, frames=3, stride=5).frames, frames[[0, 5, 10]])


def test_missing_path(tmp_path: Path):
    missing = tmp_path / "nope.mp4"
    for call in (probe_video, read_video):
        with pytest.raises(VideoError, match="nope.mp4 does not exist"):
            call(missing)


def test_unreadable_mp4(tmp_path: Path):
    bad = tmp_path / "x.mp4"
    bad.write_text("this is not a video")
    for call in (probe_video, read_video):
        with pytest.raises(VideoError, match=r"x\.mp4 cannot be read as a video"):
            call(bad)


def test_unreadable_gif(tmp_path: Path):
    bad = tmp_path / "x.gif"
    bad.write_text("this is not a gif")
    with pytest.raises(VideoError, match=r"x\.gif cannot be read"):
        read_video(bad)


def test_empty_folder(tmp_path: Path):
    empty = tmp_path / "frames"
    empty.mkdir()
    for call in (probe_video, read_video):
        with pytest.raises(VideoError, match="frames holds no image files"):
            call(empty)


def test_too_few_frames_for_frames_times_stride(clip: Path):
    with pytest.raises(VideoError) as caught:
        read_video(clip, frames=8, stride=4)
    message = str(caught.value)
    assert "clip.mp4 has 20 frames; at stride 4 that gives 5, fewer than the 8 requested" in message
    assert "\n" not in message


def test_start_past_the_end(clip: Path):
    with pytest.raises(VideoError, match="clip.mp4 has 20 frames"):
        read_video(clip, start=25)


def test_unsupported_extension(tmp_path: Path):
    path = tmp_path / "clip.txt"
    path.write_text("hello")
    with pytest.raises(VideoError, match=r"clip\.txt has unsupported type '\.txt'"):
        probe_video(path)


def test_invalid_request_values(clip: Path):
    for kwargs in ({"frames": 0}, {"stride": 0}, {"start": -1}, {"size": (0, 8)}):
        with pytest.raises(VideoError, match="clip.mp4"):
            read_video(clip, **kwargs)


def test_make_grid_size_and_rows():
    frames = numbered_frames(8, height=64, width=96)
    rows = [(name, frames) for name in ("source", "condition", "IDM", "final")]
    grid = make_grid(rows, columns=4, cell_height=32)
    one_row = make_grid(rows[1:2], columns=4, cell_height=32)  # "condition": the widest label
    assert grid.mode == "RGB"
    assert grid.width == one_row.width
    row_pitch = (grid.height - one_row.height) / 3
    assert 32 <= row_pitch <= 40  # a cell plus a small gap per extra row
    assert grid.width >= 4 * 48 + 20  # four 48-pixel cells (96x64 scaled to height 32) plus the label margin
    assert grid.getpixel((0, 0)) == (255, 255, 255)


def test_make_grid_mixed_sizes_and_short_rows():
    grid = make_grid(
        [("wide", numbered_frames(8, 32, 64)), ("short", numbered_frames(2, 32, 32))], columns=4, cell_height=16
    )
    assert grid.width >= 4 * 32 and grid.height >= 2 * 16
    two = make_grid([("final", numbered_frames(2, 32, 32))], columns=4, cell_height=16)  # a 2-frame run: no empty columns
    assert two.width < make_grid([("final", numbered_frames(4, 32, 32))], columns=4, cell_height=16).width - 2 * 16


def test_mean_abs_frame_difference():
    constant = np.full((5, 8, 8, 3), 77, np.uint8)
    assert mean_abs_frame_difference(constant) == 0.0
    assert mean_abs_frame_difference(constant[:1]) == 0.0
    changing = numbered_frames(3, 8, 8)  # levels 0, 120, 240
    assert mean_abs_frame_difference(changing) == pytest.approx(120 / 255)


def test_shipped_sample_video():
    info = probe_video(EXAMPLES / "shapes.mp4")
    assert (info.num_frames, info.width, info.height, info.fps) == (32, 256, 256, 8.0)
    assert (EXAMPLES / "shapes.mp4").stat().st_size < 300 * 1024
    video = read_video(EXAMPLES / "shapes.mp4", frames=8, stride=4)
    assert video.frames.shape == (8, 256, 256, 3) and video.fps == 2.0
    assert mean_abs_frame_difference(video.frames) > 0


def test_a_relative_path_with_a_colon_is_a_file_to_ffmpeg_and_its_failures_raise(tmp_path, monkeypatch):
    """ffmpeg read 'run:1/video.mp4' as a URL of the protocol 'run': every MP4 of `--out run:1` was lost, exit 0."""
    monkeypatch.chdir(tmp_path)
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    write_mp4("run:1/video.mp4", frames, 8)
    assert probe_video("run:1/video.mp4").num_frames == 3 and len(read_video("run:1/video.mp4").frames) == 3
    (tmp_path / "taken.mp4").mkdir()  # ffmpeg cannot open a folder as its output
    with pytest.raises(OSError, match="ffmpeg wrote no video"):
        write_mp4("taken.mp4", frames, 8)


def test_sixteen_bit_grayscale_frames_are_scaled_not_clipped_to_white(tmp_path):
    """16-bit depth maps (`--condition-video` of PNGs) read as 98% white: Pillow's conversion clips above 255."""
    ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint16), (8, 1))  # 0..252, 64 wide
    folder = tmp_path / "depth16"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(ramp * 257).save(folder / f"{i:03d}.png")  # Pillow writes (and reads) mode I;16
    frames = read_video(folder).frames
    assert frames.shape == (2, 8, 64, 3) and np.array_equal(frames[0, :, :, 0], ramp.astype(np.uint8))


def test_a_phone_videos_rotation_is_read_upright_without_imageio_noise(tmp_path, caplog):
    """A portrait phone clip (rotation metadata) printed imageio-ffmpeg's size warning on stderr, past --quiet."""
    import subprocess

    import imageio_ffmpeg

    write_mp4(tmp_path / "wide.mp4", np.zeros((2, 16, 32, 3), np.uint8), 8)
    rotated = tmp_path / "phone.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-display_rotation", "90", "-i", str(tmp_path / "wide.mp4"),
                    "-c", "copy", str(rotated)], check=True)  # fmt: skip
    with caplog.at_level("WARNING"):
        assert read_video(rotated).frames.shape == (2, 32, 16, 3)
    assert not caplog.records


def test_a_url_is_said_to_be_one():
    """It read 'https:/example.com/v.mp4 does not exist' (a Path folds the '//')."""
    with pytest.raises(VideoError, match=r"^https://example.com/v.mp4 is a URL: vsynth reads files here; download it first$"):
        probe_video("https://example.com/v.mp4")


def test_an_image_or_an_audio_file_given_as_a_video_says_what_it_is(tmp_path):
    """'unsupported type .png: use a video or a folder of images' read as a contradiction; an audio-only .mp4 read as
    'corrupt, incomplete or not a video'."""
    import subprocess

    import imageio_ffmpeg

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "still.png")
    with pytest.raises(VideoError, match=r"still.png is one image: give a video, or a folder of images"):
        probe_video(tmp_path / "still.png")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "sine=duration=0.2", "-c:a", "aac",
                    str(tmp_path / "song.mp4")], check=True)  # fmt: skip
    with pytest.raises(VideoError, match=r"song.mp4 holds no video stream \(only audio\)"):
        probe_video(tmp_path / "song.mp4")
