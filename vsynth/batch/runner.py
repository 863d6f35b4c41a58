"""A batch from its jobs file to its summary.

Jobs are checked first (bad settings fail at once, complete folders are skipped), then grouped by
model set so that each group loads its models once, then run: embedded, one group after another
in this process, or as one Ray task per group. The summary is rewritten as each result comes in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vsynth.batch.jobs import Job, read_jobs
from vsynth.batch.results import JobResult, failed, run_group, skipped
from vsynth.batch.summary import write_summary
from vsynth.core.media.outputs import batch_lock
from vsynth.errors import VsynthInputError

OnResult = Callable[[JobResult], None]


@dataclass
class Batch:
    out_root: Path
    results: dict[str, JobResult]  # by job name, in the jobs file's order
    groups: list[list[Job]]  # the jobs to run, grouped by model set

    @property
    def todo(self) -> int:
        return sum(len(group) for group in self.groups)

    def run(self, *, ray: bool = False, ray_address: str | None = None, on_result: OnResult | None = None) -> list[JobResult]:
        """Run every pending job, embedded or on Ray (``ray_address`` None: a local Ray, or the one already connected)."""
        with batch_lock(self.out_root):
            return self._run(ray, ray_address, on_result)

    def _run(self, ray, ray_address, on_result) -> list[JobResult]:
        write_summary(self.out_root, list(self.results.values()))

        def record(result: JobResult) -> None:
            self.results[result.name] = result
            write_summary(self.out_root, list(self.results.values()))
            if on_result is not None:
                on_result(result)

        if ray and self.todo:  # every job complete (say, from an embedded run): no cluster to start
            from vsynth.batch.ray_runner import run_on_ray

            run_on_ray(self.groups, record, ray_address)
        elif not ray:
            for group in self.groups:
                for result in run_group(group):
                    record(result)
        return list(self.results.values())


def prepare_batch(jobs_file: str | Path, out_root: str | Path) -> Batch:
    """Read and check every job before any model loads; raises JobsFileError for a bad file."""
    from vsynth.core.run.pipeline import model_key, plan_run
    from vsynth.core.run.validate import check_creatable

    out_root = Path(out_root).expanduser()
    check_creatable(out_root / "job", f"batch folder {out_root} (--out)", "choose another --out")  # before the jobs' own checks
    out_root = out_root.resolve()  # after: resolving would follow a link to a missing disk, and make its folders
    results: dict[str, JobResult] = {}
    groups: dict[tuple, list[Job]] = {}
    for job in read_jobs(jobs_file, out_root):
        if job.config is None:
            results[job.name] = failed(job, job.error)
            continue
        if job.complete:
            results[job.name] = skipped(job)
            continue
        try:
            key = model_key(plan_run(job.config))
        except VsynthInputError as exc:
            results[job.name] = failed(job, exc)
            continue
        results[job.name] = JobResult(job.name, "pending", str(job.out_dir))
        groups.setdefault(key, []).append(job)
    return Batch(out_root, results, list(groups.values()))
