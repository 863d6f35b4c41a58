"""Running from Python: the same typed errors as the CLI, and no library chatter unless asked."""

import subprocess
import sys

import pytest
from pydantic import ValidationError

from tests.conftest import SAMPLE_VIDEO
from vsynth.core.run.config import RunConfig
from vsynth.core.run.pipeline import plan_run
from vsynth.errors import InvalidParamsError, VsynthInputError

GOOD = dict(idm="controlnet-canny", vdm="zeroscope", video=SAMPLE_VIDEO, prompt="a ball", tiny=True, frames=2, steps=1)


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"frames": 0}, "--frames 0: must be between 1 and 256"),
        ({"guidance": float("nan")}, "--guidance nan: must be a finite number"),
        ({"options": 5}, "--options 5: must be a mapping"),
        ({"idm": ""}, '--idm "": is empty'),
    ],
)
def test_a_bad_config_raises_a_typed_one_line_error(values, expected):
    with pytest.raises(InvalidParamsError) as caught:
        RunConfig(**{**GOOD, **values})
    assert not isinstance(caught.value, ValidationError) and str(caught.value).startswith(expected)


@pytest.mark.parametrize(
    "values, expected",
    [({"steps": 5000}, "--steps 5000"), ({"out": "/proc/vsynth-out"}, "cannot create folders in /proc"), ({"device": "meta"}, "--device meta")],
)
def test_plan_run_refuses_what_the_cli_refuses(tmp_path, values, expected):
    with pytest.raises(VsynthInputError, match=expected):
        plan_run(RunConfig(**{**GOOD, "out": tmp_path / "out", **values}))


def test_a_run_from_python_prints_no_loading_bars(tmp_path):
    code = (
        "from vsynth.core.run.config import RunConfig; from vsynth.core.run.pipeline import run; "
        f"run(RunConfig(**{dict(GOOD, video=str(SAMPLE_VIDEO), out=str(tmp_path / 'out'), height=64, width=64)!r}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Loading" not in result.stderr and "it/s" not in result.stderr, result.stderr
