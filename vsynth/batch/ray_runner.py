"""Running a batch's job groups on Ray (the ``vsynth[ray]`` extra): one task per model-set group.

Each task loads its models once and writes its jobs' folders as they finish; the driver records a
group's results as its task returns. A task asks for a GPU when the cluster has any. Workers
must see the jobs' input and output paths (one machine, or a shared filesystem) and have vsynth.
"""

from __future__ import annotations

import json
import logging
import os

from vsynth.batch.jobs import COMPLETE_MARKER, Job
from vsynth.batch.results import JobResult, failed, from_record, run_group
from vsynth.errors import MissingExtraError


def run_on_ray(groups: list[list[Job]], on_result, address: str | None = None) -> None:
    """Run every group as a Ray task; connect to ``address``, or start a local Ray unless already connected."""
    try:
        import ray
    except ImportError:
        raise MissingExtraError("--ray needs Ray: pip install 'vsynth[ray]'") from None
    started = not ray.is_initialized()
    if started:
        # Ray's start-up lines (token authentication, "Started a local Ray instance", usage stats) are
        # not the batch's business: warnings and info stay in Ray's logs, errors still show.
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        task = ray.remote(_run_group).options(num_cpus=1, num_gpus=gpus, max_retries=0)
        pending = {task.remote(group): group for group in groups if group}
        try:
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                group = pending.pop(ref)
                try:
                    results = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a worker that died: its unfinished jobs failed, others go on
                    results = [_finished(job) if job.complete else failed(job, exc) for job in group]
                for result in results:
                    on_result(result)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref)  # the task's running job stops and removes its half-written folder
            raise
    finally:
        if started:
            ray.shutdown()


def _finished(job: Job) -> JobResult:
    return from_record(job, "ok", json.loads((job.out_dir / COMPLETE_MARKER).read_text()))


def _run_group(jobs: list[Job]) -> list[JobResult]:
    return list(run_group(jobs))
