"""Plugin discovery that survives broken plugins, the name rules, the filters, and install/uninstall.

Plugins here are installed-looking without pip: a module and a ``*.dist-info`` folder holding its
entry point, on sys.path, which is all that discovery reads.
"""

import importlib
import json
import os
import shutil
import signal
import sys
import textwrap
from importlib import metadata

import pytest

from tests.conftest import SAMPLE_VIDEO
from vsynth.core.host import installer
from vsynth.core.host import registry
from vsynth.core.host.registry import build_registry, get_registry
from vsynth.errors import PluginError, UnknownNameError
from vsynth.testing import run_cli

IDM_PLUGIN = """
from vsynth import hookimpl
from vsynth.core.host.specs import ModelSpec, WeightsSpec

@hookimpl
def vsynth_register_models(registrar):
    for name in {names!r}:
        registrar.register_model(ModelSpec(
            name=name, kind="idm", description="a test model",
            weights=(WeightsSpec(role="controlnet", id="me/controlnet", size_gb=0.1),),
            impl="vsynth.plugins.idm.controlnet:ControlNetCanny",
        ))
"""

BRIDGE_PLUGIN = """
from vsynth import hookimpl
from vsynth.core.host.specs import BridgeSpec

@hookimpl
def vsynth_register_bridges(registrar):
    registrar.register_bridge(BridgeSpec(name={name!r}, description="a test bridge", impl="x.y:Z"))
"""

BROKEN_IMPORT = "import vsynth_missing_dependency\n"

WRONG_SIGNATURE = """
from vsynth import hookimpl

@hookimpl
def vsynth_register_models(registrar, device):
    pass
"""

UNKNOWN_HOOK = """
from vsynth import hookimpl

@hookimpl
def vsynth_register_model(registrar):
    pass
"""

