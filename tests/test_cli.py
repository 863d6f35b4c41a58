"""The command line through click's CliRunner: listings, start-up cost and bad input."""

import json
import os
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


def test_models_json_has_every_spec_field_and_the_full_params_schema():
    records = {r["qualified_name"]: r for r in json.loads(invoke("models", "--json").stdout)}
    lightning, canny, composition = records["vsynth/animatediff-lightning"], records["vsynth/controlnet-canny"], records["vsynth/vdm-only"]
    assert (lightning["native_size"], lightning["max_frames"], lightning["sampler"]) == ([512, 512], 32, lightning["sampler"]) and "Euler" in lightning["sampler"]
    assert canny["needs"] == ["video|condition_video"] and "accepts" in canny and canny["toy"] in (True, False)
    assert [w["override"] for w in canny["weights"]] == ["--idm-weights DIR", "-o base=DIR"]
    assert (composition["needs_idm"], composition["video"], composition["task"]) == (False, "required", composition["task"])
    checkpoint = lightning["params_schema"]["properties"]["checkpoint_steps"]
    assert checkpoint["enum"] == [1, 2, 4, 8]
    ratio = records["vsynth/mixed-inversion"]["params_schema"]["properties"]["mixing_ratio"]
    assert (ratio["minimum"], ratio["maximum"]) == (0.0, 1.0)


def test_models_name_shows_one_model_in_full():
    result = invoke("models", "animatediff-lightning")
    assert result.exit_code == 0, result.output
    assert "max_frames: 32" in result.stdout and "replace with -o base=DIR" in result.stdout
    assert "checkpoint_steps (integer, default 4, one of 1, 2, 4, 8)" in result.stdout
    record = json.loads(invoke("models", "vsynth/mixed-inversion", "--json").stdout)
    assert record["kind"] == "bridge" and record["needs_idm"] is True and record["paper"]
    result = invoke("models", "controlnet-canyn")
    assert result.exit_code == 2 and "did you mean 'controlnet-canny'?" in result.stderr


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


DROP = object()  # an override that removes the flag


def _run_args(tmp_path, **overrides):
    args = {"--idm": "controlnet-canny", "--vdm": "zeroscope", "--video": SAMPLE, "--prompt": "a ball", "--tiny": None,
            "--out": tmp_path / "out", "--steps": 2}  # fmt: skip
    args.update(overrides)
    flat = []
    for key, value in args.items():
        if value is not DROP:
            flat += [key] if value is None else [key, value]
    return flat


def _not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video")
    return path


def _folder_with_a_bad_later_frame(tmp_path):
    """Ten good frames but the fifth (the second taken at stride 4) is garbage."""
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(10):
        Image.new("RGB", (64, 64), (i * 20, 0, 0)).save(folder / f"{i:03d}.png")
    (folder / "004.png").write_bytes(b"not a png")
    return folder


def _named_pipe(tmp_path):
    path = tmp_path / "pipe.mp4"
    os.mkfifo(path)
    return path


def _file(name, text="x"):
    def make(tmp_path):
        path = tmp_path / name
        path.write_text(text)
        return path

    return make


def _folder(name):
    def make(tmp_path):
        (tmp_path / name).mkdir()
        return tmp_path / name

    return make


def _read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return folder / "out"


def _config(text):
    def make(tmp_path):
        path = tmp_path / "run.yaml"
        path.write_text(text)
        return path

    return make


NO_IDM = {"--idm": DROP, "--video": DROP}

