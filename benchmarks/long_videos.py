"""Long videos: seconds and peak memory of one run at 8, 16, 32, 64 and 128 frames.

Each length runs through the library as ``vsynth run`` would (tiny models by default), on a
source clip long enough for the longest run, at stride 1, in a process of its own, so that every
peak memory figure (the process's peak RSS on a CPU, CUDA's peak allocation on a GPU) is its
own. The VDM denoises in its default windows (AnimateDiff: 16 frames, neighbours sharing at least 4),
so time should grow about linearly in the frames and peak memory stay near the one-window run's.

A frame evaluation is one frame through one UNet call (classifier-free guidance counts twice).
Synthesis time is every stage of the run except loading the models and writing the outputs.

    python benchmarks/long_videos.py                     # tiny models on the CPU, a few minutes
    python benchmarks/long_videos.py --frames 8 16 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NOT_SYNTHESIS = ("loading models", "writing")


def run_one(args, frames: int, video: Path, out: Path) -> dict:
    """One run of ``frames`` frames, in this process; the figures the table needs."""
    from vsynth.core.run.config import make_config
    from vsynth.core.run.pipeline import run

    options = {"noise": args.noise} if args.noise else {}
    config = make_config(
        dict(
            idm=args.idm, vdm=args.vdm, bridge=args.bridge, video=video, prompt=args.prompt, frames=frames, stride=1,
            height=args.size, width=args.size, steps=args.steps, seed=42, options=options, tiny=args.tiny,
            device=args.device, out=out,
        )
    )  # fmt: skip
    started = time.perf_counter()
    record = run(config).record
    seconds = time.perf_counter() - started
    timings = record["timings"]
    return {
        "frames": frames,
        "windows": len(record["windows"]),
        "run_seconds": round(seconds, 3),
        "synthesis_seconds": round(sum(s for stage, s in timings.items() if stage not in NOT_SYNTHESIS), 3),
        "frame_evals": record["frame_evals"],
        "frame_evals_per_frame": round(sum(record["frame_evals"].values()) / frames, 3),
        "peak_memory_mb": record["peak_memory_mb"],
        "peak_memory_source": record["peak_memory_source"],
    }


def in_subprocess(args, frames: int, video: Path, out: Path) -> dict:
    """``run_one`` in a fresh Python, so that its peak memory is its own."""
    settings = ["--idm", args.idm, "--vdm", args.vdm, "--bridge", args.bridge, "--prompt", args.prompt, "--size", str(args.size)]
    settings += ["--steps", str(args.steps), "--device", args.device, "--tiny" if args.tiny else "--no-tiny"]
    settings += ["--noise", args.noise] if args.noise else []
    command = [sys.executable, __file__, "--one", str(frames), "--video", str(video), "--out", str(out), *settings]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    if done.returncode != 0:
        raise RuntimeError(f"the {frames}-frame run failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(results: list[dict], one_window: dict) -> str:
    header = "| frames | windows | synthesis s | s / frame | frame evals / frame | peak memory MB | vs one window |"
    lines = [header, "|" + "---|" * 7]
    for r in results:
        lines.append(
            f"| {r['frames']} | {r['windows']} | {r['synthesis_seconds']:.1f} | {r['synthesis_seconds'] / r['frames']:.2f} "
            f"| {r['frame_evals_per_frame']:.2f} | {r['peak_memory_mb']:.0f} | {r['peak_memory_mb'] / one_window['peak_memory_mb']:.2f}x |"
        )
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    p.add_argument("--idm", default="controlnet-canny")
    p.add_argument("--vdm", default="animatediff")
    p.add_argument("--bridge", default="mixed-inversion")
    p.add_argument("--noise", choices=["independent", "freenoise"], help="the VDM's -o noise (default: the model's)")
    p.add_argument("--prompt", default="a red ball and a blue box")
    p.add_argument("--size", type=int, default=64, help="height and width (default 64)")
    p.add_argument("--steps", type=int, default=4, help="steps of both models (default 4)")
    p.add_argument("--tiny", action=argparse.BooleanOptionalAction, default=True, help="tiny offline models (default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one run, figures as JSON on stdout
    p.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return p


def main(argv=None) -> dict:
    args = parser().parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args, args.one, args.video, args.out)))
        return {}
    from vsynth.testing import write_sample_video

    with tempfile.TemporaryDirectory() as tmp:
        video = write_sample_video(Path(tmp) / "source.mp4", frames=max(args.frames), height=args.size, width=args.size)
        results = [in_subprocess(args, n, video, Path(tmp) / f"out-{n}") for n in sorted(args.frames)]
    one_window = max((r for r in results if r["windows"] == 1), key=lambda r: r["frames"], default=results[0])
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"{args.idm} + {args.vdm} ({args.bridge}), {args.size}x{args.size}, {args.steps} steps, stride 1; {machine}; {time.strftime('%Y-%m-%d')}")
    print(table(results, one_window))
    figures = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in ("json", "one", "video", "out")},
        "machine": machine,
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