FAILS_HALFWAY = IDM_PLUGIN.format(names=["halfway"]) + """
@hookimpl
def vsynth_register_bridges(registrar):
    raise RuntimeError("bridges are not ready")
"""


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """``add(dist, source, entry=...)`` installs a fake plugin, for this process and its subprocesses;
    the registry cache is rebuilt around the test."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    modules = []

    def add(dist: str, source: str, entry: str | None = None) -> metadata.EntryPoint:
        module = dist.replace("-", "_")
        entry = entry or dist.removeprefix("vsynth-")
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{module}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[vsynth]\n{entry} = {module}\n")
        modules.append(module)
        importlib.invalidate_caches()
        get_registry.cache_clear()
        (ep,) = metadata.PathDistribution(info).entry_points
        return ep

    add.site = site
    get_registry.cache_clear()
    yield add
    for module in modules:
        sys.modules.pop(module, None)
    get_registry.cache_clear()


def info(reg, name):
    return next(p for p in reg.plugins if p.name == name)


# ---------------------------------------------------------------------------- discovery


@pytest.mark.parametrize(
    "source, reason",
    [
        (BROKEN_IMPORT, "ModuleNotFoundError: No module named 'vsynth_missing_dependency'"),
        (WRONG_SIGNATURE, "device"),
        (UNKNOWN_HOOK, "unknown hook 'vsynth_register_model'"),
    ],
    ids=["import error", "wrong signature", "unknown hook"],
)
def test_a_broken_plugin_is_reported_and_the_others_load(plugins, source, reason):
    broken = plugins("vsynth-broken", source)
    good = plugins("vsynth-good", IDM_PLUGIN.format(names=["good-idm"]))
    reg = build_registry([broken, good])

    report = info(reg, "broken")
    assert report.status == "error" and reason in report.error and "\n" not in report.error
    assert report.fix == "vsynth uninstall vsynth-broken" and report.dist == "vsynth-broken"
    assert info(reg, "good").status == "ok" and reg.model("good-idm", "idm").plugin == "good"
    assert reg.model("controlnet-canny", "idm").plugin == "vsynth"


def test_a_plugin_that_fails_halfway_leaves_no_specs_behind(plugins):
    reg = build_registry([plugins("vsynth-halfway", FAILS_HALFWAY)])
    assert "bridges are not ready" in info(reg, "halfway").error
    assert not any(spec.plugin == "halfway" for spec in reg.models.values())


def test_strict_mode_raises_with_the_reason(plugins, monkeypatch):
    monkeypatch.setenv("VSYNTH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="plugin 'broken' failed to load: ModuleNotFoundError"):
        build_registry([plugins("vsynth-broken", BROKEN_IMPORT)])


def test_a_taken_plugin_name_is_an_error(plugins):
    first = plugins("vsynth-first", IDM_PLUGIN.format(names=["first-idm"]), entry="same")
    second = plugins("vsynth-second", IDM_PLUGIN.format(names=["second-idm"]), entry="same")
    builtin_name = plugins("vsynth-clash", IDM_PLUGIN.format(names=["clash-idm"]), entry="vsynth")
    reg = build_registry([first, second, builtin_name])
    assert [(p.dist, p.status) for p in reg.plugins] == [
        ("vsynth", "ok"), ("vsynth-first", "ok"), ("vsynth-second", "error"), ("vsynth-clash", "error"),
    ]  # fmt: skip
    assert "the plugin name 'same' is taken" in reg.plugins[2].error
    assert reg.model("first-idm").plugin == "same"


def test_a_plugin_name_clash_has_a_deterministic_winner_and_a_run_hears_of_the_loser(plugins):
    first = plugins("vsynth-first", IDM_PLUGIN.format(names=["first-idm"]), entry="same")
    second = plugins("vsynth-second", IDM_PLUGIN.format(names=["second-idm"]), entry="same")
    for order in ([first, second], [second, first]):
        reg = build_registry(order)
        assert [(p.dist, p.status) for p in reg.plugins[1:]] == [("vsynth-first", "ok"), ("vsynth-second", "error")]
        assert "the plugin name 'same' is taken by vsynth-first (plugins load sorted by distribution name)" in reg.plugins[2].error
    with pytest.raises(UnknownNameError, match="IDM 'second-idm' is provided by vsynth-second 1.0, which did not load: the plugin name 'same' is taken by vsynth-first"):
        reg.model("second-idm", "idm")
    with pytest.raises(UnknownNameError, match="unknown IDM 'third-idm'"):
        reg.model("third-idm", "idm")


def test_a_plugin_that_imports_a_heavy_module_is_warned(plugins, monkeypatch):
    (plugins.site / "heavy_dependency.py").write_text("")
    monkeypatch.setattr(registry, "HEAVY_MODULES", ("heavy_dependency",))
    monkeypatch.delitem(sys.modules, "heavy_dependency", raising=False)
    reg = build_registry([plugins("vsynth-heavy", "import heavy_dependency\n" + IDM_PLUGIN.format(names=["heavy-idm"]))])
    report = info(reg, "heavy")
    assert report.status == "warning" and "imports heavy_dependency when loaded" in report.warnings[0]
    assert reg.model("heavy-idm").plugin == "heavy"


@pytest.fixture
def default_sigint():
    """The registry tells a plugin's own KeyboardInterrupt from the user's Ctrl-C only under Python's
    default SIGINT handler; under any other it (rightly) takes every KeyboardInterrupt for the user's.
    A library an earlier test loaded may leave its own handler (CI once stopped at these tests that way;
    conftest's ``sigint_handler_kept`` puts back what a test changes, this covers what an import did)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("default_sigint")
@pytest.mark.parametrize(
    "source, reason",
    [("import sys\nsys.exit(3)\n", "SystemExit: 3"), ("raise KeyboardInterrupt\n", "raised KeyboardInterrupt while being imported")],
    ids=["sys.exit", "KeyboardInterrupt"],
)
def test_a_plugin_that_exits_or_interrupts_at_import_is_reported(plugins, source, reason):
    reg = build_registry([plugins("vsynth-rude", source), plugins("vsynth-good", IDM_PLUGIN.format(names=["good-idm"]))])
    assert info(reg, "rude").status == "error" and reason in info(reg, "rude").error
    assert reg.model("good-idm").plugin == "good"


@pytest.mark.usefixtures("default_sigint")
def test_a_real_ctrl_c_while_importing_a_plugin_stops_the_command(plugins):
    slow = plugins("vsynth-slow", "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(5)\n")
    with pytest.raises(KeyboardInterrupt):
        build_registry([slow])


def test_a_slow_plugin_import_is_warned_by_name(plugins, monkeypatch, caplog):
    monkeypatch.setattr(registry, "SLOW_IMPORT_SECONDS", 0.05)
    reg = build_registry([plugins("vsynth-sleepy", "import time\ntime.sleep(0.2)\n" + IDM_PLUGIN.format(names=["sleepy-idm"]))])
    report = info(reg, "sleepy")
    assert report.status == "warning" and "s to import, which delays every vsynth command" in report.warnings[0]
    assert "plugin 'sleepy' took" in caplog.text
    assert reg.model("sleepy-idm").plugin == "sleepy"


def test_a_spec_whose_impl_does_not_resolve_is_refused_before_loading(plugins, tmp_path):
    plugins("vsynth-hollow", IDM_PLUGIN.format(names=["hollow-idm"]).replace("vsynth.plugins.idm.controlnet:ControlNetCanny", "vsynth_nowhere:Model"))
    result = run_cli(
        "run", "--tiny", "--idm", "hollow-idm", "--vdm", "zeroscope", "--prompt", "a ball", "--out", tmp_path / "out"
    )
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "plugin 'hollow': idm 'hollow-idm' names impl 'vsynth_nowhere:Model', which does not resolve" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "impl, found",
    [("vsynth.plugins.vdm.unet3d:UNet3DVideoModel", "UNet3DVideoModel"), ("vsynth.core.diffusion.sampling:sample", "a function, not a class")],
    ids=["a video model as an idm", "a function"],
)
def test_an_impl_of_the_wrong_class_is_refused_before_loading(plugins, tmp_path, impl, found):
    plugins("vsynth-wrong", IDM_PLUGIN.format(names=["wrong-idm"]).replace("vsynth.plugins.idm.controlnet:ControlNetCanny", impl))
    result = run_cli("run", "--tiny", "--idm", "wrong-idm", "--vdm", "zeroscope", "--prompt", "a ball", "--out", tmp_path / "out")
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert f"plugin 'wrong': idm 'wrong-idm' names impl '{impl}', which is {found}, not a subclass of vsynth.core.diffusion.models.ImageModel" in line
    assert line.endswith("update or uninstall the plugin") and not (tmp_path / "out").exists()


