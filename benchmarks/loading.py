"""Loading real checkpoint layouts: seconds to load the models and the run's peak RSS, per combination.

Each combination runs ``vsynth run`` (2 frames, 64x64, one step) in a process of its own on an
offline fake hub cache (:mod:`vsynth.testing.fake_hub`: the real layouts, file names and configs,
random weights), as a user with downloaded weights on a machine that cannot reach the hub meets
it: every file cached, ``HF_HUB_OFFLINE`` unset, an endpoint that refuses connections
(``HF_ENDPOINT=http://127.0.0.1:9``); ``--offline-switch`` sets ``HF_HUB_OFFLINE=1`` instead, to
measure loading apart from any network wait. ``--code DIR`` runs another checkout of vsynth (say the
commit before a change) against the same cache, for a before/after table; ``--timeout`` caps a run
that retries requests.

    python benchmarks/loading.py                                 # reduced scale, a minute or two
    python benchmarks/loading.py --code /tmp/vsynth-before --timeout 120
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VIDEO = ["--video", "{video}"]
COMBINATIONS = {
    "lightning alone (text-to-video)": ["--vdm", "animatediff-lightning", "-o", "checkpoint_steps=1"],
    "controlnet-canny + animatediff": ["--idm", "controlnet-canny", "--vdm", "animatediff", *VIDEO],
    "t2i-adapter-canny + lightning": ["--idm", "t2i-adapter-canny", "--vdm", "animatediff-lightning", "-o", "vdm.checkpoint_steps=1",
                                      *VIDEO],  # fmt: skip
    "instruct-pix2pix + lightning, idm-only": ["--idm", "instruct-pix2pix", "--vdm", "animatediff-lightning", "--bridge", "idm-only",
                                               "-o", "vdm.checkpoint_steps=1", "-o", "bridge.strength=1", *VIDEO],  # fmt: skip
    "sd-inpaint + zeroscope": ["--idm", "sd-inpaint", "--vdm", "zeroscope", "--outpaint", "horizontal", *VIDEO],
}
REPOS = [
    "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "lllyasviel/control_v11p_sd15_canny",
    "guoyww/animatediff-motion-adapter-v1-5-2",
    "TencentARC/t2iadapter_canny_sd15v2",
    "ByteDance/AnimateDiff-Lightning",
    "timbrooks/instruct-pix2pix",
    "stable-diffusion-v1-5/stable-diffusion-inpainting",
    "cerspense/zeroscope_v2_576w",
]


def measure(code: Path, cache: Path, video: Path, args: list[str], out: Path, timeout: float, switch: bool) -> dict:
    """One run in a fresh process: loading seconds and peak RSS from its run.json, or how it ended."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HUB_CACHE=str(cache), HF_ENDPOINT="http://127.0.0.1:9", PYTHONPATH=str(code), OMP_NUM_THREADS="1")
    if switch:
        env["HF_HUB_OFFLINE"] = "1"
    command = [sys.executable, "-c", "from vsynth.cli import main; main()", "run", *(a.format(video=video) for a in args), "--prompt", "a ball",
               "--frames", "2", "--stride", "1", "--steps", "1", "--height", "64", "--width", "64", "--device", "cpu",
               "--out", str(out), "--quiet"]  # fmt: skip
    start = time.monotonic()
    try:
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"still loading after {timeout:g} s"}
    if run.returncode != 0:
        return {"status": (run.stderr.strip().splitlines() or ["failed"])[-1][:120]}
    record = json.loads((out / "run.json").read_text())
    noise = sum(line.startswith(("Retrying", "Could not reach")) for line in (run.stdout + run.stderr).splitlines())
    return {
        "status": "ok",
        "loading_s": record["timings"]["loading models"],
        "wall_s": round(time.monotonic() - start, 1),
        "peak_rss_mb": record["peak_memory_mb"],
        "noise_lines": noise,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", type=Path, default=Path(__file__).parents[1], help="the vsynth checkout to run")
    parser.add_argument("--cache", type=Path, help="fake hub cache to build or reuse (default: a temporary one)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a run counts as stuck")
    parser.add_argument("--offline-switch", action="store_true", help="set HF_HUB_OFFLINE=1 for the runs")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    from vsynth.testing import write_sample_video
    from vsynth.testing.fake_hub import build_fake_hub

    with tempfile.TemporaryDirectory() as tmp:
        cache = build_fake_hub(args.cache or Path(tmp) / "hub", REPOS)
        video = write_sample_video(Path(tmp) / "in.mp4", frames=2)
        rows = {name: measure(args.code, cache, video, combo, Path(tmp) / f"out{i}", args.timeout, args.offline_switch)
                for i, (name, combo) in enumerate(COMBINATIONS.items())}  # fmt: skip
    print(f"code: {args.code}; HF_HUB_OFFLINE={'1' if args.offline_switch else 'unset'}")
    print("| combination | loading s | wall s | peak RSS MB | retry / unreachable lines | status |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row.get('loading_s', '')} | {row.get('wall_s', '')} | {row.get('peak_rss_mb', '')} "
              f"| {row.get('noise_lines', '')} | {row['status']} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
