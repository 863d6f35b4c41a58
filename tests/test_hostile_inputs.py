"""Inputs a hostile user tries (issue 22, item 2): each ends in one line on stderr and exit code 2
from the CLI, a typed error from the Python API, and nothing left behind.

Most are refused while the run is planned: the ``no_loading`` fixture makes loading a model fail
the test, which keeps these tests fast and proves that the refusal comes before any weights load.
"""

import errno
import importlib
import json
import os
import pickle
import shutil
import struct
import sys
import zlib
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

import vsynth
from tests.conftest import SAMPLE_VIDEO
from vsynth.cli import cli
from vsynth.errors import (
    InsufficientMemoryError,
    InvalidArgumentError,
    InvalidParamsError,
    InvalidWeightsError,
    PluginRunError,
    UntrustedPickleError,
    VideoError,
)

TINY = ["--tiny", "--frames", "2", "--height", "64", "--width", "64", "--steps", "1"]
T2V = ["run", *TINY, "--vdm", "zeroscope", "--prompt", "a ball"]
CANNY = ["run", *TINY, "--idm", "controlnet-canny", "--vdm", "zeroscope", "--prompt", "a ball"]
API = dict(vdm="zeroscope", prompt="a ball", tiny=True, frames=2, height=64, width=64, steps=1)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line(result, code: int = 2) -> str:
    """The run's single stderr line, checked: the exit code, no traceback, no exception escaping click."""
    assert result.exit_code == code, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and "Traceback" not in line, line
    return line


def planned(result) -> bool:
    """Whether the run got past planning: under ``no_loading``, loading its models fails it."""
    return "a model was loaded" in str(result.exception)


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def no_loading(monkeypatch):
    """Loading a model fails the test: what these inputs get wrong must be found while planning."""
    from vsynth.core.run import pipeline

    def load_models(plan, stages):
        raise AssertionError("a model was loaded before the input was refused")

    monkeypatch.setattr(pipeline, "load_models", load_models)


# ---------------------------------------------------------------------------- output names


def test_rich_markup_characters_in_the_output_name_are_just_characters(tmp_path):
    """``o[/]`` is the folder ``o[`` with ``]`` in it: a name like any other, written and reported as typed."""
    out = tmp_path / "o[" / "]"
    result = CliRunner().invoke(cli, [*T2V, "--out", str(tmp_path / "o[/]")], env={"COLUMNS": "1000"})  # no wrapping
    assert result.exit_code == 0, (result.output, result.exception)
    assert "video.mp4" in entries(out)
    assert f"wrote {out}: " in result.stderr  # the summary shows the name, not markup
    assert entries(tmp_path / "o[") == ["]"]


@pytest.mark.parametrize("length", [240, 300])
def test_output_names_longer_than_the_file_system_allows(tmp_path, no_loading, length):
    """A name of 240 bytes fits, but its partial folder and lock beside it (`.NAME.vsynth-partial-PID`) do not."""
    out = tmp_path / ("a" * length)
    line = one_line(invoke(*T2V, "--out", out))
    assert "--out" in line and "too long" in line and "255" in line
    assert entries(tmp_path) == []
    with pytest.raises(InvalidParamsError, match="too long"):
        vsynth.run(**API, out=out)
    job_out = tmp_path / "batch"  # a job's folder is named after the job: the jobs file is refused as it is read
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(json.dumps({"defaults": {"vdm": "zeroscope", "tiny": True}, "jobs": [{"name": "j" * length, "prompt": "a"}]}))
    line = one_line(invoke("batch", jobs, "--out", job_out, "--quiet"))
    assert "job 1: name 'jjj" in line and "too long" in line and "255" in line
    assert entries(job_out) == []


