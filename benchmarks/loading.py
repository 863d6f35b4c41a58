"""Loading real checkpoint layouts: seconds to load the models and the run's peak RSS, per combination.

Each combination runs ``vsynth run`` (2 frames, 64x64, one step) in a process of its own on an
offline fake hub cache (:mod:`vsynth.testing.fake_hub`: the real layouts, file names and configs,
random weights), as a user with downloaded weights on a machine that cannot reach the hub meets
it: every file cached, ``HF_HUB_OFFLINE`` unset, an endpoint that refuses connections
(``HF_ENDPOINT=http://127.0.0.1:9``); ``--offline-switch`` sets ``HF_HUB_OFFLINE=1`` instead, to
measure loading apart from any network wait. ``--code DIR`` runs another checkout of vsynth (say the
commit before a change) against the same cache, for a before/after table; ``--timeout`` caps a run
that retries requests.

``--load-only DTYPE`` loads each VDM alone (with its SD1.5 base) in that dtype on the CPU instead, in a
process of its own, and touches every weight: float16 reads what a GPU user's run reads. Its peak
RSS counts the weights that stay memory-mapped from their files as well as copies, so it also
reports the peak of anonymous memory (copies and casts, sampled every 20 ms) and the weights' size.

``--scale full`` runs the combinations a full-size cache of SD1.5, ControlNet canny and the four
VDMs holds (real sizes: 10-16 GB of RAM per run), on an existing cache given with ``--cache``; it
never builds one (``build_fake_hub(cache, repos, scale="full", precision="both")`` does, 35 GB).

    python benchmarks/loading.py                                 # reduced scale, a minute or two
    python benchmarks/loading.py --code /tmp/vsynth-before --timeout 120
    flock /work/fullsize.lock python benchmarks/loading.py --scale full --cache /work/fullhub
    flock /work/fullsize.lock python benchmarks/loading.py --scale full --cache /work/fullhub --load-only float16
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
VDMS = ("zeroscope", "modelscope", "animatediff", "animatediff-lightning")
FULL_COMBINATIONS = {
    f"controlnet-canny + {vdm}": ["--idm", "controlnet-canny", "--vdm", vdm, *VIDEO]
    + (["-o", "vdm.checkpoint_steps=1"] if vdm == "animatediff-lightning" else [])
    for vdm in VDMS
}
FULL_REPOS = [
    "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "lllyasviel/control_v11p_sd15_canny",
    "cerspense/zeroscope_v2_576w",
    "ali-vilab/text-to-video-ms-1.7b",
    "guoyww/animatediff-motion-adapter-v1-5-2",
    "ByteDance/AnimateDiff-Lightning",
]
# Run in a fresh process by --load-only: peak RSS, peak anonymous RSS (sampled) and the loaded weights' size, in MB.
LOAD_ONLY = """
import json, sys, threading, time
import torch
from vsynth.core.diffusion.inputs import Runtime
from vsynth.core.host.registry import get_registry

