"""Faults around a run: signals, a full disk, concurrent runs, debris of killed runs."""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import SAMPLE_VIDEO
from vsynth.cli import cli
from vsynth.core.media import outputs
from vsynth.core.media import video as videoio
from vsynth.errors import OutputExistsError

ARGS = ["run", "--tiny", "--idm", "controlnet-canny", "--vdm", "zeroscope", "--video", str(SAMPLE_VIDEO),
        "--prompt", "a ball", "--frames", "2", "--height", "64", "--width", "64", "--steps", "1", "--quiet"]  # fmt: skip


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_sigterm_cleans_up_and_exits_143_with_one_line(tmp_path):
    out = tmp_path / "out"
    args = [a if a != "1" else "200" for a in ARGS]  # long enough to be caught mid-run
    code = "import sys; from vsynth.cli import main; sys.argv = ['vsynth', *sys.argv[1:]]; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, *args, "--out", str(out)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.vsynth-partial-*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    stderr = proc.communicate(timeout=60)[1]
    assert proc.returncode == 143
    (line,) = stderr.strip().splitlines()
    assert line.startswith("Error: terminated (SIGTERM)")
    assert _leftovers(tmp_path) == []


def _vsynth_record(pid: int) -> str:
    import json
    import socket

    return json.dumps({"vsynth": 1, "pid": pid, "host": socket.gethostname()})