@pytest.mark.parametrize(
    "args",
    [
        [*CANNY, "--video", "{long}.mp4"],
        [*T2V, "--vdm-weights", "{long}"],
        [*T2V, "--config", "{long}.yaml"],
        ["batch", "{long}.yaml", "--out", "batch"],
        ["batch", "jobs.yaml", "--out", "{long}/batch"],
        ["toy", "examples", "{long}"],
        ["tiny", "export", "{long}/x"],
    ],
    ids=["video", "weights", "config", "jobs file", "batch folder", "toy examples", "tiny export"],
)
def test_any_path_longer_than_the_file_system_allows(tmp_path, no_loading, monkeypatch, args):
    """Asking whether such a path exists fails (ENAMETOOLONG) on Python 3.11: every path a user gives is checked first."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "jobs.yaml").write_text(json.dumps({"jobs": [{"vdm": "zeroscope", "prompt": "a", "tiny": True}]}))
    line = one_line(invoke(*(a.format(long="c" * 300) if isinstance(a, str) else a for a in args)))
    assert "too long" in line
    assert entries(tmp_path) == ["jobs.yaml"]


# ---------------------------------------------------------------------------- text that is not UTF-8


def test_prompt_bytes_that_are_not_utf8_are_refused_before_loading(tmp_path, no_loading):
    """``--prompt $'\\xff'`` reaches Python as a lone surrogate (surrogateescape): the tokenizer crashed on it."""
    bad = "a \udcff ball"
    line = one_line(invoke(*T2V[:-1], bad, "--out", tmp_path / "out"))
    assert "--prompt" in line and "UTF-8" in line and "\\xff" in line
    assert entries(tmp_path) == []
    with pytest.raises(InvalidParamsError, match="UTF-8"):
        vsynth.run(**{**API, "prompt": bad})
    line = one_line(invoke(*T2V, "--out", tmp_path / "o\udcff"))  # a file name too: run.json records it
    assert "--out" in line and "\\xff" in line
    config = tmp_path / "run.yaml"  # YAML's \u escapes reach the same lone surrogate
    config.write_text('vdm: zeroscope\nnegative_prompt: "blurry \\udcff"\n')
    line = one_line(invoke(*T2V, "--config", config, "--out", tmp_path / "out"))
    assert "--negative-prompt" in line and "UTF-8" in line
    assert entries(tmp_path) == ["run.yaml"]


# ---------------------------------------------------------------------------- decompression bombs


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A few-byte PNG whose header claims ``width`` x ``height``: Pillow refuses it on opening."""
    from PIL import Image

    Image.new("1", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    path.write_bytes(bytes(data))
    return path


def _gif_claiming(path: Path, width: int, height: int) -> Path:
    """A one-pixel GIF whose logical screen claims ``width`` x ``height``."""
    from PIL import Image

    Image.new("P", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[6:10] = struct.pack("<HH", width, height)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("kind", ["gif", "png folder", "large gif"])
def test_decompression_bomb_images_and_gifs_are_refused(tmp_path, no_loading, kind):
    """Pillow raises DecompressionBombError above 179 M pixels and only warns above 89 M: both are refused,
    by size, before a frame is decoded."""
    if kind == "png folder":
        (tmp_path / "frames").mkdir()
        _png_claiming(tmp_path / "frames" / "f1.png", 20000, 20000)
        source = tmp_path / "frames"
    else:
        side = 20000 if kind == "gif" else 10000
        source = _gif_claiming(tmp_path / "bomb.gif", side, side)
    line = one_line(invoke(*CANNY, "--video", source, "--out", tmp_path / "out"))
    assert str(source) in line and "pixels" in line
    assert "out" not in entries(tmp_path)
    from vsynth.core.media.video import probe_video

    with pytest.raises(VideoError, match="pixels"):
        probe_video(source)


# ---------------------------------------------------------------------------- the toy world's ground truth


@pytest.mark.parametrize(
    "change, words",
    [
        ({"frames": 2}, "2 frames"),  # the clip was re-exported longer: the run's frames run past the truth's
        ({"size": 32}, "32x32"),  # another clip's truth: its metrics would be silently wrong
        ({"bogus": 1}, "bogus"),
        ("not a mapping", "vsynth_toy_clip"),
    ],
    ids=["too few frames", "another size", "unknown key", "not a mapping"],
)
def test_a_stale_toy_sidecar_is_refused_before_loading(tmp_path, no_loading, change, words):
    from vsynth.toy.truth import SIDECAR_KEY, save_clip

    clip = tmp_path / "toy0.mp4"
    save_clip(clip, 0, frames=8, n_shapes=1)
    sidecar = json.loads(clip.with_suffix(".json").read_text())
    sidecar[SIDECAR_KEY] = {**sidecar[SIDECAR_KEY], **change} if isinstance(change, dict) else change
    clip.with_suffix(".json").write_text(json.dumps(sidecar))
    line = one_line(invoke(*CANNY, "--video", clip, "--out", tmp_path / "out"))
    assert str(clip.with_suffix(".json")) in line and words in line
    assert entries(tmp_path) == ["toy0.json", "toy0.mp4"]


def test_a_json_beside_a_clip_that_is_not_a_toy_sidecar_is_ignored(tmp_path):
    """Only a file holding vsynth's key is ground truth; a user's own notes beside a clip are not read."""
    from vsynth.core.media.video import probe_video
    from vsynth.toy.truth import check_ground_truth

    clip = tmp_path / "clip.mp4"
    shutil.copy(SAMPLE_VIDEO, clip)
    clip.with_suffix(".json").write_text('{"camera": "phone"}')
    check_ground_truth(clip, probe_video(clip))  # no error


# ---------------------------------------------------------------------------- documents


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("suffix", [".yaml", ".toml", ".json"])
def test_deeply_nested_config_files(tmp_path, no_loading, suffix):
    config = tmp_path / f"run{suffix}"
    config.write_text(f"prompt = {_nested(5000)}\n" if suffix == ".toml" else f"prompt: {_nested(5000)}\n")
    line = one_line(invoke(*T2V, "--config", config, "--out", tmp_path / "out"))
    assert str(config) in line and "nested too deeply" in line
    assert entries(tmp_path) == [config.name]


def test_a_deeply_nested_option_value(tmp_path, no_loading):
    line = one_line(invoke(*T2V, "-o", f"window={_nested(5000)}", "--out", tmp_path / "out"))
    assert line.startswith("Error: -o window=") and "whole number" in line
    assert entries(tmp_path) == []


@pytest.mark.parametrize("suffix", [".yaml", ".jsonl"])
def test_deeply_nested_jobs_files(tmp_path, no_loading, suffix):
    jobs = tmp_path / f"jobs{suffix}"
    jobs.write_text(f'{{"prompt": {_nested(100_000)}}}\n')
    line = one_line(invoke("batch", jobs, "--out", tmp_path / "out"))
    assert str(jobs) in line and "nested too deeply" in line
    assert entries(tmp_path) == [jobs.name]


@pytest.mark.parametrize(
    "job, words",
    [({"options": 5}, "options must be a mapping"), ({"video": 5}, "--video 5"), ({"condition_video": [1]}, "--condition-video")],
)
def test_wrong_types_in_job_fields_fail_that_job_in_one_line(tmp_path, no_loading, job, words):
    """A job's wrong setting fails that job, as every other wrong setting does, and the others go on."""
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(json.dumps({"defaults": {"vdm": "zeroscope", "tiny": True}, "jobs": [{"name": "bad", "prompt": "a", **job}]}))
    result = invoke("batch", jobs, "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    (record,) = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert record["status"] == "failed" and words in record["error"]


def test_wrong_types_in_the_jobs_defaults_are_a_bad_jobs_file(tmp_path, no_loading):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(json.dumps({"defaults": {"vdm": "zeroscope", "options": [1]}, "jobs": [{"prompt": "a"}]}))
    line = one_line(invoke("batch", jobs, "--out", tmp_path / "out"))
    assert "defaults" in line and "options must be a mapping" in line
    assert entries(tmp_path) == ["jobs.yaml"]


@pytest.mark.parametrize("where", ["a file", "under a file", "not writable"])
def test_a_batch_out_that_is_a_file_or_not_writable(tmp_path, no_loading, where):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(json.dumps({"defaults": {"vdm": "zeroscope", "tiny": True}, "jobs": [{"prompt": "a"}]}))
    (tmp_path / "file").write_text("mine")
    out = {"a file": tmp_path / "file", "under a file": tmp_path / "file" / "batch", "not writable": Path("/proc/vsynth-batch")}[where]
    line = one_line(invoke("batch", jobs, "--out", out))
    assert "--out" in line
    assert entries(tmp_path) == ["file", "jobs.yaml"] and (tmp_path / "file").read_text() == "mine"


# ---------------------------------------------------------------------------- weights


@pytest.fixture
def weights_copy(tmp_path):
    """A copy of the tiny zeroscope's folder, to damage."""
    from vsynth.tiny import tiny_weights

    folder = tmp_path / "weights"
    shutil.copytree(tiny_weights("zeroscope"), folder)
    return folder


@pytest.mark.parametrize("damage", ["truncated config.json", "100-byte safetensors", "safetensors cut short"])
def test_damaged_files_in_a_local_weights_folder(tmp_path, weights_copy, no_loading, damage):
    if damage == "truncated config.json":
        broken = weights_copy / "unet" / "config.json"
        broken.write_text(broken.read_text()[:40])
    else:
        broken = weights_copy / "unet" / "diffusion_pytorch_model.safetensors"
        data = broken.read_bytes()
        broken.write_bytes(os.urandom(100) if damage == "100-byte safetensors" else data[: len(data) // 2])
    line = one_line(invoke(*T2V, "--vdm-weights", weights_copy, "--out", tmp_path / "out"))
    assert str(broken) in line and "--vdm-weights" in line
    assert "out" not in entries(tmp_path)
    with pytest.raises(InvalidWeightsError):
        vsynth.run(**API, vdm_weights=str(weights_copy))


class _Payload:
    """What a hostile pickle holds: unpickling it calls a function of the file's choosing."""

    def __reduce__(self):
        return (print, ("unpickled",))


def test_pickled_weights_are_refused_unless_trusted(tmp_path, weights_copy, no_loading):
    """A folder whose UNet is only a pickle (.bin) is refused before anything reads it, unless --trust-pickles."""
    unet = weights_copy / "unet"
    (unet / "diffusion_pytorch_model.safetensors").unlink()
    (unet / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps(_Payload(), protocol=2))
    line = one_line(invoke(*T2V, "--vdm-weights", weights_copy, "--out", tmp_path / "out"))
    assert "diffusion_pytorch_model.bin" in line and "pickle" in line and "--trust-pickles" in line
    with pytest.raises(UntrustedPickleError):
        vsynth.run(**API, vdm_weights=str(weights_copy))
    assert planned(invoke(*T2V, "--vdm-weights", weights_copy, "--out", tmp_path / "out", "--trust-pickles"))
    assert "--trust-pickles" in invoke("run", "--help").stdout


def test_a_pickled_detector_file_is_refused_unless_trusted(tmp_path, no_loading):
    detector = tmp_path / "body_pose_model.pth"
    detector.write_bytes(pickle.dumps(_Payload(), protocol=2))
    args = ["run", *TINY, "--idm", "controlnet-openpose", "--vdm", "zeroscope", "--prompt", "a", "--video", SAMPLE_VIDEO]
    line = one_line(invoke(*args, "-o", f"detector={detector}", "--out", tmp_path / "out"))
    assert "detector" in line and "pickle" in line and "--trust-pickles" in line
    assert entries(tmp_path) == ["body_pose_model.pth"]
    assert planned(invoke(*args, "-o", f"detector={detector}", "--out", tmp_path / "out", "--trust-pickles"))
    # trusted, it is loaded (tensors only), and what is not the network's state dict is still one line
    from vsynth.plugins.idm.openpose import load_body_model

    with pytest.raises(InvalidWeightsError, match="body_pose_model.pth"):
        load_body_model(str(detector))


# ---------------------------------------------------------------------------- plugins


BOOM_PLUGIN = """
from vsynth import hookimpl
from vsynth.core.host.specs import BridgeSpec
from vsynth.core.diffusion.bridge import Bridge


class Boom(Bridge):
    def run(self, idm, vdm, inputs, generator, stages):
        raise RuntimeError("the flux capacitor is empty")


MODE = "tensor"  # what Misfit returns: the bare latents, a latent of no batch, a cropped latent, or NaN latents


class Misfit(Bridge):
    def run(self, idm, vdm, inputs, generator, stages):
        import torch
        from vsynth.core.diffusion.bridge import BridgeResult

        z = torch.zeros(inputs.latent_shape(vdm.codec))
        return {"tensor": z, "batch": BridgeResult(latents=z[0], codec=vdm.codec),
                "crop": BridgeResult(latents=z[..., :3], codec=vdm.codec), "nan": BridgeResult(latents=z * float("nan"), codec=vdm.codec)}[MODE]


@hookimpl
def vsynth_register_bridges(registrar):
    registrar.register_bridge(BridgeSpec(name="boom", description="fails", needs_idm=False, impl="vsynth_boom:Boom"))
    registrar.register_bridge(BridgeSpec(name="misfit", description="returns wrong results", needs_idm=False, impl="vsynth_boom:Misfit"))


from vsynth.core.diffusion.models import VideoModel
from vsynth.core.host.specs import ModelSpec
from vsynth.plugins.vdm import ZeroScopeParams


class BoomVdm(VideoModel):
    @classmethod
    def load(cls, spec, params, sources, runtime):
        raise KeyError("unet.weight")


@hookimpl
def vsynth_register_models(registrar):
    from vsynth.core.host import layouts
    from vsynth.core.host.specs import WeightsSpec

    weights = WeightsSpec(role="vdm", id="cerspense/zeroscope_v2_576w", size_gb=3.7, tiny="zeroscope", files=layouts.sd_pipeline())
    registrar.register_model(ModelSpec(name="boom-vdm", kind="vdm", description="fails to load", weights=(weights,),
                                       params=ZeroScopeParams, impl="vsynth_boom:BoomVdm"))
"""


@pytest.fixture
def boom_plugin(tmp_path, monkeypatch):
    """The distribution vsynth-boom 1.3.0, whose bridge raises inside run()."""
    from vsynth.core.host.registry import get_registry

    site = tmp_path / "site"
    site.mkdir()
    (site / "vsynth_boom.py").write_text(BOOM_PLUGIN)
    info = site / "vsynth_boom-1.3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vsynth-boom\nVersion: 1.3.0\n")
    (info / "entry_points.txt").write_text("[vsynth]\nboom = vsynth_boom\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    get_registry.cache_clear()
    assert any(ep.name == "boom" for ep in metadata.entry_points(group="vsynth"))
    yield
    sys.modules.pop("vsynth_boom", None)
    get_registry.cache_clear()


def test_an_exception_while_a_plugin_model_loads_names_the_plugin(tmp_path, boom_plugin):
    out = tmp_path / "runs" / "out"
    line = one_line(invoke("run", *TINY, "--vdm", "boom-vdm", "--prompt", "a ball", "--out", out, "--quiet"))
    assert "vsynth-boom 1.3.0" in line and "'boom-vdm'" in line and "KeyError" in line
    assert entries(out.parent) == []


def test_an_exception_inside_a_plugin_bridge_names_the_plugin(tmp_path, boom_plugin):
    out = tmp_path / "runs" / "out"
    line = one_line(invoke(*T2V, "--bridge", "boom", "--out", out, "--quiet"))
    assert "vsynth-boom 1.3.0" in line and "'boom'" in line and "RuntimeError: the flux capacitor is empty" in line
    assert entries(out.parent) == []
    with pytest.raises(PluginRunError) as caught:
        vsynth.run(**API, bridge="boom")
    assert isinstance(caught.value.__cause__, RuntimeError)  # the plugin's own traceback, for its authors


@pytest.mark.parametrize(
    "mode, message",
    [
        ("tensor", "'misfit' failed: TypeError: run() returned Tensor, not a BridgeResult"),
        ("batch", "'misfit' failed: ValueError: BridgeResult.latents is (4, 2, 8, 8); it must be one latent video"),
        ("crop", "'misfit' failed: ValueError: its latents decode to 2 frames of 64x24, and the run asked for 2 of 64x64"),
        ("nan", "bridge 'misfit' returned latents holding NaN or infinite values"),
    ],
)
def test_what_a_plugin_bridge_returns_is_checked_before_anything_is_written(tmp_path, boom_plugin, mode, message):
    """These decoded into an AttributeError traceback, a misleading 'batch of 4', a 64x24 video, and a black one."""
    import vsynth_boom

    vsynth_boom.MODE = mode
    out = tmp_path / "runs" / "out"
    line = one_line(invoke(*T2V, "--bridge", "misfit", "--out", out, "--quiet"), code=1 if mode == "nan" else 2)  # NaN: a failure, not input
    assert message in line, line
    assert entries(out.parent) == []


# ---------------------------------------------------------------------------- the tiny-model cache


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("VSYNTH_CACHE", str(cache))
    return cache


@pytest.mark.parametrize("writer", ["open", "safetensors"])
def test_a_full_disk_while_building_the_tiny_model_cache(tmp_path, fresh_cache, no_loading, monkeypatch, writer):
    """A full disk as Python's own writes report it (OSError), and as safetensors' save_file does."""
    from safetensors import SafetensorError

    from vsynth.tiny import build

    def export(name, directory):
        Path(directory, "config.json").write_text("{}")
        if writer == "safetensors":
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(directory, "unet.safetensors")))

    monkeypatch.setattr(build, "export", export)
    line = one_line(invoke(*T2V, "--out", tmp_path / "out"))
    assert "tiny model" in line and "No space left on device" in line and "VSYNTH_CACHE" in line
    assert "out" not in entries(tmp_path)
    root = fresh_cache / "tiny" / f"v{build.TINY_FORMAT}"
    assert entries(root) == []  # no staging folder left


@pytest.mark.parametrize("which", ["the cache's folder", "the model's folder"])
def test_the_tiny_model_cache_folder_replaced_by_a_file(tmp_path, fresh_cache, no_loading, which):
    from vsynth.tiny import build

    root = fresh_cache / "tiny" / f"v{build.TINY_FORMAT}"
    file = root if which == "the cache's folder" else root / "zeroscope"
    file.parent.mkdir(parents=True)
    file.write_text("not a folder")
    line = one_line(invoke(*T2V, "--out", tmp_path / "out"))
    assert str(file) in line and "file" in line and "VSYNTH_CACHE" in line
    assert file.read_text() == "not a folder"  # not vsynth's to remove
    assert "out" not in entries(tmp_path) and entries(file.parent) == [file.name]


# ---------------------------------------------------------------------------- memory


def test_an_address_space_limit_counts_as_free_memory(tmp_path, no_loading, monkeypatch):
    """Under ``ulimit -v`` the process cannot map more than its limit, whatever MemAvailable says."""
    import resource

    from vsynth.core.run import memory

    status = Path("/proc/self/status").read_text()
    used = next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmSize:"))
    limit = used + 2**20  # one MiB to spare
    real = resource.getrlimit
    monkeypatch.setattr(resource, "getrlimit", lambda which: (limit, limit) if which == resource.RLIMIT_AS else real(which))
    free, source = memory.free_memory("cpu")
    assert free <= 2 * 2**20 and "RLIMIT_AS" in source
    line = one_line(invoke(*T2V, "--out", tmp_path / "out"))
    assert "ulimit -v" in line
    with pytest.raises(InsufficientMemoryError):
        vsynth.run(**API)


# ---------------------------------------------------------------------------- the Python API


def test_api_display_must_be_a_progress_display(no_loading):
    with pytest.raises(InvalidArgumentError, match=r"display='nope'.*None.*Progress"):
        vsynth.run(**API, display="nope")
    with pytest.raises(InvalidArgumentError, match="display"):
        vsynth.Session(display=3)
