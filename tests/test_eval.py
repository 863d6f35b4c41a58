"""`vsynth eval` and metrics as plugins: the run pipeline measures through the metric hook and knows no data set,
the field's metrics (CLIP, RAFT flow, flicker, control adherence) measure what they claim, on tiny offline networks."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_plugins import plugins  # noqa: F401 - a fixture
from vsynth.testing import run_cli

CORE = Path(__file__).parents[1] / "vsynth" / "core"


def test_core_imports_nothing_from_the_toy_world_or_the_metrics():
    """Every import statement in vsynth/core, at module level or inside a function."""
    offenders = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(CORE)}: {n}" for n in names if n.split(".")[:2] in (["vsynth", "toy"], ["vsynth", "metrics"])]
    assert offenders == []


# ---------------------------------------------------------------------------- the metrics themselves


def _textured(seed=0, size=64):
    import cv2

    noise = np.random.default_rng(seed).integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8)
    return cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)


def test_flow_warping_error_is_low_for_motion_and_high_for_flicker():
    """A texture sliding 2 px a frame: the warp along DIS's flow explains it (as the true flow does); independent
    textures it cannot. RAFT's tiny random weights estimate nothing, so the flow method is checked with DIS."""
    from vsynth.metrics.flow import dis_flows, warping_errors

    base = np.tile(_textured(), (1, 2, 1))
    moving = np.stack([base[:, 2 * t : 2 * t + 64] for t in range(4)])
    forward = np.zeros((3, 64, 64, 2), np.float32)
    forward[..., 0] = -2.0  # the window slides right over the texture: the content moves 2 px left
    assert warping_errors(moving, forward, -forward).max() < 0.02
    assert warping_errors(moving, -forward, forward).min() > 0.1  # the wrong way round
    flicker = np.stack([_textured(seed) for seed in range(4)])
    assert warping_errors(moving, *dis_flows(moving)).mean() < 0.3 * warping_errors(flicker, *dis_flows(flicker)).mean()


def test_without_torchvision_the_flow_warping_error_falls_back_to_dis_and_says_so(monkeypatch):
    from vsynth.core.host.registry import get_registry
    from vsynth.core.run import measure
    from vsynth.metrics import flow

    monkeypatch.setattr(flow, "import_torchvision", lambda: None)
    frames = np.stack([np.tile(_textured(), (1, 2, 1))[:, 2 * t : 2 * t + 64] for t in range(3)])
    result = measure.measure([get_registry().metric("flow_warping_error")], {"final": frames}, measure.Sample())
    assert result.notes["flow_warping_error"].startswith("OpenCV DIS flow") and result.values["flow_warping_error"]["final"] < 0.05


def test_flicker_and_control_adherence_measure_what_they_say():
    from vsynth.metrics.control import redetected_adherence
    from vsynth.metrics.temporal import brightness_flicker

    frames = np.full((3, 8, 8, 3), 100, np.uint8)
    frames[1] += 51
    assert np.allclose(brightness_flicker(frames), [0.2, 0.2])
    depth = np.stack([np.tile(np.linspace(0, 255, 16, dtype=np.uint8)[None, :, None], (16, 1, 3))] * 2)
    assert redetected_adherence(depth, depth, "depth") == [1.0, 1.0]
    assert redetected_adherence(255 - depth, depth, "depth")[0] < 0.55
    edges = np.zeros((1, 32, 32, 3), np.uint8)
    edges[0, 10] = 255
    assert redetected_adherence(np.roll(edges, 1, axis=1), edges, "canny") == [1.0]  # within the 2-pixel tolerance
    assert redetected_adherence(np.roll(edges, 8, axis=1), edges, "canny") == [0.0]


