"""Quality per second: every speed option of ``vsynth run`` against the same run without it.

Each scenario is one ``vsynth run`` command line; each option is a list of extra command-line arguments
(:data:`OPTIONS`: append yours, e.g. ``("int8", ["--quantize", "int8"])``). Every option runs on every
scenario, in this process, exactly as ``vsynth run ARGS`` parses and runs it; one a scenario refuses
(a cache that does not apply to its models: exit 2) is listed as not applicable. Per option and
scenario the table gives:

- seconds: synthesis wall-clock time from run.json (every stage but loading and writing), and CPU s, the
  process's CPU time of the bridge (every network evaluation), which other processes on a shared machine
  barely move; the speed-up is the CPU time's on a CPU, the wall-clock's on a GPU (the fastest of ``--repeat``);
- forwards: network forward calls of the IDM and VDM (run.json's ``nfe``), and how many of them were
  cached (reused features: run.json's ``caches``);
- latent err: ||z - z_ref|| / ||z_ref|| of the final latents against the uncached run's;
- the row ``uncached, seed 43`` is the noise floor: how far the metrics move with another seed alone;
- toy metrics (scenario ``toy``: the trained toy models on toy clips, against ground truth, as
  benchmarks/quality.py): edge F1, colour and background adherence, warping error, classifier
  accuracy, averaged over the clips, and the largest relative change of any of them against the
  uncached run; ``within 5%`` says whether that change is at most 5%.

The tiny scenarios (random weights) measure what the options do to the computation, not to quality:
their latent error is the only quality signal there.

    python benchmarks/speed.py                              # toy (4 clips) + tiny Wan + tiny FLUX: about 15 minutes on 2 cores
    python benchmarks/speed.py --scenarios toy --clips 4
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NOT_SYNTHESIS = ("loading models", "writing", "reading inputs")
TOY_METRICS = (
    ("edge_f1", "edge F1"),
    ("colour_adherence", "colour"),
    ("background_adherence", "background"),
    ("warping_error", "warp err"),
    ("classifier_accuracy", "classifier"),
)
TOLERANCE = 0.05

# (label, extra `vsynth run` arguments). The first is the reference every other option is measured against.
OPTIONS: list[tuple[str, list[str]]] = [
    ("uncached", []),
    ("uncached, seed 43", ["--seed", "43"]),  # the noise floor: how far another seed alone moves the metrics
    ("first-block", ["--cache", "first-block"]),
    ("first-block 0.1", ["--cache", "first-block", "-o", "cache.threshold=0.1"]),
    ("taylorseer", ["--cache", "taylorseer"]),
    ("magcache", ["--cache", "magcache"]),
    ("pab", ["--cache", "pab"]),
    ("fastercache", ["--cache", "fastercache"]),
    ("deepcache", ["--cache", "deepcache"]),
    ("deepcache interval=2", ["--cache", "deepcache", "-o", "cache.interval=2"]),
    ("deepcache interval=5", ["--cache", "deepcache", "-o", "cache.interval=5"]),
    ("deepcache depth=2", ["--cache", "deepcache", "-o", "cache.depth=2"]),
    ("tome", ["--cache", "tome"]),
]


def scenarios(args) -> dict[str, dict]:
    """name -> base command line (without --out), whether it runs on toy clips (one run per clip, with its caption)."""
    size = ["--height", str(args.size), "--width", str(args.size)]
    return {
        "toy": {"args": ["--toy", "--idm", "controlnet-canny", "--vdm", "zeroscope", "--bridge", "mixed-inversion", "--frames", str(args.frames),
                         "--stride", "1", *size, "--steps", str(args.steps)], "toy": True},
        "tiny-wan": {"args": ["--tiny", "--vdm", "wan2.1-t2v-1.3b", "--bridge", "none", "--frames", "5", *size, "--steps", str(args.steps),
                              "--prompt", "a red ball"]},
        "tiny-flux": {"args": ["--tiny", "--idm", "flux-dev", "--vdm", "wan2.1-t2v-1.3b", "--bridge", "idm-only", "--video",
                               str(ROOT / "examples" / "shapes.mp4"), "--frames", "5", *size, "--steps", str(args.steps),
                               "-o", "bridge.strength=1.0", "--prompt", "a red ball"]},
    }  # fmt: skip


class CpuClock:
    """The process's CPU seconds of a run's bridge (every network evaluation of the run), which other processes on a
    shared machine barely move: from the pipeline's attaching the step caches, right before the bridge runs, to their
    detaching, right after."""

    def __init__(self):
        import types

        from vsynth.core.run import pipeline

        caches = pipeline.step_caches
        self.seconds, self._start = 0.0, 0.0

        def attach(*args):
            self._start = time.process_time()
            return caches.attach(*args)

        def detach(*args):
            caches.detach(*args)
            self.seconds = time.process_time() - self._start

        pipeline.step_caches = types.SimpleNamespace(plan=caches.plan, attach=attach, detach=detach)


def run_once(argv: list[str], out: Path, clock: CpuClock) -> dict | str:
    """run.json of ``vsynth run ARGV --out OUT`` (with ``cpu_seconds`` added), or the one-line reason it was refused."""
    from vsynth.cli import cli
    from vsynth.errors import VsynthInputError

    shutil.rmtree(out, ignore_errors=True)
    clock.seconds = 0.0
    try:
        cli.main(["run", *argv, "--out", str(out), "--save-latents", "-q"], standalone_mode=False)
    except VsynthInputError as exc:
        return str(exc)
    except Exception as exc:  # an option that breaks a run is a result too: listed, not fatal
        return f"failed: {type(exc).__name__}: {exc}"
    record = json.loads((out / "run.json").read_text())
    record["cpu_seconds"] = clock.seconds
    return record


def latents(out: Path):
    from safetensors.torch import load_file

    return load_file(str(out / "latents.safetensors"))["latents"].double()


def measure(scenario: dict, option: list[str], args, folder: Path, clips: list[tuple[Path, str]], clock: CpuClock) -> dict | str:
    """One option on one scenario: over the clips (toy) or once, the fastest of --repeat runs each."""
    per_run = []
    for i, (clip, caption) in enumerate(clips if scenario.get("toy") else [(None, None)]):
        extra = ["--video", str(clip), "--prompt", caption] if clip is not None else []
        best = None
        for r in range(args.repeat):
            out = folder / f"run{i}" if r == 0 else folder / f"run{i}.{r}"
            record = run_once([*scenario["args"], *extra, *option, "--device", args.device], out, clock)
            if isinstance(record, str):
                return record
            wall = sum(s for stage, s in record["timings"].items() if stage not in NOT_SYNTHESIS)
            if best is None or record["cpu_seconds"] < best["cpu_seconds"]:
                best = {"seconds": wall, "cpu_seconds": record["cpu_seconds"], "record": record, "out": folder / f"run{i}"}
        per_run.append(best)
    records = [p["record"] for p in per_run]
    return {
        "seconds": float(np.mean([p["seconds"] for p in per_run])),
        "cpu_seconds": float(np.mean([p["cpu_seconds"] for p in per_run])),
        "forwards": {role: int(np.mean([r["nfe"][role] for r in records])) for role in ("idm", "vdm") if role in records[0]["nfe"]},
        "cached": {role: int(np.mean([r["caches"][role]["cached_forwards"] for r in records])) for role in records[0].get("caches", {})},
        "metrics": {key: _mean([r["metrics"].get(key, {}).get("final") for r in records]) for key, _ in TOY_METRICS},
        "outs": [p["out"] for p in per_run],
        "device": records[0]["device"],
        "dtype": records[0]["dtype"],
    }


def _mean(values):
    values = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(values)) if values else None


def compare(result: dict, reference: dict) -> None:
    """Latent error and the toy metrics' largest relative change against the reference run (in place)."""
    errors = [float((latents(o) - latents(ref)).norm() / latents(ref).norm()) for o, ref in zip(result["outs"], reference["outs"])]
    result["latent_err"] = float(np.mean(errors))
    changes = [abs(v - reference["metrics"][k]) / max(abs(reference["metrics"][k]), 1e-6)
               for k, v in result["metrics"].items() if v is not None and reference["metrics"].get(k) is not None]  # fmt: skip
    result["max_change"] = max(changes) if changes else None


