"""Reading and writing long runs: chunked VAE, outputs written without copying the clip, a capped GIF."""

import tracemalloc

import numpy as np
import pytest
import torch

from vsynth.core.diffusion.components import VaeCodec
from vsynth.core.media.video import probe_video, read_video, write_gif, write_mp4
from vsynth.testing import sample_frames


def test_write_mp4_never_copies_the_whole_clip(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (64, 65, 65, 3), dtype=np.uint8)  # odd: every frame is padded
    tracemalloc.start()
    try:
        write_mp4(tmp_path / "v.mp4", frames, fps=8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < frames.nbytes / 8
    assert probe_video(tmp_path / "v.mp4").num_frames == 64 and read_video(tmp_path / "v.mp4", frames=1).frames.shape == (1, 66, 66, 3)


def test_a_long_gif_keeps_every_kth_frame_at_the_same_speed(tmp_path):
    levels = np.arange(100, dtype=np.uint8) * 2
    frames = np.broadcast_to(levels[:, None, None, None], (100, 16, 16, 3)).copy()
    write_gif(tmp_path / "long.gif", frames, fps=12, max_frames=48)  # every 3rd frame at 4 fps
    info = probe_video(tmp_path / "long.gif")
    assert info.num_frames == 34 and info.fps == pytest.approx(4)
    np.testing.assert_array_equal(read_video(tmp_path / "long.gif").frames[:, 0, 0, 0], levels[::3])
    write_gif(tmp_path / "short.gif", frames[:48], fps=12, max_frames=48)
    assert probe_video(tmp_path / "short.gif").num_frames == 48


def test_chunked_encode_and_decode_equal_one_chunk(canny):
    vae = canny.codec.vae
    frames = sample_frames(7)
    whole, chunked = VaeCodec(vae, batch_size=7), VaeCodec(vae, batch_size=3)
    latents = whole.encode(frames)
    torch.testing.assert_close(chunked.encode(frames), latents)
    torch.testing.assert_close(chunked.encode(frames, torch.Generator().manual_seed(0)), whole.encode(frames, torch.Generator().manual_seed(0)))
    np.testing.assert_allclose(chunked.decode(latents), whole.decode(latents), atol=1)  # batch size changes BLAS rounding