def test_every_secondary_weights_role_takes_an_o_override_without_a_params_field(plugins, monkeypatch, tmp_path):
    from vsynth.core.run import pipeline
    from vsynth.core.run.config import make_config

    two_roles = IDM_PLUGIN.format(names=["refined-idm"]).replace(
        'size_gb=0.1),', 'size_gb=0.1), WeightsSpec(role="refiner", id="me/refiner", size_gb=0.1),'
    )
    plugins("vsynth-refined", two_roles)
    monkeypatch.setattr(pipeline, "locate", lambda weights, source, flag, params: source)
    config = make_config({"idm": "refined-idm", "vdm": "zeroscope", "prompt": "a ball", "out": tmp_path / "o", "options": {"refiner": "you/refiner"}})
    plan = pipeline.plan_run(config)
    assert plan.sources["idm"] == {"controlnet": "me/controlnet", "refiner": "you/refiner"}
    assert "refiner" not in plan.params["idm"].model_dump()


# ---------------------------------------------------------------------------- names


def test_a_builtin_name_cannot_be_shadowed(plugins):
    shadow = plugins("vsynth-shadow", IDM_PLUGIN.format(names=["controlnet-canny", "own-idm"]) + BRIDGE_PLUGIN.format(name="mixed-inversion"))
    reg = build_registry([shadow])
    report = info(reg, "shadow")
    assert report.status == "warning" and report.error == ""
    assert report.warnings == [
        "idm 'controlnet-canny' not loaded: the name belongs to a built-in idm",
        "bridge 'mixed-inversion' not loaded: the name belongs to a built-in bridge",
    ]
    assert reg.model("controlnet-canny", "idm").plugin == "vsynth" and reg.bridge("mixed-inversion").plugin == "vsynth"
    assert reg.model("own-idm", "idm").plugin == "shadow"
    with pytest.raises(UnknownNameError):
        reg.model("shadow/controlnet-canny", "idm")


