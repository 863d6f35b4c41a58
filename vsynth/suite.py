"""Prompt suites: configurations (models, bridge, options) times prompts (and sources), run through the batch
machinery, their metrics aggregated per configuration (``vsynth eval --suite FILE``).

A suite is YAML: ``defaults`` (run settings for every job), ``metrics`` (what each run measures, as
``--metrics``), ``configurations`` (each a name, a ``task`` and run settings) and ``prompts`` (each a
name, a ``task`` and run settings: prompt, video, mask...). Every prompt runs with every
configuration of its task, as the job ``CONFIGURATION.PROMPT``; paths are read relative to the suite
file. The batch folder keeps each job's run folder, so a rerun skips what is complete.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Sequence

import yaml

from vsynth.errors import VsynthInputError

PATH_FIELDS = ("video", "condition_video", "mask")
TINY = {"tiny": True, "height": 64, "width": 64, "frames": 4, "steps": 4}  # --tiny: a smoke run of the suite, offline


def suite_path(name: str | Path) -> Path:
    """``default`` is the shipped suite; anything else a file."""
    if str(name) == "default":
        return Path(str(resources.files("vsynth.suites") / "default.yaml"))
    path = Path(name).expanduser()
    if not path.is_file():
        raise VsynthInputError(f"suite file not found: {path} (or give 'default' for the shipped suite)")
    return path


def read_suite(path: Path) -> dict:
    from vsynth.core.run.config import load_yaml

    try:
        suite = load_yaml(path.read_text(encoding="utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise VsynthInputError(f"cannot parse suite {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(suite, dict) or not suite.get("configurations") or not suite.get("prompts"):
        raise VsynthInputError(f"suite {path} needs configurations and prompts (lists of run settings with a name and a task)")
    for key in ("configurations", "prompts"):
        for entry in suite[key]:
            if not isinstance(entry, dict) or "name" not in entry or "task" not in entry:
                raise VsynthInputError(f"suite {path}: every entry of {key} needs a name and a task, got {entry!r}")
    return suite


def jobs_of(suite: dict, folder: Path, *, metrics: Sequence[str] | None = None, tiny: bool = False) -> dict:
    """The batch jobs file (as a mapping) of ``suite``: each prompt with each configuration of its task."""
    defaults = {**(suite.get("defaults") or {}), **(TINY if tiny else {})}
    chosen = list(metrics) if metrics is not None else suite.get("metrics")
    if chosen is not None:
        defaults["metrics"] = chosen
    jobs = []
    for config in suite["configurations"]:
        for prompt in suite["prompts"]:
            if prompt["task"] != config["task"]:
                continue
            settings = {k: v for k, v in prompt.items() if k not in ("name", "task")}
            for field in PATH_FIELDS:
                if isinstance(settings.get(field), str):
                    settings[field] = str((folder / settings[field]).resolve())
            settings.update({k: v for k, v in config.items() if k not in ("name", "task")})
            jobs.append({"name": f"{config['name']}.{prompt['name']}", **settings})
    if not jobs:
        raise VsynthInputError("the suite pairs no prompt with a configuration: give them the same task")
    return {"defaults": defaults, "jobs": jobs}


def aggregate(suite: dict, results) -> dict:
    """``{configuration: {"task", "ok", "jobs", "metrics": {metric: mean of the final videos' values}}}``."""
    table = {}
    for config in suite["configurations"]:
        mine = [r for r in results if r.name.split(".", 1)[0] == config["name"]]
        done = [r for r in mine if r.status in ("ok", "skipped")]
        metrics: dict[str, list[float]] = {}
        for r in done:
            for metric, values in r.metrics.items():
                if "final" in values:
                    metrics.setdefault(metric, []).append(values["final"])
        table[config["name"]] = {
            "task": config["task"],
            "ok": len(done),
            "jobs": len(mine),
            "metrics": {m: round(sum(v) / len(v), 4) for m, v in metrics.items()},
        }
    return table


def markdown(table: dict) -> str:
    """Rows: metrics; columns: configurations (with their task and jobs done)."""
    names = list(table)
    metrics = list(dict.fromkeys(m for row in table.values() for m in row["metrics"]))
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines.append("| task | " + " | ".join(table[n]["task"] for n in names) + " |")
    lines.append("| jobs ok | " + " | ".join(f"{table[n]['ok']}/{table[n]['jobs']}" for n in names) + " |")
    for metric in metrics:
        cells = [f"{table[n]['metrics'][metric]:.4g}" if metric in table[n]["metrics"] else "-" for n in names]
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_suite(name: str | Path, out: Path | None, *, metrics: Sequence[str] | None = None, tiny: bool = False, on_result=None,
              rerun_changed: bool = False) -> dict:
    """Run the suite through the batch machinery into ``out`` and aggregate; writes ``out/suite.{json,md}``.
    A job complete in ``out`` is reused; one whose settings changed since (other --metrics, an edited suite) is
    refused, or with ``rerun_changed`` run again (:func:`vsynth.batch.runner.prepare_batch`)."""
    from vsynth.batch.runner import prepare_batch

    path = suite_path(name)
    suite = read_suite(path)
    out = Path(out if out is not None else Path("outputs") / f"suite-{path.stem}").expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    jobs_file = out / "suite-jobs.yaml"
    jobs_file.write_text(yaml.safe_dump(jobs_of(suite, path.parent, metrics=metrics, tiny=tiny), sort_keys=False))
    results = prepare_batch(jobs_file, out, rerun_changed=rerun_changed).run(on_result=on_result)
    table = aggregate(suite, results)
    failed = {r.name: r.error for r in results if r.status == "failed"}
    record = {"suite": str(path), "out": str(out), "configurations": table, "failed": failed, "markdown": markdown(table)}
    (out / "suite.json").write_text(json.dumps({k: v for k, v in record.items() if k != "markdown"}, indent=2) + "\n")
    (out / "suite.md").write_text(record["markdown"])
    return record
