"""``vsynth batch``: jobs files, the embedded runner (grouping, failures, resuming, Ctrl-C), the summary."""

import csv
import json
import shutil

import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import SAMPLE_VIDEO
from vsynth.batch.jobs import changed_settings, read_jobs
from vsynth.cli import cli
from vsynth.core.media import video as videoio
from vsynth.core.run import pipeline

DEFAULTS = {"vdm": "zeroscope", "tiny": True, "frames": 2, "height": 64, "width": 64, "steps": 1}
JOBS = [
    {"name": "done-before", "prompt": "a corgi"},
    {"name": "corgi", "prompt": "a corgi on the beach", "seed": 7},
    {"name": "canny", "idm": "controlnet-canny", "video": str(SAMPLE_VIDEO), "prompt": "a red ball"},
    {"name": "bad", "idm": "no-such-model", "prompt": "a cat"},
]


def write_jobs(folder, jobs=JOBS, defaults=DEFAULTS):
    path = folder / "jobs.yaml"
    path.write_text(yaml.safe_dump({"defaults": defaults, "jobs": jobs}))
    return path


def fake_complete_folder(folder):
    """What an earlier batch left: a job folder with its run.json (folders appear whole or not at all)."""
    folder.mkdir(parents=True)
    (folder / "video.mp4").write_bytes(b"")
    record = {"timings": {"loading models": 1.0, "decoding": 0.5}, "frame_evals": {"vdm": 4}, "metrics": {}}
    (folder / "run.json").write_text(json.dumps(record))


def check_batch_outcome(result, out):
    """Shared by the embedded and the Ray runner: 4 jobs, one resumed, one bad."""
    assert result.exit_code == 1, result.output
    summary = {row["name"]: row for row in json.loads((out / "summary.json").read_text())}
    assert {name: row["status"] for name, row in summary.items()} == {
        "done-before": "skipped", "corgi": "ok", "canny": "ok", "bad": "failed",
    }  # fmt: skip
    assert "no-such-model" in summary["bad"]["error"] and not (out / "bad").exists()
    assert summary["done-before"]["seconds"] == 1.5
    assert summary["canny"]["frame_evals"]["idm"] > 0 and summary["corgi"]["seconds"] > 0
    assert summary["corgi"]["metrics"]["mean_abs_frame_difference"]["final"] >= 0
    for name in ("corgi", "canny"):
        assert (out / name / "video.mp4").is_file() and json.loads((out / name / "run.json").read_text())["frames"] == 2
    assert json.loads((out / "corgi" / "run.json").read_text())["seed"] == 7
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["job"] for r in rows] == ["done-before", "corgi", "canny", "bad"]
    assert "frame_evals.vdm" in rows[0] and "mean_abs_frame_difference.final" in rows[0]
    markdown = (out / "summary.md").read_text()
    assert markdown.startswith("| job | status | seconds | frame evals | ") and "| bad | failed |" in markdown
    assert "| canny | ok |" in markdown and "idm " in markdown and "mean_abs_frame_difference |" in markdown
    assert markdown in result.stdout
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # nothing half-written


def test_batch_runs_groups_records_failures_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "out"
    fake_complete_folder(out / "done-before")
    loads = []
    real_load = pipeline.load_models
    monkeypatch.setattr(pipeline, "load_models", lambda plan, stages: loads.append(plan.idm is not None) or real_load(plan, stages))

    result = CliRunner().invoke(cli, ["batch", str(write_jobs(tmp_path)), "--out", str(out)])
    check_batch_outcome(result, out)
    assert sorted(loads) == [False, True]  # one load per model set

    monkeypatch.setattr(pipeline, "load_models", pytest.fail)  # a rerun loads nothing: every good job is complete
    again = CliRunner().invoke(cli, ["batch", str(write_jobs(tmp_path)), "--out", str(out), "--quiet"])
    assert again.exit_code == 1
    statuses = [row["status"] for row in json.loads((out / "summary.json").read_text())]
    assert statuses == ["skipped", "skipped", "skipped", "failed"]