def speed_up(result: dict, reference: dict) -> float:
    key = "cpu_seconds" if result["device"] == "cpu" else "seconds"
    return reference[key] / result[key]


def markdown(table: dict[str, dict[str, dict | str]], args) -> str:
    machine = f"{platform.machine()}, {platform.processor() or platform.system()}"
    lines = [f"Measured {date.today().isoformat()} on {machine}, device {args.device_used}; toy: {args.clips} clips x {args.frames} frames, "
             f"{args.size}x{args.size}, {args.steps} steps; tiny: random weights, {args.size}x{args.size}, {args.steps} steps.", ""]  # fmt: skip
    head = ["scenario", "option", "seconds", "CPU s", "speed-up", "forwards (cached)", "latent err", *(label for _, label in TOY_METRICS), "max change", "within 5%"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, rows in table.items():
        reference = rows[OPTIONS[0][0]]
        for label, result in rows.items():
            if isinstance(result, str):
                continue  # not applicable to this scenario's models
            forwards = ", ".join(f"{role} {n}" + (f" ({result['cached'][role]})" if role in result["cached"] else "") for role, n in result["forwards"].items())
            metrics = ["—" if result["metrics"].get(k) is None else f"{result['metrics'][k]:.3f}" for k, _ in TOY_METRICS]
            change = result.get("max_change")
            within = "—" if change is None else ("yes" if change <= TOLERANCE else "no")
            lines.append("| " + " | ".join([
                name, label, f"{result['seconds']:.2f}", f"{result['cpu_seconds']:.2f}", f"{speed_up(result, reference):.2f}x", forwards,
                f"{result.get('latent_err', 0.0):.4f}", *metrics, "—" if change is None else f"{100 * change:.1f}%", within,
            ]) + " |")  # fmt: skip
    skipped = sorted({f"{label} ({name})" for name, rows in table.items() for label, r in rows.items() if isinstance(r, str) and not r.startswith("failed")})
    failed = sorted({f"{label} ({name}): {r}" for name, rows in table.items() for label, r in rows.items() if isinstance(r, str) and r.startswith("failed")})
    if skipped:
        lines += ["", "Not applicable (refused before loading): " + ", ".join(skipped) + "."]
    if failed:
        lines += ["", "Failed: " + "; ".join(failed) + "."]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=["toy", "tiny-wan", "tiny-flux"])
    parser.add_argument("--options", nargs="+", help="labels of OPTIONS to run (the reference always runs); default: all")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=1, help="runs per option and clip; the fastest counts")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speed")
    args = parser.parse_args(argv)
    args.device_used = args.device

    from vsynth.toy.truth import save_clip

    shutil.rmtree(args.out, ignore_errors=True)
    (args.out / "clips").mkdir(parents=True)
    clips = []
    for i in range(args.clips):
        path = args.out / "clips" / f"clip{i}.mp4"
        save_clip(path, 100 + i, frames=args.frames, n_shapes=1, background=("white", "gray", "black", "gradient")[i % 4])
        clips.append((path, json.loads(path.with_suffix(".json").read_text())["caption"]))
    options = [o for o in OPTIONS if args.options is None or o[0] in args.options or o is OPTIONS[0]]
    all_scenarios = scenarios(args)
    table: dict[str, dict] = {}
    clock = CpuClock()
    for name in args.scenarios:
        table[name] = {}
        for label, extra in options:
            start = time.perf_counter()
            result = measure(all_scenarios[name], extra, args, args.out / "runs" / name / label.replace(" ", "_").replace("=", "-"), clips, clock)
            table[name][label] = result
            if not isinstance(result, str):
                args.device_used = f"{result['device']} ({result['dtype']})"
            state = result if isinstance(result, str) else f"{result['seconds']:.2f} s"
            print(f"{name} / {label}: {state} ({time.perf_counter() - start:.0f} s wall)", flush=True)
        reference = table[name][options[0][0]]
        for result in table[name].values():
            if not isinstance(result, str):
                compare(result, reference)
    text = markdown(table, args)
    serial = {n: {k: (v if isinstance(v, str) else {**v, "outs": [str(o) for o in v["outs"]]}) for k, v in rows.items()} for n, rows in table.items()}
    (args.out / "results.json").write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "table": serial}, indent=2) + "\n")
    (args.out / "summary.md").write_text(text + "\n")
    print(text)
    return table


if __name__ == "__main__":
    main()