def test_debris_of_dead_runs_is_removed_by_the_next_run_in_the_same_parent(tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    (tmp_path / f".old.vsynth-partial-{dead}").mkdir()
    (tmp_path / f".old.vsynth-partial-{dead}" / "video.mp4").write_text("half")
    (tmp_path / f".old.vsynth-partial-{dead}" / outputs.PARTIAL_MARKER).write_text(_vsynth_record(dead))
    (tmp_path / ".old.vsynth-lock").write_text(_vsynth_record(dead))
    (tmp_path / f".busy.vsynth-partial-{alive}").mkdir()  # a live run's: kept
    (tmp_path / f".busy.vsynth-partial-{alive}" / outputs.PARTIAL_MARKER).write_text(_vsynth_record(alive))
    with outputs.output_folder(tmp_path / "new", exact=True) as out:
        (out.partial / "run.json").write_text("{}")
    assert _leftovers(tmp_path) == [f".busy.vsynth-partial-{alive}", "new"]
    assert _leftovers(tmp_path / "new") == ["run.json"]  # the marker does not reach the output


def test_the_cleanup_never_touches_what_vsynth_did_not_make(tmp_path):
    """Names like vsynth's own, and old vsynth's, with dead PIDs: without vsynth's marker they are the user's."""
    dead = _dead_pid()
    for name in (".notes.partial-999999", f".notes.partial-{dead}", f".notes.vsynth-partial-{dead}", ".old.vsynth-partial-abc"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "important.txt").write_text("mine")
    (tmp_path / f".marked.vsynth-partial-{dead}").mkdir()  # a marker naming another PID
    (tmp_path / f".marked.vsynth-partial-{dead}" / outputs.PARTIAL_MARKER).write_text(_vsynth_record(dead + 1))
    (tmp_path / ".todo.lock").write_text(str(dead))
    (tmp_path / ".todo.vsynth-lock").write_text(str(dead))  # not vsynth's record
    (tmp_path / ".link.vsynth-lock").symlink_to(tmp_path / ".todo.lock")
    before = _leftovers(tmp_path)
    with outputs.output_folder(tmp_path / "new", exact=True) as out:
        (out.partial / "run.json").write_text("{}")
    assert _leftovers(tmp_path) == sorted([*before, "new"])
    assert (tmp_path / ".notes.partial-999999" / "important.txt").read_text() == "mine"


def test_an_out_that_is_a_link_to_an_empty_folder_gets_the_run(tmp_path):
    (tmp_path / "target").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "target")
    result = CliRunner().invoke(cli, [*ARGS, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out").is_symlink() and (tmp_path / "out" / "video.mp4").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "target"]


def test_an_out_that_is_a_dangling_link_gets_the_run_where_it_points(tmp_path):
    (tmp_path / "out").symlink_to(tmp_path / "later")
    with outputs.output_folder(tmp_path / "out", exact=True) as out:
        (out.partial / "run.json").write_text("{}")
    assert (tmp_path / "out" / "run.json").is_file() and (tmp_path / "later").is_dir()


def test_an_out_linking_to_a_folder_with_files_is_refused(tmp_path):
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "theirs.txt").write_text("theirs")
    (tmp_path / "out").symlink_to(tmp_path / "target")
    with pytest.raises(OutputExistsError, match="links to"):
        with outputs.output_folder(tmp_path / "out", exact=True):
            pass
    assert _leftovers(tmp_path / "target") == ["theirs.txt"]


def test_a_second_batch_into_the_same_folder_at_once_is_refused(tmp_path):
    with outputs.batch_lock(tmp_path / "b"):
        with pytest.raises(OutputExistsError, match=f"another batch \\(pid {os.getpid()}\\)"):
            with outputs.batch_lock(tmp_path / "b"):
                pass
    with outputs.batch_lock(tmp_path / "b"):  # released: the next batch may write
        pass
    (tmp_path / "b" / ".batch.vsynth-lock").write_text(_vsynth_record(_dead_pid()))
    with outputs.batch_lock(tmp_path / "b"):  # a dead batch's lock is taken over
        pass
    assert _leftovers(tmp_path / "b") == []


def test_runs_with_default_names_in_the_same_second_get_their_own_folders(tmp_path):
    final = tmp_path / "outputs" / "20250101-000000-a-b"
    with outputs.output_folder(final, exact=False) as first, outputs.output_folder(final, exact=False) as second:
        for out in (first, second):
            (out.partial / "run.json").write_text("{}")
    assert (first.final.name, second.final.name) == ("20250101-000000-a-b", "20250101-000000-a-b-2")
    assert _leftovers(tmp_path / "outputs") == ["20250101-000000-a-b", "20250101-000000-a-b-2"]


def test_a_folder_filled_meanwhile_is_not_overwritten(tmp_path):
    with pytest.raises(OutputExistsError, match="filled by someone else"):
        with outputs.output_folder(tmp_path / "out", exact=True) as out:
            (out.partial / "run.json").write_text("{}")
            (tmp_path / "out").mkdir()
            (tmp_path / "out" / "theirs.txt").write_text("theirs")
    assert _leftovers(tmp_path) == ["out"] and _leftovers(tmp_path / "out") == ["theirs.txt"]


def test_a_full_disk_while_writing_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(videoio, "write_gif", full)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ARGS)
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "cannot write the output folder" in line and "No space left on device" in line
    assert _leftovers(tmp_path / "outputs") == []


def test_tiny_export_into_a_folder_it_cannot_write_is_one_line(tmp_path):
    target = Path("/sys/vsynth-tiny")
    if not Path("/sys").is_dir() or os.access("/sys", os.W_OK) and os.geteuid() != 0:
        pytest.skip("no read-only /sys here")
    result = CliRunner().invoke(cli, ["tiny", "export", str(target)])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "cannot export into /sys/vsynth-tiny: cannot create folders in /sys" in line


def test_non_finite_latents_stop_the_run_naming_stage_and_step(tmp_path, monkeypatch):
    from vsynth.core.diffusion import sampling

    real_loop, calls = sampling._loop, []

    def loop_whose_second_prediction_is_nan(schedule, *args):
        real = schedule.denoiser.predict

        def predict(*a, **k):
            calls.append(1)
            return real(*a, **k) * (float("nan") if len(calls) == 2 else 1.0)

        monkeypatch.setattr(schedule.denoiser, "predict", predict)
        return real_loop(schedule, *args)

    monkeypatch.setattr(sampling, "_loop", loop_whose_second_prediction_is_nan)
    args = [a if a != "1" else "3" for a in ARGS]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "stage 'frame-wise generation': the latents became NaN or infinite at step 2 of 3" in line
    assert _leftovers(tmp_path) == []


