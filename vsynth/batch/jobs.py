"""Jobs files: many runs, each a run config as ``vsynth run --config`` takes, with shared defaults.

YAML::

    defaults: {vdm: zeroscope, tiny: true}
    jobs:
      - {name: corgi, prompt: a corgi running}
      - {prompt: a cat, options: {mixing_ratio: 0.5}}

JSONL: one job object a line; a first line ``{"defaults": {...}}`` holds the defaults.
CSV: ``#`` lines above the header hold the defaults as YAML; columns are run settings, ``name``,
and ``options.KEY``; an empty cell leaves a setting unset.

A file that cannot be read as jobs raises :class:`~vsynth.errors.JobsFileError`; a job whose
settings are wrong is kept, with its error, so that the others still run.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from vsynth.core.run.config import DOCUMENT_ERRORS, RunConfig, document_error, load_yaml, make_config
from vsynth.errors import JobsFileError, VsynthInputError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
PATH_FIELDS = ("video", "condition_video", "mask")
COMPLETE_MARKER = "run.json"  # written last into a folder that appears whole: its presence means done


@dataclass
class Job:
    name: str
    out_dir: Path
    config: RunConfig | None  # None when the job's settings are invalid
    error: str | None = None

    @property
    def complete(self) -> bool:
        """A finished earlier run: output folders appear whole, so run.json means every file is there."""
        return (self.out_dir / COMPLETE_MARKER).is_file()


def read_jobs(path: str | Path, out_root: str | Path) -> list[Job]:
    """The jobs of ``path``, each writing to ``out_root/NAME``; relative input paths are resolved against
    the current directory (as ``--config`` does) so that jobs run the same anywhere, Ray workers included."""
    from vsynth.core.run.validate import check_name_lengths

    path = Path(path).expanduser()
    try:
        check_name_lengths(path)
    except ValueError as exc:
        raise JobsFileError(f"jobs file {path}: {exc}") from None
    if not path.is_file():
        raise JobsFileError(f"jobs file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
        defaults, entries = _PARSERS.get(path.suffix.lower(), _parse_yaml)(text)
    except DOCUMENT_ERRORS as exc:
        raise JobsFileError(f"cannot parse jobs file {path}: {document_error(exc)}") from None
    except JobsFileError as exc:
        raise JobsFileError(f"jobs file {path}: {exc}") from None
    if not isinstance(defaults, dict):
        raise JobsFileError(f"jobs file {path}: defaults must be a mapping of run settings")
    if not isinstance(defaults.get("options") or {}, dict):
        raise JobsFileError(f"jobs file {path}: defaults: options must be a mapping of key: value (got {defaults['options']!r})")
    if not entries:
        raise JobsFileError(f"jobs file {path} holds no jobs")
    jobs, seen = [], set()
    for index, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise JobsFileError(f"jobs file {path}: job {index} must be a mapping of run settings, got {entry!r}")
        values = _merge(defaults, entry)
        name = str(values.pop("name", f"job-{index:03d}"))
        if not NAME.fullmatch(name):
            raise JobsFileError(f"jobs file {path}: job name {name!r} must be letters, digits, '.', '_' or '-'")
        if name in seen:
            raise JobsFileError(f"jobs file {path}: two jobs are named {name!r}")
        if "out" in values:
            raise JobsFileError(f"jobs file {path}: job {name!r} sets out; each job writes to the batch folder's {name}/")
        seen.add(name)
        jobs.append(_job(name, values, Path(out_root).expanduser().resolve() / name))
    return jobs


def _job(name: str, values: dict[str, Any], out_dir: Path) -> Job:
    for field in PATH_FIELDS:
        if isinstance(values.get(field), str) and values[field]:  # anything else is RunConfig's to refuse
            values[field] = Path(values[field]).expanduser().resolve()
    try:
        if not isinstance(values.get("options") or {}, dict):
            raise VsynthInputError(f"options must be a mapping of key: value (got {values['options']!r})")
        return Job(name, out_dir, make_config({**values, "out": out_dir}))
    except VsynthInputError as exc:
        return Job(name, out_dir, None, str(exc))


def _merge(defaults: dict, entry: dict) -> dict:
    """A job's settings over the defaults; ``options`` are merged key by key (when both are mappings:
    otherwise the job's own value stays, for :func:`_job` to refuse)."""
    normalise = lambda d: {str(k).replace("-", "_"): v for k, v in d.items()}  # noqa: E731
    defaults, entry = normalise(defaults), normalise(entry)
    if not isinstance(entry.get("options") or {}, dict):
        return {**defaults, **entry}
    options = {**(defaults.get("options") or {}), **(entry.get("options") or {})}
    return {**defaults, **entry, **({"options": options} if options else {})}


def _parse_yaml(text: str) -> tuple[dict, list]:
    data = load_yaml(text)
    if isinstance(data, list):
        return {}, data
    if not isinstance(data, dict) or set(data) - {"defaults", "jobs"} or not isinstance(data.get("jobs"), list):
        raise JobsFileError("a YAML jobs file is a list of jobs, or a mapping with `jobs:` (a list) and optional `defaults:`")
    return data.get("defaults") or {}, data["jobs"]


def _parse_jsonl(text: str) -> tuple[dict, list]:
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    if entries and isinstance(entries[0], dict) and set(entries[0]) == {"defaults"}:
        return entries[0]["defaults"], entries[1:]
    return {}, entries


def _parse_csv(text: str) -> tuple[dict, list]:
    lines = text.splitlines(keepends=True)
    top = 0
    while top < len(lines) and lines[top].startswith("#"):
        top += 1
    defaults = load_yaml("".join(line[1:] for line in lines[:top])) or {}
    entries = []
    reader = csv.DictReader(io.StringIO("".join(lines[top:])))
    columns = [c.strip() for c in reader.fieldnames or []]
    twice = sorted({c for c in columns if columns.count(c) > 1 and c})
    if twice:
        raise JobsFileError(f"the header names column {twice[0]!r} twice")
    for row in reader:
        if None in row:  # cells beyond the header's columns
            raise JobsFileError(f"line {top + reader.line_num}: {len(row[None])} more cell(s) than the header's columns "
                                "(a comma inside a value? put the value in double quotes)")  # fmt: skip
        entry: dict[str, Any] = {}
        for column, cell in row.items():
            if cell is None or cell.strip() == "":
                continue  # an empty cell leaves the setting unset
            key, dot, option = column.strip().partition(".")
            if dot and key == "options":
                entry.setdefault("options", {})[option] = cell  # typed by the params model, as -o values are
            else:
                entry[column.strip()] = cell  # typed by RunConfig
        entries.append(entry)
    return defaults, entries


_PARSERS = {".jsonl": _parse_jsonl, ".csv": _parse_csv, ".yaml": _parse_yaml, ".yml": _parse_yaml}
