"""The toy world: its clips and ground truth from the CLI, and runs on its shipped trained models."""

import json

from click.testing import CliRunner

from vsynth.cli import cli
from vsynth.toy.world import make_clip, words_outside_vocabulary


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_clips_are_seeded_and_described():
    a, b = make_clip(3, frames=4), make_clip(3, frames=4)
    assert (a.frames == b.frames).all() and a.caption == b.caption
    assert a.caption.startswith("a ") and a.caption.endswith(" background")
    assert words_outside_vocabulary(a.caption) == []
    assert words_outside_vocabulary("a red corgi on a white beach") == ["corgi", "beach"]


def test_toy_examples_writes_clips_with_their_ground_truth(tmp_path):
    result = invoke("toy", "examples", tmp_path / "clips", "--count", 2, "--frames", 4)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2
    path, caption = lines[0].split("\t")
    assert json.loads((tmp_path / "clips" / "toy0.json").read_text())["caption"] == caption == make_clip(0, frames=4, n_shapes=1).caption
    assert (tmp_path / "clips" / "toy1.mp4").is_file()
