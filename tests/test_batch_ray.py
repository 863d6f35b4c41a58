"""``vsynth batch --ray`` on a local Ray instance started by the test, with the same jobs as the embedded runner."""

import pytest
from click.testing import CliRunner

from tests.extras import need
from tests.test_batch import check_batch_outcome, fake_complete_folder, write_jobs
from vsynth.cli import cli

ray = need("ray", "pip install 'vsynth[ray]'")


@pytest.fixture(scope="module")
def local_ray(tiny_cache):
    """Two CPUs on 127.0.0.1; its workers inherit the test's environment (the tiny models' cache)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20)
    yield
    ray.shutdown()


def test_batch_on_ray_runs_one_task_per_group_records_failures_and_resumes(local_ray, tmp_path):
    out = tmp_path / "out"
    fake_complete_folder(out / "done-before")
    result = CliRunner().invoke(cli, ["batch", str(write_jobs(tmp_path)), "--out", str(out), "--ray"])
    check_batch_outcome(result, out)
    assert ray.is_initialized()  # the runner leaves a Ray it did not start alone
