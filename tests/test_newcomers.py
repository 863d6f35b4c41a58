"""A newcomer's first day (issue 22, item 6): a short README whose commands parse and whose config
example runs, a models table that keeps its columns in a pipe, progress from the Python API where it
can be seen, a quiet Ray, a ``vsynth ui`` that stops quietly, and an extra that downgrades nothing."""

import json
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
import yaml

import vsynth
from tests.extras import need
from vsynth.cli import cli
from vsynth.core.run import progress
from vsynth.testing import run_cli

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
INSTALL = 'pip install "torch==2.13.0" -e ".[test,ray,ui,browser-test,quantize]"'
TESTS = "VSYNTH_REQUIRE_EXTRAS=1 python -m pytest -q"
QUICK = dict(tiny=True, frames=2, height=64, width=64, steps=1)


def fenced(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def readme_commands(page: Path = README) -> list[list[str]]:
    """Every ``vsynth ...`` command of a page's bash blocks: continuations joined, comments and pipes cut."""
    commands = []
    for block in fenced(page.read_text(), "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True) if line.startswith("vsynth ") else []
            if words:
                commands.append(words[: words.index("|")] if "|" in words else words)
    return commands


def parse(words: list[str]) -> click.Context:
    """``vsynth WORDS`` through click's parser down to its (sub)command, without running it: an unknown
    option, a missing value or a bad choice raises click's UsageError."""
    ctx = click.Context(cli, info_name="vsynth")
    command, args = cli, list(words[1:])
    while isinstance(command, click.Group):
        name, args = args[0], args[1:]
        command = command.get_command(ctx, name)
        assert command is not None, f"no command {name!r}"
        ctx = command.make_context(name, list(args), parent=ctx) if not isinstance(command, click.Group) else ctx
    return ctx


# ---------------------------------------------------------------------------- the README


def test_the_readme_is_under_350_lines_in_the_order_a_newcomer_reads():
    lines = README.read_text().splitlines()
    assert len(lines) < 350
    headings = [line[3:] for line in lines if line.startswith("## ")]
    order = ["Install", "First run", "The toy world", "Tasks", "Models and bridges", "Python API", "Batch", "Web UI",
             "Plugins", "Performance", "Tests"]  # fmt: skip
    found = [next(i for i, heading in enumerate(headings) if heading.startswith(start)) for start in order]
    assert found == sorted(found), headings
    install = fenced(README.read_text(), "bash")[0]
    steps = ["git clone", "cd vsynth", "python3 -m venv .venv", ". .venv/bin/activate", INSTALL]
    assert [install.index(step) for step in steps] == sorted(install.index(step) for step in steps)


def test_the_readme_keeps_the_install_and_test_lines_ci_runs():
    text, ci = README.read_text(), (ROOT / ".ci" / "run").read_text()
    assert INSTALL in text and INSTALL in ci
    assert TESTS in text and TESTS in ci
    assert any("python -m pytest -q" in block.splitlines() for block in fenced(text, "bash"))


@pytest.mark.parametrize("words", readme_commands(), ids=lambda words: " ".join(words)[:60])
def test_every_readme_command_parses(words):
    parse(words)


def test_every_command_of_the_moved_reference_parses():
    pages = ["reference.md", "models-and-bridges.md", "performance.md", "toy-world.md"]
    commands = [words for page in pages for words in readme_commands(ROOT / "docs" / page)]
    assert len(commands) >= 5
    for words in commands:
        parse(words)


def test_readme_run_commands_on_sample_inputs_pass_every_check_before_loading(tmp_path, monkeypatch):
    """The README's ``vsynth run`` commands whose inputs ship with vsynth: validated as written (plan_run), stopped before loading."""
    from vsynth.core.run import pipeline

    class Planned(Exception):
        pass

    def execute(plan, *args, **kwargs):
        raise Planned()

    monkeypatch.setattr(pipeline, "execute", execute)
    monkeypatch.chdir(ROOT)
    runs = [w for w in readme_commands() if w[1] == "run" and ("--tiny" in w or "--toy" in w)]
    runs = [w for w in runs if all((ROOT / w[i + 1]).exists() for i, word in enumerate(w) if word in ("--video", "--mask", "--config"))]
    assert len(runs) >= 6
    for i, words in enumerate(runs):
        result = run_cli(*words[1:], "--out", tmp_path / f"out{i}", "--quiet")
        assert isinstance(result.exception, Planned), (words, result.output)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_the_readme_and_docs_resolve_with_their_anchors():
    for page in DOCS:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]+))?\)", page.read_text()):
            if target.startswith("http"):
                continue
            path = (page.parent / target).resolve() if target else page
            assert path.exists(), f"{page.name}: {target}"
            if anchor:
                anchors = {_slug(line.lstrip("#")) for line in path.read_text().splitlines() if line.startswith("#")}
                assert anchor in anchors, f"{page.name}: {target}#{anchor}"


