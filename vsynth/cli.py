"""The ``vsynth`` command line: click for parsing, rich for tables and progress bars.

Nothing heavy is imported at module level: ``vsynth --help``, ``vsynth models`` and
``vsynth plugins`` never import torch. Every input error is one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import click

from vsynth import __version__, interrupts
from vsynth.errors import ECHO_LIMIT, VsynthError, VsynthInputError, VsynthWarning, shorten

KINDS = ("idm", "vdm", "bridge")


class HomePath(click.Path):
    """A folder argument whose leading ``~`` is the home folder also where no shell expanded it (quoted, ``--out=~/x``).

    The run's paths, config files and jobs files expand it themselves, for Python callers too."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():  # Path("") is the current folder: an unset variable, not a choice
            self.fail("is empty: name a folder", param, ctx)
        return super().convert(Path(value).expanduser() if isinstance(value, str) else value, param, ctx)


def _shortened(message: str, args) -> str:
    """click's own errors quote what was typed: a 10,000-character value is echoed shortened, as vsynth's errors do."""
    typed = {part for arg in (sys.argv[1:] if args is None else args) for part in (arg, arg.partition("=")[2])}
    for text in sorted((t for t in typed if len(t) > ECHO_LIMIT), key=len, reverse=True):
        message = message.replace(text, shorten(text))
    return message


def _one_line(message: str) -> str:
    """Lines joined by '; ', except a list click breaks over lines ("Choose from:", "idm,", "vdm,"), which reads on."""
    text = ""
    for line in (line.strip() for line in message.strip().splitlines()):
        if line:
            text += line if not text else (" " if text.endswith((",", ":")) else "; ") + line
    return text


class _WarningLines:
    """vsynth's warnings raised while jobs are planned and run, as `vsynth run` prints them: one 'Warning: ...' line
    each, once however many jobs raise it (through ``console`` while a progress bar is live), not in Python's form
    with a file, line number and source line."""

    def __init__(self):
        self.console, self.seen = None, set()

    @contextmanager
    def shown(self):
        original = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if not issubclass(category, VsynthWarning):
                return original(message, category, filename, lineno, file, line)
            text = f"Warning: {_one_line(str(message))}"
            if text in self.seen:
                return
            self.seen.add(text)
            if self.console is not None:
                self.console.print(text, markup=False, highlight=False, soft_wrap=True)
            else:
                click.echo(text, err=True)

        with warnings.catch_warnings():  # restores showwarning and the filters on the way out
            warnings.simplefilter("always", VsynthWarning)  # as `run`: shown whatever -W says; `seen` keeps them once
            warnings.showwarning = show
            yield self


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so that every ``finally`` (the partial output) cleans up."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


# What each signal that stops a command is called in its one line; it exits 128 + its number (143, 129).
TERMINATING = {signal.SIGTERM: "terminated (SIGTERM)", signal.SIGHUP: "hung up (SIGHUP)"}