def test_nan_weights_are_found_at_load(tmp_path):
    from safetensors.torch import load_file, save_file

    from vsynth import tiny

    weights = tiny.export("zeroscope", tmp_path / "zeroscope")
    unet = weights / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(unet))
    first = next(name for name, tensor in state.items() if tensor.is_floating_point())
    state[first][0] = float("nan")
    save_file(state, str(unet))
    result = CliRunner().invoke(cli, [
        "run", "--vdm", "zeroscope", "--vdm-weights", str(weights), "--tiny", "--prompt", "a ball", "--frames", "2",
        "--height", "64", "--width", "64", "--steps", "1", "--quiet", "--out", str(tmp_path / "out"),
    ])  # fmt: skip
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert f"the vdm weights hold NaN or infinite values (UNet3DConditionModel.{first}" in line
    assert not (tmp_path / "out").exists()


def test_an_empty_folder_that_cannot_be_replaced_is_filled(tmp_path, monkeypatch):
    """`--out` naming an empty mount point (a container's volume): renaming onto it fails with EBUSY, which crashed
    with a traceback after the whole run; an immutable folder (EPERM) too."""
    from vsynth.errors import OutputWriteError

    real_rename = os.rename

    def busy(src, dst):
        raise OSError(errno.EBUSY, "Device or resource busy")

    def exists(src, dst):  # Windows: a rename onto any existing folder, empty or not
        raise FileExistsError(errno.EEXIST, "File exists")

    monkeypatch.setattr(outputs.os, "rename", exists)
    (tmp_path / "windows").mkdir()
    with outputs.output_folder(tmp_path / "windows", exact=True) as out:
        (out.partial / "video.mp4").write_bytes(b"v")
    assert [p.name for p in (tmp_path / "windows").iterdir()] == ["video.mp4"]

    monkeypatch.setattr(outputs.os, "rename", busy)
    (tmp_path / "volume").mkdir()
    with outputs.output_folder(tmp_path / "volume", exact=True) as out:
        (out.partial / "video.mp4").write_bytes(b"v")
        (out.partial / "run.json").write_text("{}")
    assert sorted(p.name for p in (tmp_path / "volume").iterdir()) == ["run.json", "video.mp4"]
    assert not list(tmp_path.glob(".volume*"))

    (tmp_path / "locked").mkdir()
    moves = []

    def refused_after_one(src, dst):
        if moves:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        moves.append(dst)
        real_rename(src, dst)

    monkeypatch.setattr(outputs.shutil, "move", refused_after_one)
    with pytest.raises(OutputWriteError, match="cannot write the output folder .*locked: Operation not permitted; nothing was left in it"):
        with outputs.output_folder(tmp_path / "locked", exact=True) as out:
            (out.partial / "a.mp4").write_bytes(b"v")
            (out.partial / "b.json").write_text("{}")
    assert moves and not list((tmp_path / "locked").iterdir()) and not list(tmp_path.glob(".locked*"))


def test_a_ctrl_c_that_a_library_swallows_still_stops_the_run(tmp_path):
    """Ctrl-C raised inside a finalizer or a library's `except BaseException` was lost: the run finished, exit 0."""
    out = tmp_path / "out"
    code = (
        "import os, signal, sys\n"
        "from vsynth.core.media import video\n"
        "write_gif = video.write_gif\n"
        "def swallowing(*a, **k):\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    except BaseException:\n"
        "        pass\n"
        "    return write_gif(*a, **k)\n"
        "video.write_gif = swallowing\n"
        "from vsynth.cli import main; sys.argv = ['vsynth', *sys.argv[1:]]; main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, *ARGS, "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines() == ["Error: aborted"]
    assert _leftovers(tmp_path) == []
