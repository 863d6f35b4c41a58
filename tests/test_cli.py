"""The command line through click's CliRunner: listings, start-up cost and bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from vsynth.cli import cli

SAMPLE = Path(__file__).parents[1] / "examples" / "shapes.mp4"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_models_json_lists_builtins_with_their_fields():
    result = invoke("models", "--json")
    assert result.exit_code == 0, result.output
    records = {r["name"]: r for r in json.loads(result.stdout)}
    assert {"controlnet-canny", "controlnet-depth", "zeroscope", "mixed-inversion"} <= set(records)
    for record in records.values():
        assert {"name", "kind", "plugin", "description"} <= set(record)
    assert records["zeroscope"]["kind"] == "vdm"
    assert records["mixed-inversion"]["params"]["mixing_ratio"]["default"] == 1.0


def test_models_kind_filter():
    result = invoke("models", "--kind", "bridge", "--json")
    kinds = {r["kind"] for r in json.loads(result.stdout)}
    assert kinds == {"bridge"}


def test_plugins_json_reports_builtin_ok():
    records = json.loads(invoke("plugins", "--json").stdout)
    builtin = next(r for r in records if r["name"] == "vsynth")
    assert builtin["status"] == "ok" and builtin["error"] == "" and builtin["version"]


@pytest.mark.parametrize(
    "args", [["--help"], ["models"], ["models", "--json"], ["plugins"], ["run", "--help"], ["batch", "--help"], ["ui", "--help"]]
)
def test_listing_commands_never_import_torch_ray_or_gradio(args):
    code = f"import sys; from vsynth.cli import cli; cli({args!r}, standalone_mode=False); print(sorted({{'torch', 'ray', 'gradio'}} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def _run_args(tmp_path, **overrides):
    args = {"--idm": "controlnet-canny", "--vdm": "zeroscope", "--video": SAMPLE, "--prompt": "a ball", "--tiny": None,
            "--out": tmp_path / "out", "--steps": 2}  # fmt: skip
    args.update(overrides)
    flat = []
    for key, value in args.items():
        flat += [key] if value is None else [key, value]
    return flat


def _not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video")
    return path


BAD_INPUTS = {
    "unknown model": ({"--idm": "controlnet-cany"}, "did you mean 'controlnet-canny'"),
    "missing video": ({"--video": "does-not-exist.mp4"}, "does-not-exist.mp4"),
    "unreadable video": ({"--video": _not_a_video}, "notes.mp4"),
    "negative frames": ({"--frames": -1}, "frames"),
    "too many frames": ({"--frames": 20}, "lower --frames or --stride"),
    "unknown option": ({"-o": "mixing_ration=0.5"}, "did you mean 'mixing_ratio'"),
    "bad option value": ({"-o": "mixing_ratio=2"}, "mixing_ratio"),
    "unknown bridge": ({"--bridge": "mixed"}, "unknown bridge 'mixed'"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    overrides, expected = BAD_INPUTS[case]
    overrides = {k: (v(tmp_path) if callable(v) else v) for k, v in overrides.items()}
    result = invoke("run", *_run_args(tmp_path, **overrides))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert expected in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "outputs").exists()


def test_output_folder_that_holds_files_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    result = invoke("run", *_run_args(tmp_path))
    assert result.exit_code == 2 and "not empty" in result.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_missing_weights_without_tiny_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    args = _run_args(tmp_path)
    args.remove("--tiny")
    result = invoke("run", *args)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "lllyasviel/control_v11p_sd15_canny" in line and "GB" in line and "--idm-weights" in line and "--tiny" in line
    assert not (tmp_path / "out").exists()


def test_config_file_values_are_used_and_flags_override_them(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("idm: controlnet-canny\nvdm: zeroscope\nprompt: a ball\nframes: 3\noptions:\n  mixing_ratio: 0.5\n")
    result = invoke("run", "--config", config, "--video", SAMPLE, "--frames", 99, "--tiny", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "fewer than the 99 requested" in result.stderr