# name: (flag overrides (a callable makes its value from tmp_path), exit code, part of the one line)
BAD_INPUTS = {
    "unknown model": ({"--idm": "controlnet-cany"}, 2, "did you mean 'controlnet-canny'"),
    "empty idm": ({"--idm": ""}, 2, '--idm "": is empty'),
    "empty bridge": ({"--bridge": ""}, 2, '--bridge "": is empty'),
    "unknown bridge": ({"--bridge": "mixed"}, 2, "unknown bridge 'mixed'"),
    "idm prompt without idm": ({**NO_IDM, "--idm-prompt": "edit"}, 2, "--idm-prompt is the image model's prompt"),
    "missing video": ({"--video": "does-not-exist.mp4"}, 2, "does-not-exist.mp4"),
    "unreadable video": ({"--video": _not_a_video}, 2, "notes.mp4"),
    "garbage later frame": ({"--video": _folder_with_a_bad_later_frame, "--frames": 2}, 2, "004.png cannot be read"),
    "named pipe": ({"--video": _named_pipe}, 2, "not a regular file"),
    "negative frames": ({"--frames": -1}, 2, "--frames -1: must be between 1 and 257"),
    "unbounded frames": ({"--frames": 100000}, 2, "--frames 100000: must be between 1 and 257"),
    "too many frames": ({"--frames": 20}, 2, "lower --frames or --stride"),
    "huge size": ({"--height": 100000, "--width": 100000}, 2, "--height 100000: must be between 1 and 2048"),
    "steps past training": ({"--steps": 1001}, 2, "--steps 1001: controlnet-canny was trained with 1000 timesteps"),
    "seed at 2**64": ({"--seed": 2**64}, 2, "--seed 18446744073709551616: must be between 0 and 18446744073709551615"),
    "negative seed": ({"--seed": -1}, 2, "--seed -1: must be between 0 and"),
    "infinite guidance": ({"--guidance": "inf"}, 2, "--guidance inf: must be a finite number"),
    "huge guidance": ({"--guidance": 1e308}, 2, "--guidance 1e+308: must be more than 0 and at most 50"),
    "unknown option": ({"-o": "mixing_ration=0.5"}, 2, "did you mean 'mixing_ratio'"),
    "option out of range": ({"-o": "mixing_ratio=2"}, 2, "-o mixing_ratio=2: must be between 0 and 1"),
    "infinite option": ({"-o": "mixing_ratio=inf"}, 2, "-o mixing_ratio=inf: must be a finite number"),
    "tiny and toy": ({"--toy": None}, 2, "--tiny and --toy both choose the weights"),
    "toy without toy weights": ({"--tiny": DROP, "--toy": None, "--idm": "controlnet-depth"}, 2, "controlnet-depth has no toy weights"),
    "t2v steps past the VDM's": ({"--bridge": "encapsulated", "-o": "t2v_steps=50"}, 2, "-o t2v_steps=50 exceeds the"),
    "device meta": ({"--device": "meta"}, 2, "--device meta: not a device"),
    "out empty": ({"--out": ""}, 2, '--out "": is empty'),
    "out dot": ({"--out": "."}, 2, "--out .: names an existing folder"),
    "out parent is a file": ({"--out": lambda t: _file("afile")(t) / "out"}, 2, "is a file, not a folder"),
    "idm weights missing": ({"--idm-weights": lambda t: t / "nowhere"}, 2, "controlnet weights directory not found"),
    "idm weights without config": ({"--idm-weights": _folder("empty")}, 2, "the folder lacks config.json (the top level holds no files)"),
    "idm weights not weights": ({"--idm-weights": _file("notes.txt")}, 2, "not a weights folder nor a weights file"),
    "bad safetensors": ({"--vdm-weights": _file("w.safetensors", "garbage")}, 2, "not a readable safetensors file"),
    "base weights without config": ({"-o": lambda t: f"base={_folder('base')(t)}"}, 2, "base weights"),
    "config options not a mapping": ({"--config": _config("options: 5\n")}, 2, "options must be a mapping"),
    "config options a list": ({"--config": _config("options: [a, b]\n")}, 2, "options must be a mapping"),
    "config key not text": ({"--config": _config("1: 2\n")}, 2, "key 1 must be a name"),
    "config option key not text": ({"--config": _config("options:\n  1: 2\n")}, 2, "key options.1 must be a name"),
    "config key typo": ({"--config": _config("frmaes: 2\n")}, 2, "unknown setting 'frmaes': did you mean 'frames'?"),
    "cross-field option": ({"-o": "overlap=30"}, 2, "-o overlap=30: overlap 30 must be smaller than window 24: lower -o overlap"),
}
BAD_INPUTS_ON_THIS_MACHINE = {
    "device mps without mps": ({"--device": "mps"}, 2, "--device mps: MPS is not available"),
    "device cuda without cuda": ({"--device": "cuda"}, 2, "--device cuda: CUDA is not available"),
    "out under /sys": ({"--out": "/sys/vsynth-out"}, 2, "cannot create folders in /sys"),
    "out read-only": ({"--out": _read_only_folder}, 2, "cannot create folders in"),
}