def test_two_plugins_with_one_name_are_both_kept_and_the_short_name_is_refused(plugins):
    alpha = plugins("vsynth-alpha", IDM_PLUGIN.format(names=["shared"]))
    beta = plugins("vsynth-beta", IDM_PLUGIN.format(names=["shared"]))
    reg = build_registry([alpha, beta])
    assert {info(reg, "alpha").status, info(reg, "beta").status} == {"ok"}
    assert reg.model("alpha/shared", "idm").plugin == "alpha" and reg.model("beta/shared", "idm").plugin == "beta"
    assert reg.conflicts(reg.model("alpha/shared")) and reg.address(reg.model("beta/shared")) == "beta/shared"
    with pytest.raises(UnknownNameError, match="IDM 'shared' is registered by several plugins: choose 'alpha/shared' or 'beta/shared'"):
        reg.model("shared", "idm")
    with pytest.raises(UnknownNameError, match="did you mean 'alpha/shared'"):
        reg.model("alpha/sharde", "idm")


def test_one_name_for_two_kinds_is_no_conflict(plugins):
    reg = build_registry([plugins("vsynth-both", IDM_PLUGIN.format(names=["zeroscope"]))])
    assert reg.model("zeroscope", "idm").plugin == "both" and reg.model("zeroscope", "vdm").plugin == "vsynth"
    assert info(reg, "both").status == "ok"


def test_a_name_with_a_slash_is_refused(plugins):
    reg = build_registry([plugins("vsynth-slash", IDM_PLUGIN.format(names=["a/b"]))])
    assert "name" in info(reg, "slash").error and info(reg, "slash").status == "error"


# ---------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    "env, loaded",
    [
        ({"VSYNTH_LOAD_PLUGINS": ""}, set()),
        ({"VSYNTH_LOAD_PLUGINS": "alpha"}, {"alpha"}),
        ({"VSYNTH_LOAD_PLUGINS": " vsynth-beta , alpha"}, {"alpha", "beta"}),  # entry-point or distribution names
        ({"VSYNTH_DISABLE_PLUGINS": "alpha,broken"}, {"beta"}),
        ({"VSYNTH_LOAD_PLUGINS": "alpha,beta", "VSYNTH_DISABLE_PLUGINS": "beta"}, {"alpha"}),
    ],
)
def test_filters_select_plugins_and_report_the_others(plugins, monkeypatch, env, loaded):
    eps = [
        plugins("vsynth-alpha", IDM_PLUGIN.format(names=["alpha-idm"])),
        plugins("vsynth-beta", IDM_PLUGIN.format(names=["beta-idm"])),
        plugins("vsynth-broken", BROKEN_IMPORT),
    ]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reg = build_registry(eps)
    assert {spec.plugin for spec in reg.models.values()} - {"vsynth"} == loaded
    for report in reg.plugins[1:]:
        if report.name in loaded:
            assert report.status == "ok"
        elif report.disabled_by:
            assert report.status == "disabled" and report.error == "" and report.disabled_by in env
        else:
            assert report.name == "broken" and report.status == "error"  # a disabled plugin is never imported


# ---------------------------------------------------------------------------- the command line


