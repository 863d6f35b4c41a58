"""Commands that need an optional extra say which, in one line, where it is missing."""

import sys

import pytest
import yaml
from click.testing import CliRunner

from vsynth.cli import cli


@pytest.fixture
def without(monkeypatch):
    def block(module: str):
        monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError

    return block


def test_ui_without_gradio_names_the_extra(without):
    without("gradio")
    result = CliRunner().invoke(cli, ["ui"])
    assert result.exit_code == 1 and result.stderr.strip() == "Error: vsynth ui needs Gradio: pip install 'vsynth[ui]'"


def test_batch_ray_without_ray_names_the_extra(without, tmp_path):
    without("ray")
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(yaml.safe_dump([{"vdm": "zeroscope", "prompt": "a corgi", "tiny": True}]))
    result = CliRunner().invoke(cli, ["batch", str(jobs), "--out", str(tmp_path / "o"), "--ray", "-q"])
    assert result.exit_code == 1 and "pip install 'vsynth[ray]'" in result.stderr
    assert not (tmp_path / "o" / "job-001").exists()