def test_the_moved_reference_tables_are_in_docs():
    docs = {page.name: page.read_text() for page in DOCS}
    assert "| bridge | edge F1 ↑ |" in docs["toy-world.md"]
    assert "| combination | loading s, before |" in docs["performance.md"]
    assert "| VDM alone, float16 |" in docs["performance.md"] and "| network | size | frames |" in docs["performance.md"]
    assert "| frames | windows | synthesis s |" in docs["performance.md"] and "| run | BIVDiff warp err" in docs["performance.md"]
    assert "| file | what |" in docs["reference.md"] and "| job | status | seconds |" in docs["reference.md"]
    assert "Memory planner" in docs["performance.md"] and "Checked up front" in docs["reference.md"]


# ---------------------------------------------------------------------------- the config example


def test_the_readme_config_example_is_examples_run_yaml_and_runs_with_tiny(tmp_path, monkeypatch):
    example = ROOT / "examples" / "run.yaml"
    assert example.read_text() in fenced(README.read_text(), "yaml")
    monkeypatch.chdir(ROOT)  # its paths are relative to the current folder, as the README runs it
    out = tmp_path / "out"
    result = run_cli("run", "--config", example, "--tiny", "--height", 64, "--width", 64, "--steps", 2, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    settings = yaml.safe_load(example.read_text())
    assert record["frames"] == settings["frames"] and record["bridge"]["params"]["mixing_ratio"] == settings["options"]["mixing_ratio"]


# ---------------------------------------------------------------------------- vsynth models


def _records():
    return json.loads(run_cli("models", "--json").stdout)


def _has_every_column(table: str) -> None:
    header = next(line for line in table.splitlines() if "name" in line and "plugin" in line)
    assert all(column in header for column in ("kind", "task", "weights", "toy", "plugin", "description")), header
    for record in _records():
        row = next(line for line in table.splitlines() if f" {record['name']} " in line)
        assert record["description"] in row, row
        if "size_gb" in record:
            assert f"{record['size_gb']:g} GB" in row
    assert "…" not in table


def test_models_piped_keeps_every_column(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)  # `vsynth models | less`: no terminal, no width
    result = run_cli("models")
    assert result.exit_code == 0, result.output
    _has_every_column(result.stdout)


def test_models_narrow_says_how_to_see_every_column_and_wide_shows_them(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    narrow = run_cli("models").stdout
    assert max(len(line) for line in narrow.splitlines()) <= 60
    assert "vsynth models --wide" in " ".join(narrow.split())
    _has_every_column(run_cli("models", "--wide").stdout)


# ---------------------------------------------------------------------------- vsynth batch


def test_batch_on_ray_after_an_embedded_run_says_it_reuses_their_outputs(tmp_path, monkeypatch):
    from vsynth.batch import ray_runner

    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(yaml.safe_dump({"defaults": {"vdm": "zeroscope", **QUICK}, "jobs": [{"name": "corgi", "prompt": "a corgi"}]}))
    out = tmp_path / "batch"
    first = run_cli("batch", jobs, "--out", out)
    assert first.exit_code == 0, first.output

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray started for a batch with nothing to run")

    monkeypatch.setattr(ray_runner, "run_on_ray", no_ray)
    again = run_cli("batch", jobs, "--out", out, "--ray")
    assert again.exit_code == 0, again.output
    (line,) = [line for line in again.stderr.splitlines() if "reusing" in line]
    assert line == f"1 of 1 jobs are complete in {out} from an earlier run: reusing their outputs (remove a job's folder to run it again)"
    assert "| corgi | skipped |" in again.stdout


def test_ray_starts_without_token_or_usage_chatter(monkeypatch):
    ray = need("ray", "pip install 'vsynth[ray]'")
    from vsynth.batch import ray_runner

    seen = {}

    class Stop(Exception):
        pass

    def init(**kwargs):
        seen.update(kwargs, usage_stats=os.environ.get("RAY_USAGE_STATS_ENABLED"))
        raise Stop()

    monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(Stop):
        ray_runner.run_on_ray([["a job"]], lambda result: None)
    assert seen["log_to_driver"] is False and seen["logging_level"] >= logging.ERROR and seen["usage_stats"] == "0"


# ---------------------------------------------------------------------------- the ui extra


def test_the_ui_extra_downgrades_nothing_the_base_install_chose():
    """The base's dependencies carry every upper bound Gradio puts on them: otherwise the base picks a
    newer release (Pillow 13) that installing the ui extra replaces with an older one."""
    need("gradio", "pip install 'vsynth[ui]'")
    from importlib.metadata import requires

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    tomllib = pytest.importorskip("tomllib")
    base = {canonicalize_name(r.name): r.specifier for r in map(Requirement, tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])}
    checked = []
    for requirement in map(Requirement, requires("gradio")):
        name = canonicalize_name(requirement.name)
        if name not in base or (requirement.marker is not None and not requirement.marker.evaluate({"extra": ""})):
            continue
        for spec in requirement.specifier:
            if spec.operator in ("<", "<="):
                beyond = spec.version if spec.operator == "<" else f"{spec.version}.post1"
                assert not base[name].contains(beyond, prereleases=True), f"{name}: gradio wants {spec}, the base allows {beyond}"
                checked.append(name)
    assert "pillow" in checked


# ---------------------------------------------------------------------------- the Python API


def _stages_shown(capsys, **kwargs) -> bool:
    capsys.readouterr()
    vsynth.run(vdm="zeroscope", prompt="a corgi", **QUICK, **kwargs)
    return "decoding" in capsys.readouterr().err


def test_the_api_shows_progress_on_a_terminal_or_in_a_notebook_and_nothing_elsewhere(capsys, monkeypatch):
    monkeypatch.setattr(progress, "can_show_progress", lambda: True)
    assert _stages_shown(capsys)
    assert not _stages_shown(capsys, display=False)
    monkeypatch.setattr(progress, "can_show_progress", lambda: False)
    assert not _stages_shown(capsys)
    assert _stages_shown(capsys, display=True)


@pytest.mark.parametrize("widgets", [True, False])
def test_a_notebook_shows_progress_where_rich_can_draw_it(monkeypatch, widgets):
    import importlib.util

    import rich.console

    real = importlib.util.find_spec
    monkeypatch.setattr(rich.console, "_is_jupyter", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (object() if widgets else None) if name == "ipywidgets" else real(name, *a))
    assert progress.can_show_progress() is widgets


def test_the_api_keeps_a_display_it_is_given(capsys):
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(file=sys.stdout)) as mine:
        vsynth.run(vdm="zeroscope", prompt="a corgi", **QUICK, display=mine)
    assert "decoding" in [task.description for task in mine.tasks]


# ---------------------------------------------------------------------------- vsynth ui, vsynth tiny export


def test_sigterm_on_an_idle_ui_says_nothing_about_unfinished_outputs(tmp_path):
    need("gradio", "pip install 'vsynth[ui]'")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = "from vsynth.cli import main; main()"
    ui = subprocess.Popen([sys.executable, "-c", code, "ui", "--port", str(port), "--out", str(tmp_path / "ui")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert ui.poll() is None, ui.communicate()
                time.sleep(0.3)
        ui.send_signal(signal.SIGTERM)
        _, stderr = ui.communicate(timeout=60)
    finally:
        ui.kill()
    assert ui.returncode == 128 + signal.SIGTERM
    assert "unfinished" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == "vsynth ui: stopped"


def test_tiny_export_is_documented():
    help_text = " ".join(run_cli("tiny", "export", "--help").stdout.split())
    assert "diffusers-format" in help_text and "--idm-weights" in help_text
    assert "vsynth tiny export" in README.read_text() and "vsynth tiny export" in (ROOT / "docs" / "reference.md").read_text()