def test_listings_keep_working_with_a_broken_plugin(plugins):
    plugins("vsynth-broken", BROKEN_IMPORT)
    result = run_cli("models", "--json")
    assert result.exit_code == 0 and "controlnet-canny" in {r["name"] for r in json.loads(result.stdout)}

    result = run_cli("plugins", "--json")
    record = next(r for r in json.loads(result.stdout) if r["name"] == "broken")
    assert record["status"] == "error" and record["fix"] == "vsynth uninstall vsynth-broken"
    assert record["error"] == "ModuleNotFoundError: No module named 'vsynth_missing_dependency'"

    table = run_cli("plugins").stdout
    assert "broken: error: ModuleNotFoundError: No module named 'vsynth_missing_dependency'" in table
    assert "fix: vsynth uninstall vsynth-broken" in table


def test_a_run_with_builtins_works_next_to_a_broken_plugin(plugins, tmp_path):
    plugins("vsynth-broken", WRONG_SIGNATURE)
    out = tmp_path / "out"
    result = run_cli(
        "run", "--tiny", "--idm", "controlnet-canny", "--vdm", "zeroscope", "--video", SAMPLE_VIDEO, "--prompt", "a ball",
        "--frames", 1, "--steps", 1, "--height", 64, "--width", 64, "--quiet", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "video.mp4").is_file()


def test_strict_mode_fails_the_command_in_one_line(plugins, monkeypatch):
    plugins("vsynth-broken", BROKEN_IMPORT)
    monkeypatch.setenv("VSYNTH_STRICT_PLUGINS", "1")
    result = run_cli("models")
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line == "Error: plugin 'broken' failed to load: ModuleNotFoundError: No module named 'vsynth_missing_dependency'"


def test_plugins_lists_even_in_strict_mode(plugins, monkeypatch):
    plugins("vsynth-broken", BROKEN_IMPORT)
    monkeypatch.setenv("VSYNTH_STRICT_PLUGINS", "1")
    result = run_cli("plugins")
    assert result.exit_code == 0, result.output
    assert "broken: error: ModuleNotFoundError: No module named 'vsynth_missing_dependency'" in result.stdout


def test_a_plugin_filter_that_matches_nothing_is_warned(plugins, monkeypatch, caplog):
    alpha = plugins("vsynth-alpha", IDM_PLUGIN.format(names=["alpha-idm"]))
    monkeypatch.setenv("VSYNTH_LOAD_PLUGINS", "alpah")
    build_registry([alpha])
    assert "VSYNTH_LOAD_PLUGINS names 'alpah', which matches no installed plugin: did you mean 'alpha'? installed: alpha" in caplog.text


def test_plugin_text_is_not_read_as_markup(plugins):
    plugins("vsynth-pose", IDM_PLUGIN.format(names=["pose-idm"]).replace("a test model", "needs pip install 'vsynth[pose]' first"))
    plugins("vsynth-broken", "raise ImportError(\"pip install 'vsynth[pose]'\")\n")
    assert "pip install 'vsynth[pose]'" in run_cli("plugins").stdout
    assert "pip install 'vsynth[pose]'" in run_cli("models", "--kind", "idm").stdout


def test_models_table_keeps_descriptions_without_a_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    table = run_cli("models").stdout
    assert "ZeroScope v2 576w" in table and max(len(line) for line in table.splitlines()) <= 80


def test_models_json_marks_conflicts_and_a_run_with_the_short_name_is_refused(plugins, tmp_path):
    plugins("vsynth-alpha", IDM_PLUGIN.format(names=["shared"]))
    plugins("vsynth-beta", IDM_PLUGIN.format(names=["shared"]))
    records = [r for r in json.loads(run_cli("models", "--json").stdout) if r["name"] == "shared"]
    assert sorted((r["qualified_name"], r["conflict"]) for r in records) == [("alpha/shared", True), ("beta/shared", True)]
    canny = next(r for r in json.loads(run_cli("models", "--json").stdout) if r["name"] == "controlnet-canny")
    assert (canny["qualified_name"], canny["conflict"]) == ("vsynth/controlnet-canny", False)
    assert "alpha/shared" in run_cli("models").stdout

    result = run_cli("run", "--tiny", "--idm", "shared", "--vdm", "zeroscope", "--video", SAMPLE_VIDEO, "--prompt", "x", "--out", tmp_path / "o")
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "choose 'alpha/shared' or 'beta/shared'" in line