def status(key):
    return next(int(line.split()[1]) // 1024 for line in open("/proc/self/status") if line.startswith(key + ":"))

peak_anon, done = [status("RssAnon")], threading.Event()
def sample():
    while not done.wait(0.02):
        peak_anon[0] = max(peak_anon[0], status("RssAnon"))
threading.Thread(target=sample, daemon=True).start()
name, dtype = sys.argv[1], getattr(torch, sys.argv[2])
spec = get_registry().model(name)
params = spec.params.model_validate({"checkpoint_steps": 1} if name == "animatediff-lightning" else {})
start = time.monotonic()
model = spec.load_impl().load(spec, params, {w.role: w.id for w in spec.weights}, Runtime(torch.device("cpu"), dtype))
seconds = time.monotonic() - start
modules = (model.denoiser.unet, model.denoiser.text_encoder, model.codec.vae)
for tensor in (t for m in modules for t in m.state_dict().values()):
    tensor.float().sum()  # a run reads every weight: memory-mapped ones become resident
done.set()
print(json.dumps({"loading_s": round(seconds, 1), "peak_rss_mb": status("VmHWM"), "peak_anon_mb": max(peak_anon[0], status("RssAnon")),
                  "weights_mb": sum(t.numel() * t.element_size() for m in modules for t in m.state_dict().values()) // 2**20}))
"""
REPOS = [
    "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "lllyasviel/control_v11p_sd15_canny",
    "guoyww/animatediff-motion-adapter-v1-5-2",
    "TencentARC/t2iadapter_canny_sd15v2",
    "ByteDance/AnimateDiff-Lightning",
    "timbrooks/instruct-pix2pix",
    "stable-diffusion-v1-5/stable-diffusion-inpainting",
    "cerspense/zeroscope_v2_576w",
    "ali-vilab/text-to-video-ms-1.7b",  # for --load-only
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
        # cwd: `python -c` puts the current directory first on sys.path, before PYTHONPATH: run in the checkout measured.
        run = subprocess.run(command, env=env, cwd=code, capture_output=True, text=True, timeout=timeout)
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


def measure_load(code: Path, cache: Path, name: str, dtype: str, timeout: float) -> dict:
    """Load one VDM alone in a fresh process, from the cache with HF_HUB_OFFLINE=1 (the network is not measured here)."""
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    try:
        run = subprocess.run([sys.executable, "-c", LOAD_ONLY, name, dtype], env=env, cwd=code, capture_output=True, text=True,
                             timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"status": f"still loading after {timeout:g} s"}
    if run.returncode != 0:
        return {"status": (run.stderr.strip().splitlines() or ["failed"])[-1][:120]}
    return {"status": "ok", **json.loads(run.stdout.strip().splitlines()[-1])}


def print_table(rows: dict[str, dict], first: str, columns: list[tuple[str, str]]) -> None:
    """A Markdown table: one row per name, the given (header, key) columns (blank where missing), then the status."""
    print("| " + " | ".join([first, *(header for header, _ in columns), "status"]) + " |")
    print("|" + "---|" * (len(columns) + 2))
    for name, row in rows.items():
        print("| " + " | ".join([name, *(str(row.get(key, "")) for _, key in columns), row["status"]]) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", type=Path, default=Path(__file__).parents[1], help="the vsynth checkout to run")
    parser.add_argument("--cache", type=Path, help="fake hub cache to build or reuse (default: a temporary one); "
                        "with --scale full, an existing full-size cache")
    parser.add_argument("--scale", choices=("reduced", "full"), default="reduced", help="the fake cache's scale")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a run counts as stuck")
    parser.add_argument("--offline-switch", action="store_true", help="set HF_HUB_OFFLINE=1 for the runs")
    parser.add_argument("--load-only", metavar="DTYPE", choices=("float16", "float32"),
                        help="load each VDM alone in DTYPE instead of running the combinations")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    args.code = args.code.resolve()

    from vsynth.testing import write_sample_video
    from vsynth.testing.fake_hub import build_fake_hub, snapshot_dir

    combinations = FULL_COMBINATIONS if args.scale == "full" else COMBINATIONS
    with tempfile.TemporaryDirectory() as tmp:
        if args.scale == "full":
            missing = [r for r in FULL_REPOS if args.cache is None or not snapshot_dir(args.cache, r, "full").is_dir()]
            if missing:
                parser.error(f"--scale full needs --cache with an existing full-size cache of {', '.join(missing)}")
            cache = args.cache
        else:
            cache = build_fake_hub(args.cache or Path(tmp) / "hub", REPOS)
        if args.load_only:
            rows = {vdm: measure_load(args.code, cache, vdm, args.load_only, args.timeout) for vdm in VDMS}
            print(f"code: {args.code}; scale: {args.scale}; each VDM alone in {args.load_only}, every weight touched")
            print_table(rows, "VDM", [("loading s", "loading_s"), ("peak RSS MB", "peak_rss_mb"), ("peak anonymous MB", "peak_anon_mb"),
                                      ("weights MB", "weights_mb")])  # fmt: skip
            if args.json:
                args.json.write_text(json.dumps(rows, indent=2) + "\n")
            return
        video = write_sample_video(Path(tmp) / "in.mp4", frames=2)
        rows = {name: measure(args.code, cache, video, combo, Path(tmp) / f"out{i}", args.timeout, args.offline_switch)
                for i, (name, combo) in enumerate(combinations.items())}  # fmt: skip
    print(f"code: {args.code}; scale: {args.scale}; HF_HUB_OFFLINE={'1' if args.offline_switch else 'unset'}")
    print_table(rows, "combination", [("loading s", "loading_s"), ("wall s", "wall_s"), ("peak RSS MB", "peak_rss_mb"),
                                      ("retry / unreachable lines", "noise_lines")])  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
