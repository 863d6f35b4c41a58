"""Jobs files: many runs, each a run config as ``vsynth run --config`` takes, with shared defaults.

YAML::

    defaults: {vdm: zeroscope, tiny: true}
    jobs:
      - {name: corgi, prompt: a corgi running}
      - {prompt: a cat, options: {mixing_ratio: 0.5}}

JSONL: one job object a line; a first line ``{"defaults": {...}}`` holds the defaults.
CSV: ``#`` lines above the header hold the defaults as YAML; columns are run settings, ``name``,
and ``options.KEY``; an empty cell leaves a setting unset.

A file that cannot be read as jobs raises :class:`~vsynth.errors.JobsFileError`: a job name that
cannot be a folder, an unknown setting in the defaults or a CSV header (one error for the file, not
one per job). A job whose own settings are wrong is kept, with its error, so that the others still run.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from vsynth.core.run.config import DOCUMENT_ERRORS, RunConfig, document_error, load_yaml, make_config, underscored
from vsynth.core.run.validate import NAME_MAX, PARTIAL_NAME_EXTRA
from vsynth.errors import JobsFileError, VsynthError, VsynthInputError, shorten

# A job's folder name, on every common file system: no separator, not hidden, no trailing '.' (Windows drops it),
# not a device name Windows reserves (whatever the extension), and room for `.NAME.vsynth-partial-PID` beside it.
NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9_-])?")
RESERVED_NAME = re.compile(r"(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?", re.IGNORECASE)
NAME_LIMIT = NAME_MAX - PARTIAL_NAME_EXTRA
SETTINGS = [name for name in RunConfig.model_fields if name != "out"]  # what defaults and CSV columns may set
PATH_FIELDS = ("video", "condition_video", "mask")
COMPLETE_MARKER = "run.json"  # written last into a folder that appears whole: its presence means done
# Not compared with an earlier run: where and how it ran, not what it made (frames are compared as they ran).
NOT_COMPARED = ("out", "fit", "offload", "compile", "memory_check", "trust_pickles")
LORA_PRESET_FIELDS = ("steps", "guidance", "vdm_steps", "vdm_guidance", "idm_scheduler", "vdm_scheduler")


@dataclass
class Job:
    name: str
    out_dir: Path
    config: RunConfig | None  # None when the job's settings are invalid
    error: str | None = None
    paths: dict[str, str] = field(default_factory=dict)  # input paths as the jobs file writes them

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
    jobs, seen = [], {}
    try:
        check_settings(defaults, "defaults")
        for index, entry in enumerate(entries, start=1):
            if not isinstance(entry, dict):
                raise JobsFileError(f"job {index} must be a mapping of run settings, got {entry!r}")
            values = _merge(underscored(defaults, "defaults", JobsFileError), underscored(entry, f"job {index}", JobsFileError))
            name = job_name(values.pop("name", f"job-{index:03d}"), index)
            if name.lower() in seen:
                twin = seen[name.lower()]
                raise JobsFileError(f"two jobs are named {name!r}" if twin == name else
                                    f"two jobs are named {twin!r} and {name!r}, one folder where names ignore case (macOS, Windows)")  # fmt: skip
            if "out" in values:
                raise JobsFileError(f"job {name!r} sets out; each job writes to the batch folder's {name}/")
            seen[name.lower()] = name
            jobs.append(_job(name, values, Path(out_root).expanduser().resolve() / name))
    except JobsFileError as exc:
        raise JobsFileError(f"jobs file {path}: {exc}") from None
    return jobs


def job_name(name: Any, index: int) -> str:
    """The job's folder name, checked here so that a bad one fails the file at once rather than its job at run
    time. A whole number is its text (YAML and JSON read ``name: 2024`` as one); true, null or 1.5 are mistakes."""
    if isinstance(name, int) and not isinstance(name, bool):
        name = str(name)
    if not isinstance(name, str):
        shown = json.dumps(name) if name is None or isinstance(name, (bool, float)) else str(name)
        raise JobsFileError(f"job {index}: name {shorten(shown)} is not text; quote the name, or leave it out for job-{index:03d}")
    if not NAME.fullmatch(name):
        raise JobsFileError(f"job {index}: name {shorten(name)!r} must be letters, digits, '.', '_' or '-', "
                            "starting with a letter or digit and not ending with '.'")  # fmt: skip
    if len(name) > NAME_LIMIT:
        raise JobsFileError(f"job {index}: name {shorten(name)!r} is too long ({len(name)} characters; at most {NAME_LIMIT}, "
                            f"as folder names hold {NAME_MAX} and vsynth writes .NAME.vsynth-partial-PID beside the job's)")  # fmt: skip
    if RESERVED_NAME.fullmatch(name):
        raise JobsFileError(f"job {index}: name {name!r} is a device name on Windows (CON, PRN, AUX, NUL, COM0-9, LPT0-9, "
                            "with any extension): choose another")  # fmt: skip
    return name


def check_settings(keys, where: str) -> None:
    """Keys of ``where`` (the defaults, a CSV header) that no job can hold: one error for the file, not one per job."""
    keys = [str(key).replace("-", "_") for key in keys]
    if "name" in keys:
        raise JobsFileError(f"{where}: name is each job's own: set it in the jobs")
    if "out" in keys:
        raise JobsFileError(f"{where}: out is the batch's: each job writes to the batch folder's NAME/ (--out sets it)")
    unknown = [key for key in keys if key not in SETTINGS]
    said = [f"'{shorten(key)}'" + "".join(f" (did you mean '{close}'?)" for close in difflib.get_close_matches(key, SETTINGS, n=1))
            for key in unknown]  # fmt: skip
    if unknown:
        raise JobsFileError(f"{where}: unknown setting{'s' * (len(unknown) > 1)} {', '.join(said)}")


def changed_settings(job: Job) -> list[str]:
    """The settings of a complete job that differ from those its run.json records (``options.KEY`` for an option),
    so that a rerun does not silently keep a video made from other settings; [] when the record has none.

    Compared as the run records them: frames rounded to what the video model holds, an unset stride filled in;
    a setting the job leaves unset that a LoRA preset fills (steps, guidance, solver) is not compared, nor is a
    relative input path that ends the recorded one (the batch ran from another folder) or :data:`NOT_COMPARED`."""
    try:
        old = json.loads((job.out_dir / COMPLETE_MARKER).read_text()).get("config")
    except (OSError, ValueError, AttributeError):
        return []
    if not isinstance(old, dict) or job.config is None:
        return []
    new, loras = _as_recorded(job.config), job.config.idm_lora or job.config.vdm_lora
    changed = []
    for key, spec in RunConfig.model_fields.items():
        was, now = old.get(key, spec.get_default(call_default_factory=True)), new[key]
        if key in NOT_COMPARED or was == now or (now is None and loras and key in LORA_PRESET_FIELDS):
            continue
        if key == "options" and isinstance(was, dict):
            changed += [f"options.{k}" for k in sorted({*was, *now}) if was.get(k, ...) != now.get(k, ...)]
        elif not (key in job.paths and isinstance(was, str) and _ends_with(was, job.paths[key])):
            changed.append(key)
    return changed


def _as_recorded(config: RunConfig) -> dict[str, Any]:
    """``config`` as run.json would record it: the run rounds the frames down to what the video model holds (when the
    bridge uses one), and fills in an unset stride (the toy world's, else BIVDiff's)."""
    from vsynth.core.host.registry import get_registry
    from vsynth.core.run.config import chosen_bridge
    from vsynth.core.run.pipeline import default_stride

    values = json.loads(config.model_dump_json())
    try:
        registry = get_registry()
        if config.vdm is not None and registry.bridge(chosen_bridge(config.bridge, config.idm)).needs_vdm:
            values["frames"] = registry.model(config.vdm, "vdm").latent_space.fit_frames(config.frames)
        toy = registry.world("toy") if config.toy else None
    except VsynthError:
        return values  # an unknown model or world: planning refuses the job
    if config.stride is None:
        values["stride"] = default_stride(toy)
    return values


def _ends_with(recorded: str, written: str) -> bool:
    """A relative path as the jobs file writes it, which the recorded (resolved) path ends with."""
    written_path = Path(written).expanduser()
    return not written_path.is_absolute() and Path(recorded).parts[-len(written_path.parts):] == written_path.parts


def _job(name: str, values: dict[str, Any], out_dir: Path) -> Job:
    paths = {}
    for key in PATH_FIELDS:
        if isinstance(values.get(key), str) and values[key]:  # anything else is RunConfig's to refuse
            paths[key] = values[key]
            values[key] = Path(values[key]).expanduser().resolve()
    try:
        if not isinstance(values.get("options") or {}, dict):
            raise VsynthInputError(f"options must be a mapping of key: value (got {values['options']!r})")
        return Job(name, out_dir, make_config({**values, "out": out_dir}), paths=paths)
    except VsynthInputError as exc:
        return Job(name, out_dir, None, str(exc), paths)


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
    underscored(dict.fromkeys(c for c in columns if c), "the header", JobsFileError)  # save-latents beside save_latents
    check_settings([c for c in columns if c and c != "name" and not c.startswith("options.")], "the header")
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
