"""The batch summary: summary.json, summary.csv (every figure) and summary.md (the readable table) in the batch folder.

Rewritten after every finished job (each file replaced atomically), so an interrupted batch still
says which jobs finished; jobs not run yet are listed as ``pending``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from vsynth.batch.results import JobResult

FILES = ("summary.json", "summary.csv", "summary.md")


def write_summary(folder: Path, results: list[JobResult]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = table_rows(results)
    _replace(folder / "summary.json", json.dumps([r.as_dict() for r in results], indent=2) + "\n")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]) if rows else ["job"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _replace(folder / "summary.csv", text.getvalue())
    _replace(folder / "summary.md", markdown_table(results))


def table_rows(results: list[JobResult]) -> list[dict[str, str]]:
    """One flat row per job: status, seconds, frame evaluations per model role, each metric, error."""
    roles = sorted({role for r in results for role in r.frame_evals})
    metrics = sorted({name for r in results for name in _flat(r.metrics)})
    rows = []
    for r in results:
        flat = _flat(r.metrics)
        row = {"job": r.name, "status": r.status, "seconds": "" if r.seconds is None else f"{r.seconds:.2f}"}
        row |= {f"frame_evals.{role}": str(r.frame_evals.get(role, "")) for role in roles}
        row |= {name: "" if name not in flat else f"{flat[name]:.4g}" for name in metrics}
        row |= {"error": r.error or "", "folder": r.out_dir}
        rows.append(row)
    return rows


def markdown_table(results: list[JobResult]) -> str:
    """The readable table: frame evaluations in one cell, and only the final video's metrics (the CSV has all)."""
    finals = sorted({name for r in results for name in _flat(r.metrics) if name.endswith(".final")})
    columns = ["job", "status", "seconds", "frame evals", *(name.removesuffix(".final") for name in finals), "error"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in results:
        flat = _flat(r.metrics)
        cells = [r.name, r.status, "" if r.seconds is None else f"{r.seconds:.2f}", ", ".join(f"{k} {v}" for k, v in r.frame_evals.items())]
        cells += ["" if name not in flat else f"{flat[name]:.4g}" for name in finals] + [r.error or ""]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def _flat(metrics: dict, prefix: str = "") -> dict[str, float]:
    """``{"mean_abs_frame_difference": {"final": 3.1}}`` -> ``{"mean_abs_frame_difference.final": 3.1}``."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)):
            flat[f"{prefix}{key}"] = value
    return flat


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