def test_clip_metrics_on_the_tiny_clip():
    from vsynth.core.host.registry import get_registry
    from vsynth.core.run import measure

    frames = np.stack([_textured(0)] * 2 + [_textured(1)])
    specs = [get_registry().metric(name) for name in ("text_alignment", "frame_consistency")]
    result = measure.measure(specs, {"final": frames}, measure.Sample(prompt="a red circle", tiny=True))
    consistency = result.curves["frame_consistency"]["final"]
    assert consistency[0] == pytest.approx(100.0, abs=1e-3) and consistency[1] < 99.9  # the same frame twice, then another
    assert 0 < result.values["text_alignment"]["final"] <= 100
    assert len(result.curves["text_alignment"]["final"]) == 3


# ---------------------------------------------------------------------------- runs and `vsynth eval`


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
    """A toy clip (with its ground truth), and a toy ControlNet-canny run on it measured with the default set."""
    from vsynth.toy.truth import save_clip

    folder = tmp_path_factory.mktemp("eval")
    clip = folder / "clip.mp4"
    truth = save_clip(clip, 7, frames=4, n_shapes=1, background="white")
    out = folder / "run"
    result = run_cli("run", "--toy", "--idm", "controlnet-canny", "--vdm", "zeroscope", "--video", clip, "--prompt", truth.caption,
                     "--frames", 4, "--stride", 1, "--steps", 3, "--quiet", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    return clip, out


def test_a_run_records_the_default_metrics_through_the_hook(toy_runs):
    record = json.loads((toy_runs[1] / "run.json").read_text())
    metrics = record["metrics"]
    assert {"mean_abs_frame_difference", "flicker", "edge_f1", "warping_error", "colour_adherence"} <= set(metrics)
    assert "source" not in metrics["edge_f1"] and {"source", "idm", "final"} <= set(metrics["warping_error"])
    assert record["metric_plugins"]["warping_error"] == {"plugin": "vsynth", "dist": "vsynth", "version": record["vsynth"]}
    assert "text_alignment" not in metrics  # not in the cheap default set: CLIP weights


def test_eval_on_a_toy_run_measures_the_fields_metrics_and_control_adherence(toy_runs, tmp_path):
    clip, run = toy_runs
    result = run_cli("eval", run, "--tiny", "--json", "--csv", tmp_path / "m.csv")
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    metrics = record["metrics"]
    for name in ("text_alignment", "frame_consistency", "flow_warping_error", "flicker", "warping_error"):
        assert set(metrics[name]) == {"final", "idm", "source"}, name  # the source too, as run.json measures it
    assert set(metrics["control_adherence"]) == {"final", "idm"}  # against the condition: not the source
    assert record["notes"]["flow_warping_error"] == "RAFT (torchvision)"
    # run.json's figure is of the maps and frames before encoding, eval's of condition.mp4 and video.mp4: within the
    # encoding's effect (0.97 / 0.47 against 0.92 / 0.52), not condition.mp4's codec noise counted as edges (0.81 / 0.55)
    recorded = json.loads((run / "run.json").read_text())["metrics"]["edge_f1"]
    assert metrics["edge_f1"] == pytest.approx(recorded, abs=0.08)
    assert "skipped" in record and (tmp_path / "m.csv").read_text().startswith("path,video,metric,value")

    png = tmp_path / "ab.png"
    result = run_cli("eval", "--compare", run, clip, "--tiny", "--png", png, "--metrics", "flicker,frame_consistency")
    assert result.exit_code == 0, result.output
    assert "flicker" in result.stdout and Image.open(png).size[0] >= 2 * 360


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["eval", "--metrics", "sharpnes", "x.mp4"], "unknown metric 'sharpnes'"),
        (["eval", "missing.mp4"], "missing.mp4 does not exist"),
        (["eval", "--compare", "a.mp4"], "--compare needs at least two PATHS"),
        (["run", "--tiny", "--vdm", "zeroscope", "--prompt", "a", "--metrics", ","], "--metrics is empty"),
        (["run", "--tiny", "--vdm", "zeroscope", "--prompt", "a", "--metrics", "nope"], "unknown metric 'nope'"),
    ],
)
def test_bad_metric_requests_are_one_line_and_exit_2(args, line):
    result = run_cli(*args)
    assert result.exit_code == 2 and line in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.output