def _can_create_in(folder: Path) -> bool:
    try:
        (folder / "vsynth-test-probe").mkdir()
    except OSError:
        return False
    (folder / "vsynth-test-probe").rmdir()
    return True


def _runnable(case: str) -> bool:
    import torch

    return {
        "device mps without mps": not torch.backends.mps.is_available(),
        "device cuda without cuda": not torch.cuda.is_available(),
        "out under /sys": Path("/sys").is_dir() and not _can_create_in(Path("/sys")),  # sysfs refuses even root
        "out read-only": os.geteuid() != 0,  # root writes through permission bits
    }.get(case, True)


CASES = {**BAD_INPUTS, **BAD_INPUTS_ON_THIS_MACHINE}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_before_loading_and_no_output(tmp_path, monkeypatch, case):
    if not _runnable(case):
        pytest.skip(f"{case}: not testable on this machine")
    from vsynth.core.run import pipeline

    monkeypatch.setattr(pipeline, "execute", lambda *a, **k: pytest.fail("bad input reached execute (loading)"))
    monkeypatch.chdir(tmp_path)
    overrides, code, expected = CASES[case]
    overrides = {k: (v(tmp_path) if callable(v) else v) for k, v in overrides.items()}
    result = invoke("run", *_run_args(tmp_path, **overrides))
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert expected in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "outputs").exists()
    assert not list(tmp_path.glob(".*"))  # no probe or partial folder left behind


def test_output_folder_that_holds_files_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    result = invoke("run", *_run_args(tmp_path))
    assert result.exit_code == 2 and "not empty" in result.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]
    (tmp_path / "out").rename(tmp_path / "kept")
    (tmp_path / "out").write_text("a file")  # said as such, not as a folder that is not empty
    result = invoke("run", *_run_args(tmp_path))
    assert result.exit_code == 2 and "is a file, not a folder" in result.stderr and (tmp_path / "out").read_text() == "a file"


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


@pytest.mark.parametrize("args, usage", [((), " [OPTIONS] COMMAND"), (("toy",), " toy [OPTIONS] COMMAND")])
def test_a_group_alone_shows_its_help_not_one_squashed_error_line(args, usage):
    """`vsynth` alone, a new user's first command, printed the help flattened into one 'Error: Usage: ...; ...' line."""
    result = invoke(*args)
    first = result.stderr.splitlines()[0]
    assert result.exit_code == 2 and first.startswith("Usage: ") and usage in first and "Commands:" in result.stderr
    assert "Error" not in result.stderr


def test_a_missing_choice_option_lists_its_choices_on_one_readable_line():
    result = invoke("new-plugin", "foo")
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("Error: Missing option '--kind'. Choose from: idm, vdm, bridge (see '"), result.stderr


def test_a_config_path_that_is_a_folder_says_so(tmp_path):
    result = invoke("run", "--config", tmp_path)
    assert result.exit_code == 2 and result.stderr.strip() == f"Error: config file {tmp_path} is a folder: give a .yaml or .toml file"


@pytest.mark.parametrize("text", ["save-latents: true\nsave_latents: false\n", "save_latents = true\nsave-latents = false\n"])
def test_a_setting_spelt_with_a_dash_and_an_underscore_in_one_file_is_refused(tmp_path, text):
    """Both spellings name one setting; one of them was dropped without a word (which one: the file's order)."""
    path = tmp_path / ("run.toml" if "=" in text else "run.yaml")
    path.write_text(text)
    result = invoke("run", "--config", path)
    assert result.exit_code == 2 and "are one setting; keep one" in result.stderr, result.stderr
