"""docs/plugins.md documents every hookspec with its signature, and some test implements each one."""

import inspect
from pathlib import Path

import pytest

from vsynth.core.host import hookspecs

ROOT = Path(__file__).parents[1]
HOOKSPECS = [function for name, function in vars(hookspecs).items() if name.startswith("vsynth_")]
TESTS = [p for p in [*ROOT.glob("tests/*.py"), *ROOT.glob("examples/*/tests/*.py")] if p.name != Path(__file__).name]


def signature(function) -> str:
    """``def name(arg: Type) -> Return`` as written in the source (annotations are strings there)."""
    parameters = inspect.signature(function).parameters.values()
    arguments = ", ".join(f"{p.name}: {p.annotation}" for p in parameters)
    return f"def {function.__name__}({arguments}) -> {inspect.signature(function).return_annotation}"


def test_the_hookspecs_are_found():
    assert {f.__name__ for f in HOOKSPECS} >= {"vsynth_register_models", "vsynth_register_bridges"}


@pytest.mark.parametrize("hook", HOOKSPECS, ids=lambda f: f.__name__)
def test_every_hookspec_is_documented_with_its_signature(hook):
    assert signature(hook) in (ROOT / "docs" / "plugins.md").read_text()


@pytest.mark.parametrize("hook", HOOKSPECS, ids=lambda f: f.__name__)
def test_every_hookspec_is_implemented_by_a_test_plugin(hook):
    assert any(f"def {hook.__name__}(" in path.read_text() for path in TESTS), f"no test implements {hook.__name__}"
