"""A batch from its jobs file to its summary.

Jobs are checked first (bad settings fail at once, complete folders are skipped unless the job's
settings changed since), then grouped by model set so that each group loads its models once, then
run: embedded, one group after another in this process, or as one Ray task per group. The summary
is rewritten as each result comes in.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vsynth.batch.jobs import Job, changed_settings, read_jobs
from vsynth.batch.results import JobResult, failed, run_group, skipped
from vsynth.batch.summary import write_summary
from vsynth.core.media.outputs import batch_lock
from vsynth.errors import OutputExistsError, VsynthInputError, shorten

OnResult = Callable[[JobResult], None]


@dataclass
class Batch:
    out_root: Path
    results: dict[str, JobResult]  # by job name, in the jobs file's order
    groups: list[list[Job]]  # the jobs to run, grouped by model set
    replaced: list[str] = field(default_factory=list)  # complete jobs whose settings changed: their folders go first

    @property
    def todo(self) -> int:
        return sum(len(group) for group in self.groups)

    def run(self, *, ray: bool = False, ray_address: str | None = None, on_result: OnResult | None = None) -> list[JobResult]:
        """Run every pending job, embedded or on Ray (``ray_address`` None: a local Ray, or the one already connected)."""
        with batch_lock(self.out_root):
            return self._run(ray, ray_address, on_result)

    def _run(self, ray, ray_address, on_result) -> list[JobResult]:
        while self.replaced:  # under the batch's lock, once, and before a Ray worker could take the old run.json for its own
            shutil.rmtree(self.out_root / self.replaced.pop())
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


def prepare_batch(jobs_file: str | Path, out_root: str | Path, *, rerun_changed: bool = False) -> Batch:
    """Read and check every job before any model loads; raises JobsFileError for a bad file.

    A complete job whose settings changed since its run raises OutputExistsError naming them, or with
    ``rerun_changed`` runs again, its folder removed when the batch starts (kept if it cannot be planned)."""
    from vsynth.core.run.pipeline import model_key, plan_run
    from vsynth.core.run.validate import check_creatable

    out_root = Path(out_root).expanduser()
    check_creatable(out_root / "job", f"batch folder {out_root} (--out)", "choose another --out")  # before the jobs' own checks
    out_root = out_root.resolve()  # after: resolving would follow a link to a missing disk, and make its folders
    jobs = read_jobs(jobs_file, out_root)
    changed = {job.name: keys for job in jobs if job.config is not None and job.complete and (keys := changed_settings(job))}
    if changed and not rerun_changed:
        raise OutputExistsError(changed_message(out_root, changed))
    results: dict[str, JobResult] = {}
    groups: dict[tuple, list[Job]] = {}
    replaced = []
    for job in jobs:
        if job.config is None:
            results[job.name] = failed(job, job.error)
            continue
        if job.complete and job.name not in changed:
            results[job.name] = skipped(job)
            continue
        config = job.config
        if job.name in changed:  # planned as into a new folder: the old one is still there
            config = config.model_copy(update={"out": out_root / f".{job.name}.vsynth-rerun"})
        try:
            key = model_key(plan_run(config))
        except VsynthInputError as exc:
            results[job.name] = failed(job, exc)
            continue
        if job.name in changed:
            replaced.append(job.name)
        results[job.name] = JobResult(job.name, "pending", str(job.out_dir))
        groups.setdefault(key, []).append(job)
    return Batch(out_root, results, list(groups.values()), replaced)


def changed_message(out_root: Path, changed: dict[str, list[str]], shown: int = 3) -> str:
    """One line naming the first jobs that changed, each with its changed settings, and what to do."""
    said = [f"'{shorten(name)}' ({', '.join(keys[:4])}{', ...' * (len(keys) > 4)})" for name, keys in list(changed.items())[:shown]]
    more = f" and {len(changed) - shown} more" if len(changed) > shown else ""
    jobs, it, its, folders = ("job", "it", "its", "folder") if len(changed) == 1 else ("jobs", "them", "their", "folders")
    return (f"batch folder {out_root}: {jobs} {', '.join(said)}{more} changed since {its} {folders} "
            f"{'was' if it == 'it' else 'were'} written; pass --rerun-changed to run {it} again, replacing {its} {folders}, "
            f"or remove the {folders}")  # fmt: skip