@contextmanager
def _sigterm_unwinds():
    """Turn SIGTERM and SIGHUP into :class:`Terminated` while a command runs, and remember Ctrl-C (vsynth.interrupts)
    (main thread only: signals need it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated(signum)

    interrupts.reset()
    previous = {signum: signal.signal(signum, terminate) for signum in TERMINATING}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where it is ignored (nohup, `cmd &` in a script)
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, interrupts.interrupt)  # remembered: see vsynth.interrupts
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class VsynthGroup(click.Group):
    """Reports every error as one line: input errors exit 2, other vsynth errors 1, Ctrl-C 130, SIGTERM 143, SIGHUP 129."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            with _sigterm_unwinds():
                result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
                interrupts.check()  # a Ctrl-C that a library swallowed still ends the command as one
        except Terminated as exc:
            self._fail(f"{TERMINATING[exc.signum]}: stopped, and removed the unfinished output", 128 + exc.signum)
        except click.exceptions.NoArgsIsHelpError as exc:  # `vsynth`, `vsynth toy` alone: the help itself, as click shows it
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            self._fail(_shortened(exc.format_message(), args) + hint, exc.exit_code)
        except click.ClickException as exc:
            self._fail(_shortened(exc.format_message(), args), exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            self._fail("aborted", 130)
        except VsynthInputError as exc:
            self._fail(str(exc), 2)
        except VsynthError as exc:
            self._fail(str(exc), 1)
        finally:
            interrupts.reset()  # for what this process runs next (the Python API, a test's next command)
        sys.exit(result if isinstance(result, int) else 0)

    @staticmethod
    def _fail(message: str, code: int):
        if interrupts.pending() and code not in (130, 143, 129):  # a library turned the Ctrl-C into its own error
            message, code = "aborted", 130
        click.echo(f"Error: {_one_line(message)}", err=True)
        sys.exit(code)


@click.group(cls=VsynthGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vsynth")
def cli():
    """Training-free video synthesis: bridge an image diffusion model (IDM) and a video diffusion
    model (VDM) to generate, edit, inpaint or outpaint videos.

    \b
    Try it offline on the built-in tiny models:
      vsynth run --tiny --idm controlnet-canny --vdm zeroscope \\
        --video examples/shapes.mp4 --prompt "a red ball bouncing on a table" --height 256 --width 256
    """


# ---------------------------------------------------------------------------- listings


# Below this width the models table keeps name, kind, plugin and description (`vsynth models NAME` has the rest).
WIDE_TABLE = 120
# `vsynth toy examples --motion`: at the default speed (4 px a frame) a shape stays inside the 64-pixel frame for
# 9 frames, the length the Wan toy learnt motion on (1 + 4k); longer clips start and end it half outside
MOTION_FRAMES = 9
UNBOUNDED = 10_000  # a console width no row reaches: rich then neither wraps nor truncates


def _spec_record(spec, registry) -> dict:
    """Every field of a spec, the params' summary and their full JSON schema (constraints, choices)."""
    from vsynth.core.diffusion.solvers import fitting
    from vsynth.core.diffusion.weights import weight_flags

    record = {
        "name": spec.name,
        "qualified_name": spec.qualified_name,
        "conflict": registry.conflicts(spec),  # another plugin has this name: only qualified_name selects it
        **spec.model_dump(mode="json", exclude={"name", "params"}),
    }
    if spec.kind == "metric":
        record.update({"size_gb": spec.size_gb} if spec.weights else {})
    elif spec.kind != "bridge":
        flags = weight_flags(spec)
        record["weights"] = [{**w, "override": flags[w["role"]]} for w in record["weights"]]
        record["size_gb"] = spec.size_gb
        record["toy"] = all(w.toy is not None for w in spec.weights)  # `vsynth run --toy` can run it
        record["solvers"] = fitting(spec.process)  # what --idm-scheduler / --vdm-scheduler take
        space = spec.latent_space
        record["frame_rule"] = f"{space.frame_rule()}; sides multiples of {space.size_multiple} pixels"
    record["params"] = spec.param_schema()
    record["params_schema"] = spec.params.model_json_schema()
    return record


@cli.command()
@click.argument("name", required=False)
@click.option("--kind", type=click.Choice((*KINDS, "metric")), help="Only list this kind; metric lists the metrics (`vsynth eval`, run.json).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list; one object with NAME) instead of a table.")
@click.option("--wide", is_flag=True, help="Every column, whatever the terminal's width (the default in a pipe).")
def models(name, kind, as_json, wide):
    """List the image models, video models and bridges that can be used; with NAME, one of them in full
    (every spec field, its weights and how to replace them, its parameters with their constraints)."""
    from rich.console import Console

    registry = _registry()
    specs = [s for s in (*registry.models.values(), *registry.bridges.values()) if kind is None or s.kind == kind]
    if kind == "metric" or (name is not None and kind is None):  # metrics: listed with --kind metric, found by NAME
        specs += list(registry.metrics.values())
    if name is not None:
        record = _spec_record(_one_spec(registry, specs, name, kind), registry)
        if as_json:
            click.echo(json.dumps(record, indent=2, default=str))
        else:
            _print_details(Console(), record)
        return
    records = [_spec_record(s, registry) for s in specs]
    if as_json:
        click.echo(json.dumps(records, indent=2, default=str))
        return
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if wide or (not console.is_terminal and "COLUMNS" not in os.environ):  # a pipe has no width to fit: keep it all
        console = Console(width=UNBOUNDED)
    wide = console.width >= WIDE_TABLE
    columns = ("name", "kind", "task", "weights", "toy", "plugin") if wide else ("name", "kind", "plugin")
    table = Table(title="vsynth models")
    for column in columns:
        table.add_column(column, no_wrap=True)
    table.add_column("description", ratio=1, min_width=24)
    for r in records:
        cells = {
            "name": f"{escape(r['qualified_name'])} [yellow](conflict)[/]" if r["conflict"] else escape(r["name"]),
            "kind": r["kind"],
            "task": escape(r.get("task") or ""),
            "weights": f"{r['size_gb']:g} GB" if "size_gb" in r else "",
            "toy": "yes" if r.get("toy") else "",
            "plugin": escape(r["plugin"]),
        }
        table.add_row(*(cells[c] for c in columns), escape(r["description"]))
    console.print(table)
    if not wide:
        console.print("task, weights and toy left out to fit: `vsynth models --wide` shows every column, `vsynth models NAME` one in full.")
    if any(r.get("toy") for r in records):
        from vsynth.toy.world import VOCABULARY

        words = "; ".join(f"{kind} {', '.join(values)}" for kind, values in VOCABULARY.items())
        console.print(f"toy: `vsynth run --toy` runs these on trained 64x64 toy-world weights, with the vocabulary: {words}")


def _registry():
    """The process's registry, with one line on stderr per plugin that did not load: every command that
    lists or resolves names says so (`vsynth plugins` shows it in its table instead)."""
    from vsynth.core.host.registry import get_registry

    registry = get_registry()
    for line in registry.failure_lines():
        click.echo(f"Warning: {_one_line(line)}", err=True)
    return registry


def _one_spec(registry, specs: list, name: str, kind: str | None):
    """The one spec ``name`` (short or qualified) selects among ``specs``, else a one-line error."""
    from vsynth.core.host.registry import unknown_name
    from vsynth.errors import UnknownNameError

    matches = [s for s in specs if name in (s.name, s.qualified_name)]
    if len(matches) > 1:
        choices = " or ".join(f"'{s.qualified_name}' ({s.kind})" for s in matches)
        raise UnknownNameError(f"'{name}' names several models: choose {choices}, or add --kind")
    if not matches:
        raise UnknownNameError(unknown_name(kind or "model or bridge", name, [registry.address(s) for s in specs], registry.failed))
    return matches[0]


def _print_details(console, record: dict) -> None:
    """One spec as lines that wrap whole at any width: its fields, then its weights and its parameters."""
    from rich.markup import escape

    def line(text: str) -> None:
        console.print(text, soft_wrap=True, highlight=False)

    skip = {"name", "qualified_name", "description", "weights", "params", "params_schema", "conflict", "loras"}
    line(f"[bold]{escape(record['qualified_name'])}[/] ({record['kind']}): {escape(record['description'])}")
    for key, value in record.items():
        if key not in skip and value not in (None, "", [], {}):
            line(f"  {key}: {escape(json.dumps(value) if isinstance(value, (dict, list)) else str(value))}")
    if record.get("weights"):
        line("weights:")
    for w in record.get("weights", []):
        stand_ins = "".join(f", {k} {w[k]}" for k in ("tiny", "toy") if w[k])
        only = f" (only with -o {w['only_with'][0]}={w['only_with'][1]})" if w.get("only_with") else ""
        line(f"  {escape(w['role'])}: {escape(w['id'])}, {w['size_gb']:g} GB{escape(stand_ins)}{escape(only)}; replace with {escape(w['override'])}")
    if record.get("loras"):
        line(f"LoRA presets (--{record['kind']}-lora NAME[:SCALE]):")
    for p in record.get("loras", []):
        sets = ", ".join(f"{k} {p[k]}" for k in ("solver", "steps", "guidance") if p[k] is not None)
        line(f"  [bold]{escape(p['name'])}[/]: {escape(p['id'])}/{escape(p['file'])}, {p['size_gb']:g} GB, scale {p['scale']:g}"
             f"{'; sets ' + escape(sets) if sets else ''}: {escape(p['description'])}")  # fmt: skip
    schema = record["params_schema"]
    line("parameters (-o KEY=VALUE):" if record["params"] else "parameters: none")
    for key, summary in record["params"].items():
        allowed = _allowed(_resolve(schema, schema.get("properties", {}).get(key, {})))
        facts = ", ".join(f for f in (summary["type"], f"default {summary['default']}", allowed) if f)
        line(f"  [bold]{escape(key)}[/] ({escape(facts)}): {escape(summary['description'])}")


def _resolve(schema: dict, prop: dict) -> dict:
    """A property with its ``$ref`` and ``anyOf`` branches resolved against ``schema``'s ``$defs``."""
    if "$ref" in prop:
        prop = {**schema.get("$defs", {}).get(prop["$ref"].rsplit("/", 1)[-1], {}), **{k: v for k, v in prop.items() if k != "$ref"}}
    if "anyOf" in prop:
        branches = [_resolve(schema, b) for b in prop["anyOf"] if b.get("type") != "null"]
        prop = {**prop, **(branches[0] if len(branches) == 1 else {})}
    return prop


def _allowed(prop: dict) -> str:
    """The constraints of a JSON-schema property, in words: ``one of a, b``, ``>= 0, <= 1``."""
    if "enum" in prop:
        return "one of " + ", ".join(str(v) for v in prop["enum"])
    if "const" in prop:
        return f"only {prop['const']}"
    bounds = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<", "minLength": "length >=", "maxLength": "length <="}
    pattern = [f"matching {prop['pattern']}"] if "pattern" in prop else []
    return ", ".join([*pattern, *(f"{sign} {prop[key]}" for key, sign in bounds.items() if key in prop)])


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option("-v", "--verbose", is_flag=True, help="Also list what each plugin registered (models and bridges, by kind).")
def plugins(as_json, verbose):
    """List installed plugins and whether they loaded.

    A plugin that did not load is shown with its reason and the command that removes it, also
    under VSYNTH_STRICT_PLUGINS=1: this is the command that diagnoses it.
    """
    from vsynth.core.host.registry import build_registry

    registry = build_registry(strict=False)
    records = [p.as_dict() for p in registry.plugins]
    if verbose:
        specs = [*registry.models.values(), *registry.bridges.values(), *registry.metrics.values(), *registry.worlds.values()]
        for record in records:  # one that did not load registered nothing (the winner of its name did)
            loaded = record["status"] in ("ok", "warning")
            record["registered"] = [{"kind": s.kind, "name": s.name, "address": registry.address(s)} for s in specs if loaded and s.plugin == record["name"]]
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    colors = {"ok": "green", "warning": "yellow", "error": "red", "disabled": "dim"}
    table = Table("name", "distribution", "version", "status", title="vsynth plugins")
    notes = []  # below the table, unwrapped, so that reasons and fixes read (and copy) whole
    for r in records:
        status = f"[{colors[r['status']]}]{r['status']}[/]"
        table.add_row(escape(r["name"]) + (" (built-in)" if r["builtin"] else ""), escape(r["dist"]), escape(r["version"]), status)
        name = escape(r["name"])
        notes += [f"{name}: {status}: {escape(detail)}" for detail in ([r["error"]] if r["error"] else r["warnings"])]
        notes += [f"{name}: {status} by {r['disabled_by']}"] if r["disabled_by"] else []
        notes += [f"  fix: [bold]{escape(r['fix'])}[/]"] if r["fix"] else []
    console = Console()
    console.print(table)
    for note in notes:
        console.print(note, soft_wrap=True)
    for r in [r for r in records if verbose and r["status"] in ("ok", "warning")]:
        kinds = {kind: [e["address"] for e in r["registered"] if e["kind"] == kind] for kind in (*KINDS, "metric", "world")}
        registered = "; ".join(f"{kind} {', '.join(names)}" for kind, names in kinds.items() if names) or "nothing"
        console.print(f"{escape(r['name'])} registered: {escape(registered)}", soft_wrap=True, highlight=False)


# ---------------------------------------------------------------------------- install / uninstall


@cli.command()
@click.argument("packages", nargs=-1)
@click.option("-U", "--upgrade", is_flag=True, help="Upgrade the packages to their newest versions.")
@click.option("-e", "--editable", "editables", multiple=True, metavar="PATH", help="Install a local project in editable mode (repeatable).")
def install(packages, upgrade, editables):
    """Install plugin packages with pip.

    pip runs in the Python that runs vsynth; afterwards the plugins it added are listed.
    """
    if not packages and not editables:
        raise click.UsageError("name at least one package, or -e PATH")
    for path in editables:
        _check_editable(path)
    editable_args = [arg for path in editables for arg in ("-e", path)]
    _pip_and_report(["install", *(["--upgrade"] if upgrade else []), *packages, *editable_args])


@cli.command()
@click.argument("packages", nargs=-1, required=True)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def uninstall(packages, yes):
    """Uninstall packages with pip, e.g. a plugin that fails to load.

    Works whatever state the installed plugins are in; afterwards the plugins it removed are listed.
    vsynth itself is not uninstalled from here (the command would remove itself): use pip.
    """
    if any(_normalized(p) == "vsynth" for p in packages):
        raise VsynthInputError("vsynth uninstall removes plugins, not vsynth itself: run `python -m pip uninstall vsynth`")
    needed = _base_requirements()
    for package in packages:
        if _normalized(package) in needed:
            raise VsynthInputError(f"{package} is one of vsynth's own dependencies, not a plugin: removing it would break vsynth; "
                                   f"if you mean it, run `python -m pip uninstall {package}`")
    if not yes and not sys.stdin.isatty():  # pip's "Proceed (Y/n)?" would meet the end of input: an EOFError traceback
        raise VsynthInputError("vsynth uninstall asks before removing, and there is no terminal to ask on: add -y")
    _check_installed(packages)
    _pip_and_report(["uninstall", *packages, *(["--yes"] if yes else [])])


def _check_editable(path: str) -> None:
    """A local -e PATH is a folder with a Python project in it (pip says so in many lines, and exits 1); VCS URLs pass."""
    import re

    if "://" in path or re.match(r"^(git|hg|svn|bzr)\+", path):
        return
    folder = Path(re.sub(r"\[[^\]]*\]$", "", path)).expanduser()  # ./plugin[extra]
    if not folder.is_dir():
        raise VsynthInputError(f"-e {path}: {'is not a folder' if folder.exists() else 'no such folder'}")
    if not any((folder / name).is_file() for name in ("pyproject.toml", "setup.py", "setup.cfg")):
        raise VsynthInputError(f"-e {path}: not a Python project (no pyproject.toml or setup.py in it)")


def _check_installed(packages) -> None:
    """pip only warns about a package that is not installed, and exits 0; a plugin's own name (the first column of
    `vsynth plugins`) is the usual slip: say which package holds it."""
    from importlib.metadata import PackageNotFoundError, distribution

    from vsynth.core.host import installer

    plugins = None
    for package in packages:
        try:
            distribution(_normalized(package))
            continue
        except PackageNotFoundError:
            pass
        plugins = installer.installed_plugins() if plugins is None else plugins
        owner = next((p.dist for p in sorted(plugins) if _normalized(p.name) == _normalized(package)), None)
        if owner is not None:
            raise VsynthInputError(f"{package} is a plugin's name; its package is {owner}: run `vsynth uninstall {owner}`")
        raise VsynthInputError(f"{package} is not installed (`vsynth plugins` lists the plugins with their packages)")


def _base_requirements() -> set[str]:
    """The distributions vsynth itself needs (its extras' are optional, and may go)."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        return {_normalized(r) for r in requires("vsynth") or [] if "extra ==" not in r}
    except PackageNotFoundError:  # run from a source tree without being installed
        return set()


def _normalized(package: str) -> str:
    """A distribution name as pip compares them (PEP 503), without any version or extras."""
    import re

    name = re.split(r"[\[<>=!~;@ ]", package.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _pip_and_report(args: list[str]) -> None:
    """Run pip without loading any plugin first, so a broken plugin cannot get in the way."""
    from vsynth.core.host import installer

    before = installer.installed_plugins()
    code = installer.run_pip(args)
    if code != 0:
        raise VsynthError(f"pip {args[0]} failed with exit code {code} (its output is above)")
    after = installer.installed_plugins()
    checks = installer.check_plugins(installer.new_plugins(before, after)) if args[0] == "install" else {}
    broken = {plugin: check["problems"] for plugin, check in checks.items() if check["problems"]}
    for line in installer.describe_changes(before, after, set(broken)):
        click.echo(line)
    for line in [*installer.describe_clashes(before, after), *(w for check in checks.values() for w in check["warnings"])]:
        click.echo(f"Warning: {line}", err=True)
    if broken:
        raise VsynthError(" | ".join(
            f"installed {p.dist} {p.version}, but its plugin '{p.name}' does not work: {'; '.join(problems)}; "
            f"remove it with `vsynth uninstall {p.dist}`"
            for p, problems in broken.items()
        ))  # fmt: skip


# ---------------------------------------------------------------------------- new-plugin


@cli.command("new-plugin")
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), required=True, help="What the plugin adds: an image model, a video model or a bridge.")
@click.option("--out", type=click.Path(path_type=Path), help="Folder to write the package into (new or empty)  [default: ./NAME]")
def new_plugin(name, kind, out):
    """Write a starter plugin package: pyproject.toml with the `vsynth` entry point, a spec module
    (no torch), an implementation, a README and tests using vsynth.testing, which pass as written.

    \b
    Then: pip install -e NAME && cd NAME && python -m pytest
    """
    from vsynth.core.host.registry import build_registry
    from vsynth.core.host.starter import write_starter

    builtins = build_registry(entry_points=[], strict=False)
    builtin_names = {k: {s.name for s in (*builtins.models.values(), *builtins.bridges.values()) if s.kind == k} for k in KINDS}
    folder = out if out is not None else Path(name.replace("/", "_"))
    for path in write_starter(name, kind, folder, builtin_names):
        click.echo(str(path))
    click.echo(f"wrote the {kind} plugin '{name}' into {folder}: pip install -e {folder} && cd {folder} && python -m pytest", err=True)


# ---------------------------------------------------------------------------- run

RUN_FIELDS = (
    "idm", "vdm", "bridge", "video", "prompt", "idm_prompt", "negative_prompt", "condition_video", "mask", "outpaint",
    "source_prompt", "frames", "stride", "height",
    "width", "steps", "guidance", "vdm_steps", "vdm_guidance", "idm_scheduler", "vdm_scheduler", "fit", "seed", "idm_weights", "vdm_weights", "tiny", "toy",
    "save_latents", "device", "dtype", "offload", "compile", "memory_check", "trust_pickles", "out",
    "idm_lora", "vdm_lora", "fuse_lora", "quantize", "metrics", "cache", "idm_cache", "vdm_cache",
)  # fmt: skip


@cli.command()
@click.option("--idm", help="Image diffusion model (see `vsynth models --kind idm`); leave out for plain text-to-video.")
@click.option("--vdm", help="Video diffusion model (see `vsynth models --kind vdm`); not needed with --bridge idm-only.")
@click.option("--bridge", help="Bridging strategy  [default: mixed-inversion with --idm, none without]")
@click.option("--video", type=click.Path(), help="Source video: mp4, gif or a folder of frames.")
@click.option("--prompt", help="Prompt of the video model (and of the image model unless --idm-prompt).")
@click.option("--idm-prompt", help="Prompt of the image model (e.g. an editing instruction).")
@click.option("--negative-prompt", help="Negative prompt of both models  [default: empty]")
@click.option("--condition-video", type=click.Path(), help="Precomputed control maps (pose, edges, depth) for ControlNet / T2I-Adapter IDMs.")
@click.option("--mask", type=click.Path(), help="Inpainting mask: a video, or one image for every frame; white = regenerate (or, with one colour everywhere, opaque alpha), resized to the run's size.")
@click.option("--outpaint", metavar="horizontal|vertical|T,R,B,L", help="Outpainting: regenerate the top and bottom quarter, the left and right quarter, or given margin fractions.")
@click.option("--source-prompt", help="What the source video shows (prompt2prompt and --bridge flow-edit edit it into --prompt).")
@click.option("--frames", type=int, help="Frames to generate, at most 257 (or the VDM's frame window)  [default: 8]")
@click.option("--stride", type=int, help="Take every K-th source frame  [default: 4; 1 with --toy]")
@click.option("--height", type=int, help="Height in pixels, at most 2048; rounded down to a multiple the models hold (8 to 32 by model; "
              "at least one), with a notice  [default: 512 with --idm, else the VDM's native size]")
@click.option("--width", type=int, help="Width in pixels, at most 2048; rounded as --height. Either given alone, the other keeps the "
              "default size's aspect  [default: as --height]")
@click.option("--steps", type=int, help="Denoising and inversion steps of both models, unless the VDM fixes its own; at most the models' train steps (1000; 999 on SD's DDIM)  [default: 50]")
@click.option("--guidance", type=float, help="Classifier-free guidance of both models, unless the VDM fixes its own; above 0, at most 50  [default: 7.5]")
@click.option("--vdm-steps", type=int, help="Steps of the VDM alone (animatediff-lightning: its checkpoint's).")
@click.option("--vdm-guidance", type=float, help="Guidance of the VDM alone (animatediff-lightning: 1.0).")
@click.option("--idm-scheduler", metavar="SOLVER", help="Solver of the image model: ddim, euler, euler-a, dpm++, unipc, lcm or heun, those that fit its noise process (`vsynth models NAME` lists them)  [default: the model's own]")
@click.option("--vdm-scheduler", metavar="SOLVER", help="Solver of the video model, as --idm-scheduler  [default: the model's own]")
@click.option("--fit", type=click.Choice(["round", "strict"]), help="Frames and sizes the models' latent spaces cannot hold (multiples of 8 pixels; 1 + 4k frames for 4x-compressing video VAEs): round down with a notice, or refuse  [default: round]")
@click.option("--seed", type=int, help="Random seed, 0 to 2**64-1 (no random seeds: every run is reproducible from run.json)  [default: 42]")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="A model or bridge parameter, e.g. -o mixing_ratio=0.5 or -o idm.batch_size=4 (see `vsynth models --json`).")  # fmt: skip
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="YAML or TOML file of run settings; flags override it.")
@click.option("--idm-weights", metavar="PATH_OR_ID", help="Replace the IDM's main weights (a local diffusers folder or hub id).")
@click.option("--vdm-weights", metavar="PATH_OR_ID", help="Replace the VDM's weights (a local diffusers folder or hub id).")
@click.option("--tiny", is_flag=True, default=None, help="Use the built-in offline tiny models (random weights; for trying and testing).")
@click.option("--toy", is_flag=True, default=None, help="Use the shipped toy-world models (trained, 64x64, a small vocabulary: see `vsynth models`).")
@click.option("--save-latents", is_flag=True, default=None, help="Also write latents.safetensors, the final latent video.")
@click.option("--device", help="auto, cpu, cuda, cuda:N or mps, when this machine has it  [default: auto]")
@click.option("--dtype", type=click.Choice(["auto", "float16", "bfloat16", "float32"]),
              help="Precision of weights and activations; auto: float16 on a GPU, float32 on the CPU  [default: auto]")  # fmt: skip
@click.option("--offload", type=click.Choice(["none", "model", "sequential", "group"]),
              help="Keep weights in host memory and move them to the GPU as they run: each network whole (model), "
              "layer by layer (sequential: least memory, slowest), or block by block with the next prefetched on a "
              "CUDA stream (group)  [default: none]")  # fmt: skip
@click.option("--compile", is_flag=True, default=None,
              help="torch.compile the denoising networks: a transformer's repeated blocks once (regional), a UNet whole "
              "(a slow first step, faster steps after).")  # fmt: skip
@click.option("--idm-lora", multiple=True, metavar="PATH_OR_ID[:SCALE]",
              help="A LoRA of the image model, repeatable: a .safetensors file, a folder, a hub id (org/repo[/file]) or "
              "a preset of the model (`vsynth models NAME` lists them; few-step ones set solver, steps, guidance).")  # fmt: skip
@click.option("--vdm-lora", multiple=True, metavar="PATH_OR_ID[:SCALE]", help="A LoRA of the video model, as --idm-lora.")
@click.option("--fuse-lora", is_flag=True, default=None, help="Fuse the LoRAs into the weights (no cost per step) instead of keeping them as adapters.")
@click.option("--quantize", type=click.Choice(["none", "int8", "fp8", "nf4"]),
              help="Quantize the denoising networks' weights: int8 or fp8 weight-only (torchao), nf4 (bitsandbytes, "
              "CUDA only); pip install 'vsynth[quantize]' (nf4: 'vsynth[nf4]')  [default: none]")  # fmt: skip
@click.option("--cache", metavar="NAME", help="Step cache of every model it applies to: first-block, taylorseer, magcache, pab or fastercache "
              "(transformers), deepcache or tome (UNets); params with -o cache.KEY=VALUE (docs/caching.md)  [default: none]")
@click.option("--idm-cache", metavar="NAME", help="Step cache of the image model alone (none: off), as --cache.")
@click.option("--vdm-cache", metavar="NAME", help="Step cache of the video model alone (none: off), as --cache.")
@click.option("--memory-check/--no-memory-check", default=None,
              help="Refuse a run whose estimated peak memory exceeds the device's free memory  [default: check]")  # fmt: skip
@click.option("--trust-pickles", is_flag=True, default=None,
              help="Load weights stored as pickles (.bin, .pt, .pth, .ckpt: they can run code when loaded) from the folders, "
              "files and -o detector= you name; without it they are refused (config key trust_pickles).")  # fmt: skip
@click.option("--out", help="Write the run's files into DIR (new or empty)  [default: a new folder under outputs/]")
@click.option("--metrics", metavar="NAMES", help="Metrics measured into run.json, comma-separated; 'default', 'all' (see `vsynth models --kind metric`)  [default: the cheap default set]")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or summary; print only the output folder.")
@click.pass_context
def run(ctx, config_file, options, quiet, **flags):
    """Synthesize a video with an IDM, a VDM and a bridge, with a VDM alone from the prompt, or with an
    IDM alone frame by frame (--bridge idm-only).

    Writes video.mp4, video.gif, idm_frames.mp4 (when the bridge decodes the IDM's frames), condition.mp4
    (control maps, or the masked source of inpainting), grid.png and run.json into one folder, which
    appears whole or not at all.
    """
    from vsynth.core.run.config import load_config_file, make_config, parse_option

    _registry()
    values = load_config_file(config_file) if config_file else {}
    for name in RUN_FIELDS:
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE and flags[name] is not None:
            values[name] = flags[name]
    values["options"] = {**values.get("options", {}), **dict(parse_option(o) for o in options)}
    config = make_config(values)

    from vsynth.core.run.pipeline import execute, plan_run

    _quiet_libraries()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VsynthWarning)
        plan = plan_run(config)
    for warning in caught:
        if issubclass(warning.category, VsynthWarning):
            click.echo(f"Warning: {_one_line(str(warning.message))}", err=True)
    with _WarningLines().shown() as lines:  # a model's warning while it runs: one line too, above the live bars
        if quiet:
            report = execute(plan)
            click.echo(str(report.out_dir))
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(stderr=True)
        columns = (TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            lines.console = console
            report = execute(plan, display=progress)
    _print_summary(console, report)


def _quiet_libraries() -> None:
    """diffusers' and transformers' info and deprecation chatter would bury the progress bars.

    Set through their environment variables, which they read when first imported, so that this
    costs no import before the input checks.
    """
    import os
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning)
    from vsynth.core.diffusion.quantize import quiet_backends

    quiet_backends()


def _print_summary(console, report) -> None:
    from rich.table import Table

    record = report.record
    names = [record["models"][role]["name"] for role in ("idm", "vdm") if role in record["models"]]
    table = Table("stage", "seconds", title=" + ".join([names[0], record["bridge"]["name"], *names[1:]]))
    for stage, seconds in record["timings"].items():
        table.add_row(stage, f"{seconds:.2f}")
    table.add_row("[bold]total", f"[bold]{sum(record['timings'].values()):.2f}")
    console.print(table)
    evals = ", ".join(f"{role} {record['nfe'][role]} calls / {record['frame_evals'][role]} frame evals" for role in record["nfe"])
    console.print(f"network evaluations: {evals}")
    for role, cache in record.get("caches", {}).items():
        console.print(f"{role} step cache {cache['name']}: {cache['cached_forwards']} of {cache['forwards']} forwards reused features")
    console.print(f"peak memory: {record['peak_memory_mb']:.0f} MiB ({record['peak_memory_source']})")
    plan = record["memory"]
    free = f"{plan['free_mb']:.0f} MiB free" if plan["free_mb"] is not None else "free memory not measured"
    console.print(
        f"memory planner: estimated peak {plan['estimated_peak_mb']:.0f} MiB on {record['device']} (weights "
        f"{plan['weights_mb']:.0f}, activations {plan['activations_mb']:.0f}; --offload {record['offload']}, {record['dtype']}); {free}"
    )
    from rich.markup import escape

    console.print(f"wrote [bold]{escape(str(report.out_dir))}[/]: {', '.join(record['files'])}")  # a name may hold [/]


# ---------------------------------------------------------------------------- tiny models


@cli.group()
def tiny():
    """The built-in offline tiny models (random weights, same architectures)."""


@tiny.command("export")
@click.argument("directory", type=HomePath(path_type=Path))
def tiny_export(directory):
    """Write every tiny model as a diffusers-format folder under DIRECTORY (about 50 MB).

    \b
    One folder per model (DIRECTORY/sd15, DIRECTORY/controlnet-canny, DIRECTORY/zeroscope, ...), the
    same weights --tiny loads. Pass them as local weights to try a real run's loading path offline:
      vsynth run --idm controlnet-canny --idm-weights DIRECTORY/controlnet-canny -o base=DIRECTORY/sd15 \\
        --vdm zeroscope --vdm-weights DIRECTORY/zeroscope --video examples/shapes.mp4 --prompt "a ball"
    """
    from vsynth.core.run.validate import check_creatable
    from vsynth.tiny import TINY_MODELS, export_all

    check_creatable(directory / next(iter(TINY_MODELS)), f"cannot export into {directory}", "choose a writable DIRECTORY")

    _quiet_libraries()
    from vsynth.core.run.progress import library_progress_bars

    with library_progress_bars(False):  # the libraries' shard-writing bars, for files of a few MB
        exported = export_all(directory)
    for name, path in exported.items():
        click.echo(f"{name}\t{path}")


# ---------------------------------------------------------------------------- toy world


@cli.group()
def toy():
    """The toy world: procedural clips with ground truth, and small models trained on them (`vsynth run --toy`)."""


@toy.command("examples")
@click.argument("directory", type=HomePath(path_type=Path))
@click.option("--count", type=click.IntRange(1, 100), default=4, show_default=True, help="How many clips.")
@click.option(
    "--frames",
    type=click.IntRange(2, 256),
    help=f"Frames per clip.  [default: 16; {MOTION_FRAMES} with --motion, where a shape crosses the frame at the default speed]",
)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Seed of the first clip.")
@click.option("--motion", is_flag=True, help="Clips of one shape moving left, right, up, down or growing, as their captions say.")
@click.option("--background", metavar="NAME", help="Every clip's background: white, black, gray or gradient.  [default: any]")
@click.option("--moving", metavar="MOTION", help="--motion: what the shape does: left, right, up, down or growing.  [default: any]")
@click.option("--speed", metavar="WORD", help="--motion: slowly (2 px a frame) or quickly (6), as the caption says.  [default: 4, unsaid]")
@click.option("--shape", metavar="NAME", help="--motion: circle, square or triangle.  [default: any]")
@click.option("--colour", metavar="NAME", help="--motion: red, green, blue, yellow, purple or cyan.  [default: any]")
def toy_examples(directory, count, frames, seed, motion, **fixed):
    """Write toy clips (NAME.mp4, with their ground truth in NAME.json) into DIRECTORY.

    A run on such a clip measures itself against the ground truth in run.json's metrics. The clips differ by
    seed; --background (and with --motion, --moving, --speed, --shape, --colour) fix what their captions say:

      vsynth toy examples toys/ --motion --moving left --speed quickly --background black
    """
    from vsynth.core.run.validate import check_creatable
    from vsynth.toy import world
    from vsynth.toy.truth import save_clip

    fixed = _toy_words({k: v for k, v in fixed.items() if v is not None}, motion)
    check_creatable(directory / "clip", f"cannot write into {directory}", "choose a writable DIRECTORY")
    frames = frames or (MOTION_FRAMES if motion else 16)
    speed = world.SPEED_WORDS.get(fixed.get("speed"), world.DEFAULT_SPEED)
    if motion and fixed.get("motion") != "growing" and speed * (frames - 1) > 64:  # the path is centred on the frame
        raise click.BadParameter(f"{frames}: a shape moving {speed:g} pixels a frame leaves the 64-pixel frame after "
                                 f"{int(64 // speed) + 1} frames, and the rest would show no shape; lower --frames, or --speed slowly",
                                 param_hint="'--frames'")  # fmt: skip
    taken = [p.name for i in range(count) for p in (Path(directory) / f"toy{seed + i}.mp4", Path(directory) / f"toy{seed + i}.json") if p.exists()]
    if taken:
        raise click.UsageError(f"{directory} already holds {', '.join(taken[:3])}{' ...' * (len(taken) > 3)}: toy examples never "
                               "replaces a file; choose another DIRECTORY or --seed")  # fmt: skip
    for i in range(count):
        path = Path(directory) / f"toy{seed + i}.mp4"
        if motion:
            clip = save_clip(path, seed + i, generator="make_motion_clip", frames=frames, **fixed)
        else:
            clip = save_clip(path, seed + i, frames=frames, n_shapes=1 + i % 3, **fixed)
        click.echo(f"{path}\t{clip.caption}")


def _toy_words(fixed: dict, motion: bool) -> dict:
    """toy examples' fixed words, checked against the toy vocabulary, as the clip makers' keyword arguments."""
    from vsynth.toy import world

    words = {"background": world.BACKGROUNDS, "moving": world.MOTIONS, "speed": tuple(world.SPEED_WORDS), "shape": world.SHAPES,
             "colour": world.COLOURS}  # fmt: skip
    for name, value in fixed.items():
        if name != "background" and not motion:
            raise click.UsageError(f"--{name} is for --motion clips (one shape); still clips take --background only")
        if value not in words[name]:
            raise click.BadParameter(f"{value!r} is not one of {', '.join(words[name])}", param_hint=f"'--{name}'")
    if "moving" in fixed:
        fixed["motion"] = fixed.pop("moving")
    return fixed


@toy.command("train", context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def toy_train(args):
    """Retrain the toy models from their seeds (about two hours on 2 CPU cores): python -m vsynth.toy.train ARGS.

    `vsynth toy train --help` lists its options (--smoke, --stage, --out, ...); with --wan it trains the moving
    world's Wan toy (vsynth.toy.train_wan), with --flux the FLUX toys flux-dev and flux-canny (vsynth.toy.train_flux).
    """
    from vsynth.toy.train import main as train

    train(list(args))


# ---------------------------------------------------------------------------- batch


@cli.command()
@click.argument("jobs_file", metavar="JOBS", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Batch folder: one folder per job, and the summary  [default: outputs/<JOBS name>]")
@click.option("--ray", "ray_address", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
              help="Run on Ray (pip install 'vsynth[ray]'): a cluster's ADDRESS, or alone for a local Ray.")  # fmt: skip
@click.option("--rerun-changed", is_flag=True, help="Run again the complete jobs whose settings changed since, replacing their folders.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar; print only the summary table.")
def batch(jobs_file, out, ray_address, rerun_changed, quiet):
    """Run a YAML, JSONL or CSV file of jobs, here or on Ray.

    \b
    Each job is a run config, as --config takes; `defaults` at the top apply to all.
    Writes OUT/<job name>/ per job and OUT/summary.{json,csv,md}: each job's status, seconds,
    frame evaluations and metrics. Jobs with the same models share one load. A rerun skips jobs
    whose folder is complete, and refuses those whose settings changed since (--rerun-changed
    runs them again); a failed job is recorded and the others go on.
    Exit code: 0 all jobs ok, 1 some failed, 2 a bad jobs file or changed jobs.
    """
    from vsynth.batch.runner import prepare_batch

    out = out if out is not None else Path("outputs") / jobs_file.stem
    _quiet_libraries()
    _registry()
    with _WarningLines().shown() as lines:
        return _run_batch(prepare_batch(jobs_file, out, rerun_changed=rerun_changed), ray_address, quiet, lines)


def _run_batch(prepared, ray_address, quiet, lines: _WarningLines) -> int:
    from vsynth.batch.summary import markdown_table

    reused = sum(r.status == "skipped" for r in prepared.results.values())
    if reused:
        click.echo(f"{reused} of {len(prepared.results)} jobs are complete in {prepared.out_root} from an earlier run: "
                   "reusing their outputs (remove a job's folder to run it again)", err=True)  # fmt: skip
    if prepared.replaced:
        click.echo(f"running {len(prepared.replaced)} of {len(prepared.results)} jobs in {prepared.out_root} again: their settings "
                   "changed since their run (--rerun-changed), and their folders are replaced", err=True)  # fmt: skip
    run_kwargs = {"ray": ray_address is not None, "ray_address": ray_address or None}
    try:
        if quiet:
            results = prepared.run(**run_kwargs)
        else:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            columns = (TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=Console(stderr=True)) as progress:
                lines.console = progress.console
                bar = progress.add_task("jobs", total=prepared.todo)
                results = prepared.run(**run_kwargs, on_result=lambda r: progress.update(bar, advance=1, description=f"{r.name}: {r.status}"))
    except KeyboardInterrupt:
        done = sum(r.status in ("ok", "skipped") for r in prepared.results.values())
        click.echo(f"interrupted: {done} of {len(prepared.results)} jobs are complete; run the same command to resume", err=True)
        sys.exit(130)
    click.echo(markdown_table(results), nl=False)
    click.echo(f"summary: {prepared.out_root / 'summary.md'} (and .csv, .json)", err=True)
    return 1 if any(r.status == "failed" for r in results) else 0


# ---------------------------------------------------------------------------- eval


@cli.command("eval")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--metrics", metavar="NAMES", help="Metrics, comma-separated; 'default' (run.json's cheap set) or 'all' (see `vsynth models --kind metric`)  [default: all]")
@click.option("--prompt", help="Prompt of plain videos (a run folder's is its run.json's).")
@click.option("--source", type=click.Path(path_type=Path), help="Source video of plain videos (a run folder's is the one it read).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per PATH) instead of a table.")
@click.option("--csv", "csv_file", type=click.Path(path_type=Path), help="Also write one row per path, video and metric to this CSV file.")
@click.option("--compare", is_flag=True, help="Also draw the PATHS' per-frame curves and a strip of their frames side by side into one PNG (--png).")
@click.option("--png", type=click.Path(path_type=Path), default=Path("compare.png"), show_default=True, help="Where --compare writes.")
@click.option("--suite", type=click.Path(path_type=Path), help="Run a prompt suite (YAML) through `vsynth batch` and aggregate its metrics per configuration; 'default' is the shipped one.")
@click.option("--out", type=click.Path(path_type=Path), help="--suite: the batch folder  [default: outputs/suite-<SUITE name>]")
@click.option("--tiny", is_flag=True, help="The metrics' offline tiny random-weight networks (and, with --suite, the tiny models).")
@click.option("--rerun-changed", is_flag=True, help="--suite: run again the jobs complete in --out whose settings changed since (e.g. other --metrics), replacing their folders.")
@click.option("--metric-weights", "metric_weights", multiple=True, metavar="ROLE=PATH_OR_ID", help="Replace a metric network's weights (clip=..., raft=...; METRIC.ROLE for one metric); repeatable.")
@click.option("--device", default="cpu", show_default=True, help="Where the metric networks run: cpu, cuda, cuda:N or mps.")
def eval_(paths, metrics, prompt, source, as_json, csv_file, compare, png, suite, out, tiny, rerun_changed, metric_weights, device):
    """Measure run folders or videos with the registered metrics: text alignment (CLIP), frame consistency
    (CLIP), flow warping error (RAFT), flicker, control adherence, and any a plugin adds.

    \b
    A run folder brings its prompt, source, condition maps and detector; a plain video takes --prompt and
    --source. Each metric measures what its inputs allow; the others are listed as skipped, with why.
    A metric that fails (a plugin's) is one warning line and the others are measured; the exit code is then 1.
    \b
      vsynth eval outputs/run-1 --json
      vsynth eval --compare outputs/bridge-a outputs/bridge-b --png ab.png
      vsynth eval --suite default --tiny --metrics default,text_alignment
    """
    from vsynth.core.run import measure
    from vsynth.core.run.config import parse_option

    _quiet_libraries()
    registry = _registry()
    names = measure.parse_names(metrics)
    specs = measure.choose(registry, names if names is not None else ["all"])
    weights = {key: str(value) for key, value in (parse_option(o) for o in metric_weights)}
    if suite is None and rerun_changed:
        raise VsynthInputError("--rerun-changed reruns a --suite's jobs: give it with --suite")
    if suite is not None:
        if paths or compare:
            raise VsynthInputError("--suite runs its own jobs: give no PATHS and no --compare with it")
        from vsynth.suite import run_suite

        with _WarningLines().shown():
            record = run_suite(suite, out, metrics=names, tiny=tiny, rerun_changed=rerun_changed)
        for job, error in record["failed"].items():
            click.echo(f"failed: {job}: {_one_line(error or '')}", err=True)
        click.echo(json.dumps(record, indent=2) if as_json else record["markdown"], nl=as_json)
        click.echo(f"suite: {record['out']}/suite.md (and .json; each job's run folder beside them)", err=True)
        return 1 if record["failed"] else 0
    if not paths:
        raise VsynthInputError("give run folders or videos to measure (or --suite FILE)")
    if compare and len(paths) < 2:
        raise VsynthInputError("--compare needs at least two PATHS")
    if not compare and click.get_current_context().get_parameter_source("png") is click.core.ParameterSource.COMMANDLINE:
        raise VsynthInputError("--png is where --compare draws: add --compare (or drop --png)")
    from vsynth.core.run.validate import check_device
    from vsynth.evaluation import compare_png, csv_rows, evaluate, load_target

    from vsynth.core.run.progress import library_progress_bars

    check_device(device)
    if csv_file is not None:
        _check_output_file(csv_file, "--csv", ())
    if compare:
        from PIL import Image

        _check_output_file(png, "--png", tuple(ext for ext, kind in Image.registered_extensions().items() if kind in Image.SAVE))
    sample = measure.Sample(device=device, tiny=tiny, weights=weights)
    targets = [load_target(registry, Path(p), prompt=prompt, source=source, sample=sample) for p in paths]
    with library_progress_bars(False):
        evaluations = evaluate(registry, targets, specs, named=names is not None)
    records = [e.record() for e in evaluations]
    if csv_file is not None:
        import csv

        csv_file.parent.mkdir(parents=True, exist_ok=True)
        with open(csv_file, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["path", "video", "metric", "value"])
            writer.writeheader()
            writer.writerows(csv_rows(evaluations))
    if compare:
        labels = [Path(p).name or str(p) for p in paths]
        click.echo(f"wrote {compare_png(evaluations, targets, png, labels)}", err=True)
    for r in records:  # a metric that raised (a plugin's): the others are measured and shown, and the exit code says so
        for metric, error in r["failed"].items():
            click.echo(f"Warning: {metric} failed on {r['path']}: {_one_line(error)}", err=True)
    if as_json:
        click.echo(json.dumps(records, indent=2))
    else:
        _print_eval_table(records, specs)
    return 1 if any(r["failed"] for r in records) else 0


def _check_output_file(path: Path, flag: str, suffixes: tuple[str, ...]) -> None:
    """A file eval writes after measuring: its name, type (``suffixes``, if any) and folder checked before the measuring starts."""
    from vsynth.core.run.validate import check_creatable

    if path.is_dir():
        raise VsynthInputError(f"{flag} {path} is a folder: name a file in it")
    if suffixes and path.suffix.lower() not in suffixes:
        common = [s for s in (".png", ".jpg", ".webp") if s in suffixes]
        shown = ", ".join(common) + (" or another image format" if len(suffixes) > len(common) else "")
        raise VsynthInputError(f"{flag} {path}: name a file ending in {shown}")
    if path.exists():  # a file to overwrite, or /dev/stdout
        if not os.access(path, os.W_OK):
            raise VsynthInputError(f"{flag} {path}: not writable; choose another {flag}")
        return
    check_creatable(path, f"{flag} {path}", f"choose another {flag}")


def _print_eval_table(records: list[dict], specs) -> None:
    """One row per metric (↑ higher is better, ↓ lower), one column per path: the final video's values."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:  # a pipe: keep every digit
        console = Console(width=UNBOUNDED)
    table = Table(title="vsynth eval: the final videos")
    table.add_column("metric", no_wrap=True)
    for r in records:
        table.add_column(escape(r["path"]), justify="right", no_wrap=True)
    for spec in specs:
        if any(spec.name in r["metrics"] for r in records):
            arrow = {True: " ↑", False: " ↓"}.get(spec.higher_is_better, "")
            table.add_row(spec.name + arrow, *(f"{r['metrics'][spec.name]['final']:.4g}" if "final" in r["metrics"].get(spec.name, {}) else "-" for r in records))
    console.print(table)
    for r in records:
        lines = [f"{m}: not measured ({why})" for m, why in r["skipped"].items()]
        lines += [f"{m}: {n}" if isinstance(n, str) else "; ".join(n) for m, n in r["notes"].items()]
        if lines:
            console.print(escape(f"{r['path']}: " + "; ".join(lines)), soft_wrap=True)


# ---------------------------------------------------------------------------- web UI


@cli.command()
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True, help="Port on 127.0.0.1.")
@click.option("--tiny", is_flag=True, help="Start with the offline tiny models ticked and small quick settings.")
@click.option("--out", type=HomePath(path_type=Path), default=Path("outputs/ui"), show_default=True, help="Folder of the runs' output folders.")
def ui(port, tiny, out):
    """Start the web app on http://127.0.0.1:PORT (pip install 'vsynth[ui]').

    Pick the models, bridge, inputs and options in a form; see each stage's progress, then the
    video, the grid and run.json. Only this machine can reach it.
    """
    import socket

    from vsynth.core.run.validate import check_creatable
    from vsynth.ui.app import import_gradio, launch

    import_gradio()  # a missing extra is one line before anything else starts
    check_creatable(out / "run", f"--out {out}", "choose another --out")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:  # before the banner: Gradio's own failure is a traceback
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise VsynthInputError(f"--port {port}: {exc.strerror or exc} (another server holds it?); choose another --port") from None
    _quiet_libraries()
    _registry()
    click.echo(f"vsynth ui: http://127.0.0.1:{port} (Ctrl-C stops it)", err=True)
    try:
        launch(out, tiny=tiny, port=port)
    except Terminated as stop:
        # Not the run command's "removed the unfinished output": the page's runs live in Gradio's
        # threads, and an idle server has none. One cut short is swept like a killed run's.
        click.echo("vsynth ui: stopped", err=True)
        sys.exit(128 + getattr(stop, "signum", signal.SIGTERM))


def main() -> None:
    cli(prog_name="vsynth")