# ---------------------------------------------------------------------------- install / uninstall


@pytest.fixture
def fake_pip(plugins, monkeypatch):
    """pip as far as vsynth can tell: installs write a plugin's dist-info, uninstalls remove it."""
    calls = []

    def run_pip(args):
        calls.append(args)
        if args[0] == "install":
            plugins("vsynth-new", IDM_PLUGIN.format(names=["new-idm"]))
        else:
            for dist in args[1:]:
                shutil.rmtree(plugins.site / f"{dist.replace('-', '_')}-1.0.dist-info", ignore_errors=True)
        return 0

    monkeypatch.setattr(installer, "run_pip", run_pip)
    return calls


def test_install_runs_pip_and_shows_the_added_plugin(fake_pip, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "local-plugin").mkdir()
    (tmp_path / "local-plugin" / "pyproject.toml").write_text("[project]\nname = 'vsynth-local'\n")
    result = run_cli("install", "-U", "vsynth-new", "-e", "./local-plugin[extra]", "-e", "git+https://example.org/p.git#egg=p")
    assert result.exit_code == 0, result.output
    assert fake_pip == [["install", "--upgrade", "vsynth-new", "-e", "./local-plugin[extra]", "-e", "git+https://example.org/p.git#egg=p"]]
    assert result.stdout.strip() == "added plugin 'new' (vsynth-new 1.0)"