def test_jobs_sharing_a_model_set_load_it_once(tmp_path, monkeypatch):
    loads = []
    real_load = pipeline.load_models
    monkeypatch.setattr(pipeline, "load_models", lambda plan, stages: loads.append(1) or real_load(plan, stages))
    jobs = [{"prompt": "a corgi"}, {"prompt": "a cat"}, {"prompt": "a dog", "seed": 3}]
    defaults = {**DEFAULTS, "height": 60}  # every job is planned twice (grouping, running) and warns that it runs 56x64
    result = CliRunner().invoke(cli, ["batch", str(write_jobs(tmp_path, jobs, defaults)), "--out", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 0, result.output
    assert loads == [1] and sorted(p.name for p in (tmp_path / "o").iterdir() if p.is_dir()) == ["job-001", "job-002", "job-003"]
    warned = [line for line in result.stderr.splitlines() if "running 56x64" in line]
    assert warned == ["Warning: --height 60 --width 64: zeroscope needs multiples of 8 pixels; running 56x64"]  # once, as `run` says it


def test_ctrl_c_keeps_finished_jobs_and_leaves_no_half_written_folder(tmp_path, monkeypatch):
    out = tmp_path / "out"
    writes = []
    real_write_gif = videoio.write_gif

    def interrupted_on_second_job(*args, **kwargs):
        writes.append(1)
        if len(writes) == 2:
            raise KeyboardInterrupt
        return real_write_gif(*args, **kwargs)

    monkeypatch.setattr(videoio, "write_gif", interrupted_on_second_job)
    jobs_file = write_jobs(tmp_path, [{"name": "first", "prompt": "a corgi"}, {"name": "second", "prompt": "a cat"}])
    result = CliRunner().invoke(cli, ["batch", str(jobs_file), "--out", str(out), "-q"])
    assert result.exit_code == 130 and "1 of 2 jobs are complete" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["first", "summary.csv", "summary.json", "summary.md"]
    assert (out / "first" / "run.json").is_file()
    assert [row["status"] for row in json.loads((out / "summary.json").read_text())] == ["ok", "pending"]


def test_yaml_jsonl_and_csv_jobs_files_read_the_same(tmp_path):
    jobs = [{"name": "a", "prompt": "a corgi", "frames": 3, "options": {"mixing_ratio": 0.5}}, {"prompt": "a cat", "seed": 1}]
    yaml_file = write_jobs(tmp_path, jobs, {"vdm": "zeroscope", "tiny": True})
    jsonl_file = tmp_path / "jobs.jsonl"
    jsonl_file.write_text("\n".join(json.dumps(x) for x in [{"defaults": {"vdm": "zeroscope", "tiny": True}}, *jobs]) + "\n")
    csv_file = tmp_path / "jobs.csv"
    csv_file.write_text("# vdm: zeroscope\n# tiny: true\nname,prompt,frames,seed,options.mixing_ratio\na,a corgi,3,,0.5\n,a cat,,1,\n")
    read = {f.suffix: [(j.name, j.config.model_dump(), j.error) for j in read_jobs(f, tmp_path / "o")] for f in (yaml_file, jsonl_file, csv_file)}
    assert read[".yaml"] == read[".jsonl"]
    assert [(n, e) for n, _, e in read[".csv"]] == [("a", None), ("job-002", None)]
    # CSV cells are text, typed by RunConfig; options by the params model when the run is planned
    assert read[".csv"][0][1] == {**read[".yaml"][0][1], "options": {"mixing_ratio": "0.5"}}
    assert read[".csv"][1][1] == read[".yaml"][1][1]


@pytest.mark.parametrize(
    "text, words",
    [
        ("jobs: [", "cannot parse jobs file"),
        ("jobs: []", "holds no jobs"),
        ("runs: [{prompt: a}]", "`jobs:`"),
        ("[{name: a, prompt: x}, {name: a, prompt: y}]", "two jobs are named 'a'"),
        ("[{name: ../up, prompt: x}]", "job 1: name '../up' must be letters"),
        ("[{prompt: x, out: elsewhere}]", "sets out"),
        ("[just a prompt]", "job 1 must be a mapping"),
        # a name that is not text (YAML wrote the folder True/ or None/), or cannot be a folder everywhere: refused as read
        ("[{prompt: x}, {name: true, prompt: y}]", "job 2: name true is not text; quote the name, or leave it out for job-002"),
        ("[{name: null, prompt: x}]", "job 1: name null is not text"),
        ("[{name: 1.5, prompt: x}]", "job 1: name 1.5 is not text"),
        ("[{name: [a], prompt: x}]", "job 1: name ['a'] is not text"),
        (f"[{{name: {'n' * 300}, prompt: x}}]", "job 1: name 'nnn"),
        (f"[{{name: {'n' * 232}, prompt: x}}]", "is too long (232 characters; at most 231"),
        ("[{name: '', prompt: x}]", "job 1: name '' must be letters"),
        ("[{name: ., prompt: x}]", "name '.' must be letters"),
        ("[{name: .., prompt: x}]", "name '..' must be letters"),
        ("[{name: a/b, prompt: x}]", "name 'a/b' must be letters"),
        ('[{name: "a\\0b", prompt: x}]', "name 'a\\x00b' must be letters"),
        ('[{name: "a\\tb", prompt: x}]', "name 'a\\tb' must be letters"),
        ("[{name: .hidden, prompt: x}]", "must be letters"),
        ("[{name: v1., prompt: x}]", "not ending with '.'"),
        ("[{name: CON, prompt: x}]", "name 'CON' is a device name on Windows"),
        ("[{name: nul.mp4, prompt: x}]", "name 'nul.mp4' is a device name on Windows"),
        ("[{name: Lpt1, prompt: x}]", "is a device name on Windows"),
        ("[{name: Corgi, prompt: x}, {name: corgi, prompt: y}]", "two jobs are named 'Corgi' and 'corgi', one folder where names ignore case"),
        # a bad key of the defaults fails the file once, naming it, not every job
        ("{defaults: {framez: 2, colour: red}, jobs: [{prompt: a}, {prompt: b}]}",
         "jobs file JOBS: defaults: unknown settings 'framez' (did you mean 'frames'?), 'colour'"),
        ("{defaults: {promt: a}, jobs: [{vdm: zeroscope}]}", "defaults: unknown setting 'promt' (did you mean 'prompt'?)"),
        ("{defaults: {name: a}, jobs: [{prompt: a}]}", "defaults: name is each job's own"),
        ("{defaults: {out: elsewhere}, jobs: [{prompt: a}]}", "defaults: out is the batch's"),
    ],
)
def test_bad_jobs_file_is_one_line_exit_2(tmp_path, text, words):
    path = tmp_path / "jobs.yaml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["batch", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and words.replace("JOBS", str(path)) in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_a_number_as_a_job_name_is_its_text_and_a_csv_header_is_checked_once(tmp_path):
    """YAML and JSON read `name: 2024` as a number: the job is 2024/. A CSV column that is no setting failed every row."""
    from vsynth.errors import JobsFileError

    (tmp_path / "jobs.yaml").write_text("defaults: {vdm: zeroscope}\njobs: [{name: 2024, prompt: a}]\n")
    (tmp_path / "jobs.jsonl").write_text('{"name": 7, "vdm": "zeroscope", "prompt": "a"}\n')
    assert [j.name for f in ("jobs.yaml", "jobs.jsonl") for j in read_jobs(tmp_path / f, tmp_path / "o")] == ["2024", "7"]
    (tmp_path / "jobs.csv").write_text("# vdm: zeroscope\nname,promt,Frames,options.x,\na,b,2,1,\n")
    with pytest.raises(JobsFileError, match="the header: unknown settings 'promt' .did you mean 'prompt'.., 'Frames' .did you mean 'frames'..$"):
        read_jobs(tmp_path / "jobs.csv", tmp_path / "o")


def test_missing_jobs_file_is_exit_2(tmp_path):
    result = CliRunner().invoke(cli, ["batch", str(tmp_path / "nowhere.yaml")])
    assert result.exit_code == 2 and "jobs file not found" in result.stderr


def test_jobs_files_as_editors_write_them_and_their_silent_losses(tmp_path):
    """Excel's "CSV UTF-8" starts with a BOM (the first column read as '\\ufeffname'); a row with more cells than the
    header (an unquoted comma) lost the extra text; a column or YAML key named twice kept the last. The first reads,
    the others are one error naming the line or key."""
    from vsynth.errors import JobsFileError

    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffname,prompt,vdm,tiny\r\nfirst,hello,zeroscope,true\r\n".encode())
    (job,) = read_jobs(bom, tmp_path / "out")
    assert job.name == "first" and job.config.prompt == "hello"
    merged = tmp_path / "merged.yaml"  # a key a merge brings in may be written again: that is an override, not a twin
    merged.write_text("base: &base {vdm: zeroscope, tiny: true, prompt: a}\njobs: [{<<: *base, prompt: b}]\n")
    with pytest.raises(JobsFileError, match="mapping with `jobs:`"):  # `base:` is not a jobs-file key; the merge itself parses
        read_jobs(merged, tmp_path / "out")
    merged.write_text("- &base {vdm: zeroscope, tiny: true, prompt: a, name: one}\n- {<<: *base, prompt: b, name: two}\n")
    assert [j.config.prompt for j in read_jobs(merged, tmp_path / "out")] == ["a", "b"]
    for name, text, line in [
        ("ragged.csv", "# {vdm: zeroscope, tiny: true}\nname,prompt\nz,a red ball, bouncing\n", "line 3: 1 more cell.s. than the header.s columns"),
        ("twice.csv", "name,prompt,name\na,b,c\n", "the header names column 'name' twice"),
        ("twice.yaml", "defaults: {vdm: zeroscope}\ndefaults: {vdm: modelscope}\njobs: [{prompt: a}]\n", "key 'defaults' appears twice"),
        # one setting spelt twice: which one won was the file's order
        ("twins.yaml", "- {vdm: zeroscope, prompt: a, save-latents: true, save_latents: false}\n", "job 1: 'save-latents' and 'save_latents' are one setting"),
        ("twins.csv", "# {vdm: zeroscope}\nprompt,save-latents,save_latents\na,true,false\n", "the header: 'save-latents' and 'save_latents' are one"),
    ]:
        (tmp_path / name).write_text(text)
        with pytest.raises(JobsFileError, match=line):
            read_jobs(tmp_path / name, tmp_path / "out")


def test_a_batch_folder_through_a_link_to_a_missing_disk_is_refused_before_making_it(tmp_path):
    """Resolving --out first followed the link and made the missing disk's folders."""
    from vsynth.errors import OutputFolderError

    (tmp_path / "outputs").symlink_to(tmp_path / "unmounted" / "outputs")
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("[{vdm: zeroscope, tiny: true, prompt: a}]\n")
    result = CliRunner().invoke(cli, ["batch", str(jobs), "--out", str(tmp_path / "outputs" / "b")])
    assert result.exit_code == 2 and "which does not exist (or loops)" in result.output, result.output
    assert not (tmp_path / "unmounted").exists()
    with pytest.raises(OutputFolderError, match="is a link to"):
        pipeline.plan_run(pipeline.RunConfig(vdm="zeroscope", tiny=True, prompt="a", out=tmp_path / "outputs" / "run"))


def test_a_rerun_refuses_a_job_whose_settings_changed_and_reruns_it_when_asked(tmp_path, monkeypatch):
    """A rerun skipped every job with a run.json: after editing a prompt the old video came back silently."""
    out = tmp_path / "out"
    jobs = [{"name": "corgi", "prompt": "a corgi"}, {"name": "cat", "prompt": "a cat"}]
    first = CliRunner().invoke(cli, ["batch", str(write_jobs(tmp_path, jobs)), "--out", str(out), "-q"])
    assert first.exit_code == 0, first.output
    before = {name: (out / name / "run.json").read_text() for name in ("corgi", "cat")}

    monkeypatch.setattr(pipeline, "load_models", pytest.fail)  # refused before any model loads
    edited = write_jobs(tmp_path, [{**jobs[0], "prompt": "a corgi on the beach", "seed": 7}, jobs[1]])
    result = CliRunner().invoke(cli, ["batch", str(edited), "--out", str(out), "-q"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        f"Error: batch folder {out}: job 'corgi' (prompt, seed) changed since its folder was written; "
        "pass --rerun-changed to run it again, replacing its folder, or remove the folder"
    )
    assert {name: (out / name / "run.json").read_text() for name in ("corgi", "cat")} == before
    assert sorted(p.name for p in out.iterdir()) == ["cat", "corgi", "summary.csv", "summary.json", "summary.md"]

    monkeypatch.undo()
    again = CliRunner().invoke(cli, ["batch", str(edited), "--out", str(out), "-q", "--rerun-changed"])
    assert again.exit_code == 0, again.output
    assert f"running 1 of 2 jobs in {out} again: their settings changed since their run" in again.stderr
    assert [row["status"] for row in json.loads((out / "summary.json").read_text())] == ["ok", "skipped"]
    assert json.loads((out / "corgi" / "run.json").read_text())["config"]["prompt"] == "a corgi on the beach"
    assert (out / "cat" / "run.json").read_text() == before["cat"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    monkeypatch.setattr(pipeline, "load_models", pytest.fail)
    resumed = CliRunner().invoke(cli, ["batch", str(edited), "--out", str(out), "-q"])  # nothing changed since: all skipped
    assert resumed.exit_code == 0 and "2 of 2 jobs are complete" in resumed.stderr


def test_a_rerun_compares_what_the_job_sets_not_how_the_run_resolved_it(tmp_path, monkeypatch):
    """run.json records the config as the run resolved it: input paths absolute, the stride filled in, frames rounded
    to the video model's latent frames, the job's own folder. None of that is a change; what the user edits is."""
    first, moved = tmp_path / "first", tmp_path / "moved"  # the batch run again from another folder, or a moved project
    for folder in (first, moved):
        (folder / "clips").mkdir(parents=True)
        shutil.copy(SAMPLE_VIDEO, folder / "clips" / "in.mp4")
    job = {"name": "canny", "idm": "controlnet-canny", "video": "clips/in.mp4", "prompt": "a red ball", "options": {"mixing_ratio": 0.5}}
    monkeypatch.chdir(first)
    (done,) = read_jobs(write_jobs(tmp_path, [job]), tmp_path / "out")
    recorded = json.loads(pipeline.plan_run(done.config).config.model_dump_json())  # run.json's "config", as the run writes it
    assert recorded["stride"] == 4 and recorded["video"] == str(first / "clips" / "in.mp4")
    done.out_dir.mkdir(parents=True)
    (done.out_dir / "run.json").write_text(json.dumps({"config": recorded}))
    monkeypatch.chdir(moved)

    def changes(edits=None, defaults=DEFAULTS, out=tmp_path / "out"):
        (again,) = read_jobs(write_jobs(tmp_path, [{**job, **(edits or {})}], defaults), out)
        return changed_settings(again)

    assert changes({"seed": 42}, {**DEFAULTS, "offload": "model", "memory_check": False}) == []  # how it ran is no change
    assert changes({"video": str(first / "clips" / "in.mp4")}) == []
    assert changes({"video": "clips/other.mp4"}) == ["video"]
    assert changes({"prompt": "a blue ball", "stride": 2, "options": {"mixing_ratio": 0.7}}) == ["prompt", "stride", "options.mixing_ratio"]
    assert changes({"options": {}}, {**DEFAULTS, "steps": 2}) == ["steps", "options.mixing_ratio"]
    shutil.move(tmp_path / "out", tmp_path / "elsewhere")  # a batch folder moved with its jobs: --out is no setting
    assert changes(out=tmp_path / "elsewhere") == []

    ltx = {"name": "ltx", "vdm": "ltx-video", "prompt": "a", "frames": 10}  # its latent frames hold 9; stride left unset
    (job_ltx,) = read_jobs(write_jobs(tmp_path, [ltx], {"tiny": True}), tmp_path / "o")
    job_ltx.out_dir.mkdir(parents=True)
    for frames, stride, changed in [(9, 4, []), (5, 4, ["frames"]), (9, 2, ["stride"])]:  # an explicit stride removed since
        record = {**json.loads(job_ltx.config.model_dump_json()), "frames": frames, "stride": stride}
        (job_ltx.out_dir / "run.json").write_text(json.dumps({"config": record}))
        assert changed_settings(job_ltx) == changed