def test_eval_checks_where_it_writes_before_measuring(toy_runs, tmp_path, monkeypatch):
    """--csv a folder, --png of a type PIL cannot write, or in a place no folder can be made: one line and exit 2,
    before any metric runs (they crashed with a traceback after measuring); a missing parent folder is made."""
    from vsynth import evaluation

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured before checking the output files")

    clip, run = toy_runs
    (tmp_path / "blocker").write_text("a file")
    with monkeypatch.context() as patch:
        patch.setattr(evaluation, "evaluate", no_measuring)
        for args, line in [(["--csv", tmp_path], "is a folder"), (["--compare", clip, "--png", tmp_path / "c.txt"], "name a file ending in .png"),
                           (["--csv", tmp_path / "blocker" / "m.csv"], "is a file, not a folder")]:  # fmt: skip
            result = run_cli("eval", run, "--tiny", "--metrics", "flicker", *args)
            assert result.exit_code == 2 and line in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.output
    result = run_cli("eval", run, "--tiny", "--metrics", "flicker", "--csv", tmp_path / "new" / "m.csv")
    assert result.exit_code == 0 and (tmp_path / "new" / "m.csv").read_text().startswith("path,video,metric,value")


def test_metric_weights_that_cannot_be_had_are_one_line_or_skipped_when_nobody_named_them(toy_runs, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    from vsynth.metrics import flow

    monkeypatch.setattr(flow, "import_torchvision", lambda: None)  # DIS flow: no RAFT download attempted
    result = run_cli("eval", toy_runs[0], "--metrics", "text_alignment", "--prompt", "a red circle")
    assert result.exit_code == 2 and "cannot get clip weights" in result.stderr, result.output
    result = run_cli("eval", toy_runs[0], "--json", "--prompt", "a red circle")  # every metric: CLIP's are skipped, with the reason
    (record,) = json.loads(result.stdout)
    assert "cannot get clip weights" in record["skipped"]["text_alignment"] and "warping_error" in record["metrics"]
    result = run_cli("run", "--toy", "--vdm", "zeroscope", "--prompt", "a red circle", "--frames", 2, "--steps", 2,
                     "--metrics", "text_alignment", "--out", tmp_path / "o")  # fmt: skip
    assert result.exit_code == 2 and "cannot get clip weights 'openai/clip-vit-base-patch32'" in result.stderr, result.output
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------- prompt suites

TWO_BRIDGES = """
defaults: {frames: 2, steps: 2, height: 64, width: 64, stride: 1}
metrics: [flicker, mean_abs_frame_difference]
configurations:
  - {name: zeroscope, task: text-to-video, vdm: zeroscope}
  - {name: modelscope, task: text-to-video, vdm: modelscope}
  - {name: canny, task: controllable-generation, idm: controlnet-canny, vdm: zeroscope}
prompts:
  - {name: ball, task: text-to-video, prompt: a red ball}
  - {name: ball-on-table, task: text-to-video, prompt: a red ball on a table}
"""


def test_a_suite_runs_through_batch_and_aggregates_per_configuration(tmp_path):
    suite = tmp_path / "two.yaml"
    suite.write_text(TWO_BRIDGES)
    result = run_cli("eval", "--suite", suite, "--tiny", "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)["configurations"]
    assert (table["zeroscope"]["ok"], table["modelscope"]["ok"], table["canny"]["jobs"]) == (2, 2, 0)  # no prompt of its task
    finals = [json.loads((tmp_path / "out" / f"zeroscope.{p}" / "run.json").read_text())["metrics"]["flicker"]["final"] for p in ("ball", "ball-on-table")]
    assert table["zeroscope"]["metrics"]["flicker"] == pytest.approx(sum(finals) / 2, abs=1e-4)
    assert set(table["modelscope"]["metrics"]) == {"flicker", "mean_abs_frame_difference"}
    assert "| flicker |" in (tmp_path / "out" / "suite.md").read_text()
    # a rerun with other --metrics changes every job: refused, then run again when asked (the batch's --rerun-changed)
    again = run_cli("eval", "--suite", suite, "--tiny", "--out", tmp_path / "out", "--metrics", "flicker")
    assert again.exit_code == 2 and "changed since" in again.stderr and "pass --rerun-changed" in again.stderr, again.output
    again = run_cli("eval", "--suite", suite, "--tiny", "--out", tmp_path / "out", "--metrics", "flicker", "--rerun-changed", "--json")
    assert again.exit_code == 0, again.output
    assert set(json.loads(again.stdout)["configurations"]["zeroscope"]["metrics"]) == {"flicker"}


def test_the_shipped_suite_plans_every_job_on_the_tiny_models(tmp_path):
    """Each job of the default suite passes a run's checks (models, inputs, paths beside the suite file)."""
    from vsynth.batch.runner import prepare_batch
    from vsynth.suite import jobs_of, read_suite, suite_path

    path = suite_path("default")
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(json.dumps(jobs_of(read_suite(path), path.parent, tiny=True)))
    batch = prepare_batch(jobs, tmp_path / "out")
    assert {r.status for r in batch.results.values()} == {"pending"}, {n: r.error for n, r in batch.results.items() if r.error}
    assert len(batch.results) == 7


# ---------------------------------------------------------------------------- a third party's metric

FAULTY = '''
from vsynth import hookimpl
from vsynth.core.host.specs import MetricSpec
from vsynth.core.run.measure import Metric


class Faulty(Metric):
    def measure(self, frames, sample):
        raise ZeroDivisionError("no frames to divide by")


@hookimpl
def vsynth_register_metrics(registrar):
    registrar.register_metric(MetricSpec(name="faulty", description="always fails", impl="vsynth_faulty:Faulty"))
    registrar.register_metric(MetricSpec(name="flicker", description="takes a built-in name", impl="vsynth_faulty:Faulty"))
'''


def test_a_plugins_metric_failing_is_one_line_naming_it_and_cannot_shadow_a_builtin(tmp_path, monkeypatch):
    from importlib import metadata

    from vsynth.core.host.registry import build_registry
    from vsynth.core.run import measure
    from vsynth.errors import PluginRunError

    (tmp_path / "vsynth_faulty.py").write_text(FAULTY)
    info = tmp_path / "vsynth_faulty-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vsynth-faulty\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[vsynth]\nfaulty = vsynth_faulty\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = build_registry(metadata.PathDistribution(info).entry_points)
    plugin = next(p for p in registry.plugins if p.name == "faulty")
    assert plugin.warnings == ["metric 'flicker' not loaded: the name belongs to a built-in metric"]
    assert registry.metric("flicker").plugin == "vsynth"
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(PluginRunError, match=r"^plugin vsynth-faulty 1.0: metric 'faulty' failed: ZeroDivisionError: no frames"):
        measure.measure([registry.metric("faulty")], {"final": frames}, measure.Sample(), registry)
    # a run's video is made by then: it records the failure and measures the others
    kept = measure.measure([registry.metric("faulty"), registry.metric("flicker")], {"final": frames}, measure.Sample(), registry, keep_going=True)
    assert kept.failed["faulty"].startswith("plugin vsynth-faulty 1.0: metric 'faulty' failed") and kept.values["flicker"] == {"final": 0.0}


def test_compare_charts_label_their_axis_ends_apart():
    """Frame consistency runs 99.97 to 100: at 3 significant digits both ends of its axis read "100"."""
    from vsynth.evaluation import axis_labels

    assert axis_labels(0.0001, 0.0197) == ("0.0197", "0.0001")
    assert axis_labels(99.97, 99.9998) == ("100", "99.97")
    assert axis_labels(5.0, 5.0000001) == ("5", "5")  # beyond 6 digits: left as is, the chart spreads its curve anyway


def test_a_one_frame_video_has_no_motion_to_measure_and_a_short_source_names_eval_s_fix(tmp_path):
    """One frame: frame difference, speed and the motion agreements are not measured, as they need 2 frames (they read 0, as if measured);
    a source shorter than the video: the fix is eval's, not a run's --frames / --stride."""
    import imageio.v3 as iio

    frame = np.full((1, 64, 64, 3), 255, np.uint8)
    frame[0, 20:30, 20:30] = (230, 30, 30)
    iio.imwrite(tmp_path / "one.mp4", np.repeat(frame, 2, axis=0)[:1], fps=8)
    result = run_cli("eval", tmp_path / "one.mp4", "--tiny", "--json", "--prompt", "a red circle moving left on a white background",
                     "--metrics", "mean_abs_frame_difference,shape_speed,direction_agreement,speed_agreement")  # fmt: skip
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert record["metrics"] == {} and set(record["skipped"].values()) == {"needs at least 2 frames"}
    iio.imwrite(tmp_path / "three.mp4", np.repeat(frame, 3, axis=0), fps=8)
    iio.imwrite(tmp_path / "eight.mp4", np.repeat(frame, 8, axis=0), fps=8)
    result = run_cli("eval", tmp_path / "eight.mp4", "--source", tmp_path / "three.mp4", "--tiny", "--metrics", "flicker")
    assert result.exit_code == 2 and "--source must have a frame for each of" in result.stderr and "--frames" not in result.stderr


def test_png_without_compare_is_refused_rather_than_ignored(tmp_path):
    result = run_cli("eval", tmp_path, "--png", tmp_path / "x.png", "--metrics", "flicker")
    assert result.exit_code == 2 and result.stderr.strip() == "Error: --png is where --compare draws: add --compare (or drop --png)"


INFINITE = """
from vsynth import hookimpl
from vsynth.core.host.specs import MetricSpec
from vsynth.core.run.measure import Metric


class Faulty(Metric):
    def measure(self, frames, sample):
        raise ZeroDivisionError("no frames to divide by")


class Endless(Metric):
    def measure(self, frames, sample):
        return [float("inf")] * len(frames)


@hookimpl
def vsynth_register_metrics(registrar):
    registrar.register_metric(MetricSpec(name="faulty", description="always fails", impl="vsynth_endless:Faulty"))
    registrar.register_metric(MetricSpec(name="endless", description="infinite", impl="vsynth_endless:Endless"))
"""


def test_eval_measures_the_other_metrics_when_a_plugins_fails_and_writes_valid_json(tmp_path, plugins):
    """One raising metric stopped `vsynth eval` for every metric (exit 2, nothing measured); an infinite value was
    printed as JSON's invalid Infinity."""
    from click.testing import CliRunner

    from vsynth.cli import cli
    from vsynth.testing import write_sample_video

    plugins("vsynth-endless", INFINITE)
    video = write_sample_video(tmp_path / "v.mp4", frames=3)
    result = CliRunner().invoke(cli, ["eval", str(video), "--metrics", "faulty,endless,flicker", "--json"])
    assert result.exit_code == 1, result.output
    assert "Warning: faulty failed on" in result.stderr and "ZeroDivisionError: no frames to divide by" in result.stderr
    (record,) = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))  # no Infinity or NaN
    assert "flicker" in record["metrics"] and "endless" not in record["metrics"] and "faulty" in record["failed"]
    assert record["skipped"]["endless"] == "not measurable on these videos"


def test_a_folder_that_is_no_run_and_holds_videos_says_so(tmp_path):
    """It read 'holds no image files', as if a folder of frames were all eval takes."""
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"")
    result = run_cli("eval", tmp_path / "clips", "--tiny")
    assert result.exit_code == 2
    assert "is neither a run folder (no run.json) nor a folder of frames (it holds a.mp4: give one of them)" in result.stderr