@pytest.mark.parametrize(
    "args, line",
    [
        (("install", "-e", "missing-plugin"), "-e missing-plugin: no such folder"),
        (("install", "-e", "empty"), "-e empty: not a Python project (no pyproject.toml or setup.py in it)"),
        (("uninstall", "vsynth-foo", "torch", "-y"), "torch is one of vsynth's own dependencies, not a plugin: removing it would break "
         "vsynth; if you mean it, run `python -m pip uninstall torch`"),
        (("uninstall", "Diffusers==0.42"), "Diffusers==0.42 is one of vsynth's own dependencies"),
        (("uninstall", "vsynth-foo"), "vsynth uninstall asks before removing, and there is no terminal to ask on: add -y"),
        (("uninstall", "vsynth-nowhere", "-y"), "vsynth-nowhere is not installed (`vsynth plugins` lists the plugins with their packages)"),
        (("uninstall", "new", "-y"), "new is a plugin's name; its package is vsynth-new: run `vsynth uninstall vsynth-new`"),
    ],
)
def test_install_and_uninstall_refuse_what_pip_would_fail_on_or_regret(plugins, fake_pip, tmp_path, monkeypatch, args, line):
    """pip's own answers were many lines and exit 1 (a missing -e folder), a removed torch (vsynth broken), or an
    EOFError traceback (its question, asked with no terminal)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    plugins("vsynth-new", IDM_PLUGIN.format(names=["new-idm"]))
    result = run_cli(*args)
    assert result.exit_code == 2 and fake_pip == [], result.output
    (message,) = result.stderr.strip().splitlines()
    assert message.startswith(f"Error: {line}"), message


def test_uninstall_works_with_a_broken_plugin_even_in_strict_mode(plugins, fake_pip, monkeypatch):
    plugins("vsynth-broken", BROKEN_IMPORT)
    monkeypatch.setenv("VSYNTH_STRICT_PLUGINS", "1")
    result = run_cli("uninstall", "vsynth-broken", "-y")
    assert result.exit_code == 0, result.output
    assert fake_pip == [["uninstall", "vsynth-broken", "--yes"]]
    assert result.stdout.strip() == "removed plugin 'broken' (vsynth-broken 1.0)"


def test_installing_a_plugin_whose_name_is_taken_is_warned(plugins, fake_pip):
    plugins("vsynth-another", IDM_PLUGIN.format(names=["another-idm"]), entry="new")
    result = run_cli("install", "vsynth-new")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == (
        "Warning: plugin name 'new' is also used by vsynth-another: vsynth-another keeps it (distribution names sort first) "
        "and vsynth-new will not load; uninstall one, or ask its author to rename the entry point"
    )


@pytest.mark.parametrize("package", ["vsynth", "VSynth", "vsynth[pose]", "vsynth==0.2"])
def test_uninstalling_vsynth_itself_is_refused(fake_pip, package):
    result = run_cli("uninstall", "vsynth-foo", package, "-y")
    assert result.exit_code == 2 and fake_pip == []
    assert result.stderr.strip() == "Error: vsynth uninstall removes plugins, not vsynth itself: run `python -m pip uninstall vsynth`"


def test_install_reports_pip_failure_and_missing_packages_in_one_line(monkeypatch):
    monkeypatch.setattr(installer, "run_pip", lambda args: 1)
    result = run_cli("install", "vsynth-nothing")
    assert result.exit_code == 1 and result.stderr.strip() == "Error: pip install failed with exit code 1 (its output is above)"
    result = run_cli("install")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1


def test_pip_runs_in_vsynths_own_interpreter(monkeypatch):
    seen = []
    monkeypatch.setattr(installer.subprocess, "run", lambda cmd: seen.append(cmd) or type("Done", (), {"returncode": 0}))
    assert installer.run_pip(["install", "x"]) == 0
    assert seen == [[sys.executable, "-m", "pip", "install", "x"]]


def test_describe_changes():
    old = {installer.InstalledPlugin("a", "vsynth-a", "1.0"), installer.InstalledPlugin("b", "vsynth-b", "1.0")}
    new = {installer.InstalledPlugin("a", "vsynth-a", "2.0"), installer.InstalledPlugin("c", "vsynth-c", "1.0")}
    assert installer.describe_changes(old, new) == [
        "added plugin 'c' (vsynth-c 1.0)",
        "removed plugin 'b' (vsynth-b 1.0)",
        "updated plugin 'a' (vsynth-a 1.0 -> 2.0)",
    ]
    assert installer.describe_changes(old, old) == ["no vsynth plugin was added or removed"]


# ---------------------------------------------------------------------------- vsynth.testing


def test_only_plugins_isolates_a_plugin_from_a_rival_with_its_names(plugins):
    from vsynth.testing import only_plugins

    plugins("vsynth-alpha", IDM_PLUGIN.format(names=["shared"]))
    plugins("vsynth-beta", IDM_PLUGIN.format(names=["shared"]))
    with pytest.raises(UnknownNameError):
        get_registry().model("shared")
    with only_plugins("alpha"):
        assert get_registry().model("shared").plugin == "alpha"
    assert "VSYNTH_LOAD_PLUGINS" not in os.environ and get_registry().conflicts(get_registry().model("alpha/shared"))


def test_assert_plugin_ok_names_what_is_wrong(plugins):
    from vsynth.testing import assert_plugin_ok

    plugins("vsynth-broken", BROKEN_IMPORT)
    plugins("vsynth-hollow", IDM_PLUGIN.format(names=["hollow-idm"]).replace("vsynth.plugins.idm.controlnet:ControlNetCanny", "vsynth_nowhere:Model"))
    plugins("vsynth-good", IDM_PLUGIN.format(names=["good-idm"]))
    assert_plugin_ok("good")
    with pytest.raises(AssertionError, match="plugin 'broken' is error: ModuleNotFoundError"):
        assert_plugin_ok("broken")
    with pytest.raises(PluginError, match="names impl 'vsynth_nowhere:Model', which does not resolve"):
        assert_plugin_ok("hollow")


def test_assert_listing_imports_no_torch_catches_a_hook_module_importing_torch(plugins):
    from vsynth.testing import assert_listing_imports_no_torch

    plugins("vsynth-light", IDM_PLUGIN.format(names=["light-idm"]))
    assert_listing_imports_no_torch("vsynth_light")
    plugins("vsynth-heavy", "import torch\n" + IDM_PLUGIN.format(names=["heavy-idm"]))
    with pytest.raises(AssertionError, match="importing vsynth_heavy or listing the models imports torch"):
        assert_listing_imports_no_torch("vsynth_heavy")
