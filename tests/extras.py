"""Tests of the optional extras (Ray, the web UI, its browser test) skip where the extra is missing,
with the reason and the install command; CI sets VSYNTH_REQUIRE_EXTRAS=1, and there a missing extra fails."""

import importlib
import os

import pytest

REQUIRED = os.environ.get("VSYNTH_REQUIRE_EXTRAS") == "1"


def need(module: str, install: str):
    """The imported module, or a skip (a failure under VSYNTH_REQUIRE_EXTRAS=1) saying how to install it."""
    if REQUIRED:
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"{module} is not installed: {install} runs this test")


def skip_unless_required(reason: str):
    """Skip with ``reason``; under VSYNTH_REQUIRE_EXTRAS=1, fail with it."""
    if REQUIRED:
        pytest.fail(f"{reason} (VSYNTH_REQUIRE_EXTRAS=1)")
    pytest.skip(reason)
