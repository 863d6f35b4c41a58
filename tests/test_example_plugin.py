"""The example plugin package, installed by pip from its local path: discovered, listed, run,
its own tests passing, and still no torch for the listings.

pip installs it with ``--target`` into a private folder that the tests put on the path, rather
than into the virtual environment: a real wheel build and a real dist-info with the entry point,
while the environment (perhaps shared with another test run) is never modified.
"""

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_VIDEO
from vsynth.core.host.registry import get_registry
from vsynth.testing import assert_listing_imports_no_torch, assert_plugin_ok, run_cli

# Another plugin that registers the example's short names: the example's own suite must not mind.
RIVAL = """
from vsynth import hookimpl
from vsynth.core.host.specs import BridgeSpec, ModelSpec, WeightsSpec

@hookimpl
def vsynth_register_models(registrar):
    registrar.register_model(ModelSpec(name="canny-crossframe", kind="idm", description="a rival", impl="x.y:Z",
                                       weights=(WeightsSpec(role="controlnet", id="me/c", size_gb=0.1),)))

@hookimpl
def vsynth_register_bridges(registrar):
    registrar.register_bridge(BridgeSpec(name="sdedit", description="a rival", impl="x.y:Z"))
"""

EXAMPLE = Path(__file__).parents[1] / "examples" / "vsynth-example-plugin"


@pytest.fixture(scope="session")
def example_site(tmp_path_factory):
    """The folder pip installed the example package into (from a copy, so the checkout gets no build files).

    ``--no-build-isolation`` builds with this environment's setuptools, so no index is needed; the
    example asks for setuptools>=77, which the pinned torch requires anyway.
    """
    if int(metadata.version("setuptools").split(".")[0]) < 77:
        pytest.skip("building the example offline needs setuptools>=77 here: pip install -U setuptools")
    work = tmp_path_factory.mktemp("example-plugin")
    source = shutil.copytree(EXAMPLE, work / "source", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = work / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index", "--no-deps"]
    install = subprocess.run([*pip, "--no-build-isolation", "--target", str(site), str(source)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    return site


@pytest.fixture
def installed(example_site, monkeypatch):
    monkeypatch.syspath_prepend(str(example_site))
    get_registry.cache_clear()
    yield example_site
    get_registry.cache_clear()


def subprocess_env(example_site) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(example_site), os.environ.get("PYTHONPATH", "")])}


def test_installed_example_is_listed(installed):
    plugins = {r["name"]: r for r in json.loads(run_cli("plugins", "--json").stdout)}
    assert plugins["example"]["status"] == "ok"
    assert (plugins["example"]["dist"], plugins["example"]["version"]) == ("vsynth-example-plugin", "0.1.0")

    models = {r["qualified_name"]: r for r in json.loads(run_cli("models", "--json").stdout)}
    assert models["example/canny-crossframe"]["kind"] == "idm" and not models["example/canny-crossframe"]["conflict"]
    assert models["example/sdedit"]["kind"] == "bridge"
    assert models["example/sdedit"]["params"]["strength"]["default"] == 0.5
    mixed = models["example/zeroscope-mixednoise"]
    assert (mixed["kind"], mixed["native_size"]) == ("vdm", [320, 576])
    assert mixed["params_schema"]["properties"]["shared_noise"]["maximum"] == 1.0

    metrics = {r["qualified_name"]: r for r in json.loads(run_cli("models", "--kind", "metric", "--json").stdout)}
    assert metrics["example/sharpness"]["kind"] == "metric" and metrics["example/sharpness"]["higher_is_better"] is True
    assert "vsynth/text_alignment" in metrics and not any(r["kind"] != "metric" for r in metrics.values())


def test_the_testing_helpers_pass_on_the_installed_example(installed):
    assert_plugin_ok("example")
    assert_plugin_ok("vsynth-example-plugin")
    assert_listing_imports_no_torch("vsynth_example_plugin")


def test_a_tiny_run_with_the_example_vdm_alone_and_its_metric(installed, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "run", "--tiny", "--vdm", "zeroscope-mixednoise", "-o", "shared_noise=0.5", "--prompt", "a ball",
        "--frames", 2, "--steps", 2, "--height", 64, "--width", 64, "--quiet", "--out", out, "--metrics", "default,sharpness",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert (record["models"]["vdm"]["plugin"], record["models"]["vdm"]["params"]["shared_noise"]) == ("example", 0.5)
    # the plugin's metric, measured through the metric hook beside the built-in default set, and who provided it
    assert record["metrics"]["sharpness"]["final"] > 0 and "flicker" in record["metrics"]
    assert record["metric_plugins"]["sharpness"] == {"plugin": "example", "dist": "vsynth-example-plugin", "version": "0.1.0"}


def test_tiny_run_with_the_example_model_and_bridge_writes_a_video(installed, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "run", "--tiny", "--idm", "canny-crossframe", "--vdm", "zeroscope", "--bridge", "sdedit", "-o", "strength=0.5",
        "--video", SAMPLE_VIDEO, "--prompt", "a ball", "--frames", 2, "--steps", 2, "--height", 64, "--width", 64,
        "--quiet", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert (record["models"]["idm"]["plugin"], record["bridge"]["plugin"]) == ("example", "example")
    assert record["nfe"]["vdm"] == 1  # strength 0.5 of 2 steps
    assert {"video.mp4", "idm_frames.mp4"} <= {p.name for p in out.iterdir()}


@pytest.mark.parametrize("args", [["--help"], ["models"], ["plugins"]])
def test_listings_import_no_torch_with_the_example_installed(example_site, args):
    code = (
        f"import sys; from vsynth.cli import cli; cli({args!r}, standalone_mode=False); "
        "print('torch' in sys.modules, 'vsynth_example_plugin' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=subprocess_env(example_site))
    torch_imported, plugin_imported = run.stdout.strip().splitlines()[-1].split()
    assert torch_imported == "False" and plugin_imported == str(args != ["--help"])


def test_vsynth_testing_imports_no_torch():
    code = "import sys, vsynth.testing, vsynth.testing.fixtures; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def install_rival(site: Path) -> Path:
    """A plugin 'rival' registering the example's short names, installed as a dist-info into ``site``."""
    info = site / "vsynth_rival-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "vsynth_rival.py").write_text(RIVAL)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vsynth-rival\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[vsynth]\nrival = vsynth_rival\n")
    return site


def test_the_example_packages_own_tests_pass_installed(example_site, tmp_path, tiny_cache):
    """Its tests run from a copy outside the checkout; its src/ layout means they import the installed package.

    A rival plugin with the example's short names is installed next to it: the suite loads only the
    plugin under test. It shares this session's tiny models (VSYNTH_TEST_CACHE) instead of rebuilding them.
    """
    tests = shutil.copytree(EXAMPLE, tmp_path / "example", ignore=shutil.ignore_patterns("src", "build", "*.egg-info", "__pycache__"))
    rival = install_rival(tmp_path / "rival")
    env = subprocess_env(example_site)
    env["PYTHONPATH"] = os.pathsep.join([str(rival), env["PYTHONPATH"]])
    env["VSYNTH_TEST_CACHE"] = str(tiny_cache)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:logging"],
        cwd=tests, capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and "failed" not in run.stdout
