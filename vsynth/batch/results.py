"""Running a group of jobs on one Session, and what each job's result says.

Both runners call :func:`run_group`: the embedded one in this process, the Ray one in a task per
group. A job that fails (bad input, out of memory, a crash) becomes a failed result and the group
goes on; Ctrl-C is not caught, and the run it stops leaves no folder (output folders are atomic).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Iterator

from vsynth.batch.jobs import COMPLETE_MARKER, Job
from vsynth.errors import PluginRunError, VsynthInputError, one_line


@dataclass
class JobResult:
    name: str
    status: str  # "ok", "failed", "skipped" (complete from an earlier run) or "pending" (not run yet)
    out_dir: str
    seconds: float | None = None
    frame_evals: dict[str, int] = field(default_factory=dict)  # by model role, from run.json
    metrics: dict = field(default_factory=dict)  # run.json's metrics
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def from_record(job: Job, status: str, record: dict) -> JobResult:
    return JobResult(
        job.name, status, str(job.out_dir),
        seconds=round(sum(record.get("timings", {}).values()), 3),
        frame_evals=record.get("frame_evals", {}),
        metrics=record.get("metrics", {}),
    )  # fmt: skip


def skipped(job: Job) -> JobResult:
    return from_record(job, "skipped", json.loads((job.out_dir / COMPLETE_MARKER).read_text()))


def failed(job: Job, error: BaseException | str, seconds: float | None = None) -> JobResult:
    return JobResult(job.name, "failed", str(job.out_dir), seconds=seconds, error=error if isinstance(error, str) else one_line(error))


def run_group(jobs: list[Job]) -> Iterator[JobResult]:
    """Run jobs that share a model set one after another, loading the models once."""
    from vsynth.api import Session

    with Session(display=False) as session:  # the batch shows one bar of jobs, not each run's stages
        for job in jobs:
            start = time.perf_counter()
            try:
                result = session.run_config(job.config)
            except Exception as exc:  # noqa: BLE001 - any failure is this job's result; the others go on
                if not isinstance(exc, VsynthInputError) or isinstance(exc, PluginRunError):
                    session.close()  # models after a crash (a plugin's too) or out-of-memory are not to be trusted
                yield failed(job, exc, round(time.perf_counter() - start, 3))
                continue
            yield from_record(job, "ok", result.record)
