"""Real scale: the default checkpoints' full-size architectures (random weights), measured per stage.

Loads controlnet-canny (SD1.5 + ControlNet), ZeroScope and AnimateDiff through vsynth's own loaders
from a full-size offline fake hub cache (:mod:`vsynth.testing.fake_hub`: real layouts and configs,
random weights), on the device and dtype a run would pick (``--device``/``--dtype`` as ``vsynth
run`` takes them: CUDA in float16 when there is one, else CPU in float32), and times each network
per size (the fastest of ``--repeat`` evaluations, after a warm-up), as seconds per frame: the
SD1.5 UNet and the ControlNet on a batch of frames, the video UNets on a clip, the VAE decoding
frames. No classifier-free guidance: a guided step costs two evaluations.

Memory: on CUDA, ``torch.cuda.max_memory_allocated`` per stage; on CPU, the process's peak resident
set (VmHWM, reset before each stage through ``/proc/self/clear_refs``). Each peak holds the models
loaded at that point: the IDM and ZeroScope, then the IDM and AnimateDiff (ZeroScope freed
first), whose motion UNet holds the IDM's SD1.5 UNet weights rather than a copy. Loading includes
the run's check that the UNets' and VAE's weights are finite, which reads them; on a CPU, weights
read from safetensors files are memory-mapped, so the rest (the ControlNet, the text encoders)
joins the resident set at its first evaluation.

    python benchmarks/real_scale.py --cache DIR                    # CPU: about 8 minutes
    python benchmarks/real_scale.py --cache DIR --sizes 512x512x8  # a GPU: the same table
    python benchmarks/real_scale.py --family wan --sizes 64x64x5 128x128x5  # Wan 2.1 1.3B

``--family wan`` loads wan2.1-t2v-1.3b through vsynth's loader from a local folder with its real
transformer (1.42 B parameters) and VAE (:func:`vsynth.testing.fake_hub.write_wan_folder`; UMT5-XXL
cut to 2 layers, since the whole encoder, 22.7 GB in float32, does not fit a 24 GB machine beside
them; it runs once per prompt and leaves the GPU before the transformer runs), and times one
transformer evaluation on the clip (frames 1 + 4k) and the VAE decoding it. ``--wan-folder``
reuses a folder written before.

``--cache`` (default: ``$VSYNTH_FULL_HUB``) names a full-size cache holding :data:`REPOS`; without
one, it is built in a temporary folder first (about 3 minutes and 15 GB of disk).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import tempfile
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path

REPOS = [
    "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "lllyasviel/control_v11p_sd15_canny",
    "cerspense/zeroscope_v2_576w",
    "guoyww/animatediff-motion-adapter-v1-5-2",
]


class Memory:
    """Peak and current memory in MiB on one device: CUDA allocations, else the process's resident set."""

    def __init__(self, device):
        import torch

        self.torch, self.device = torch, device
        self.cuda = device.type == "cuda"

    def reset_peak(self) -> None:
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats(self.device)
        else:
            Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM back to VmRSS

    def peak(self) -> float:
        return self.torch.cuda.max_memory_allocated(self.device) / 2**20 if self.cuda else self._status("VmHWM")

    def current(self) -> float:
        return self.torch.cuda.memory_allocated(self.device) / 2**20 if self.cuda else self._status("VmRSS")

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    @staticmethod
    def _status(field: str) -> float:
        line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))
        return int(line.split()[1]) / 1024


@contextmanager
def stage(memory: Memory, row: dict):
    """Fill ``row`` with the block's seconds and peak memory (MiB)."""
    gc.collect()
    memory.sync()
    memory.reset_peak()
    start = time.perf_counter()
    yield
    memory.sync()
    row.update(seconds=time.perf_counter() - start, peak_mb=memory.peak())


def load_model(name: str, role: str, runtime, weights: str | None = None):
    """A registered model on its default hub weights (or ``weights``, as --idm/--vdm-weights), loaded and checked as
    ``vsynth run``'s loading stage does."""
    from vsynth.core.diffusion.weights import resolve_sources
    from vsynth.core.host.registry import get_registry
    from vsynth.core.run.pipeline import _check_weights_finite

    spec = get_registry().model(name)
    params, sources = spec.params.model_validate({}), resolve_sources(spec, weights, {}, tiny=False)
    model = spec.load_impl().load(spec, params, sources, runtime)
    _check_weights_finite(role, model, sources)
    return model


def networks(idm, vdm_name: str, vdm, runtime, height: int, width: int, frames: int) -> dict:
    """One evaluation of each network at this size, by row label: callables on random inputs."""
    import torch

    h, w = height // 8, width // 8
    options = {"device": runtime.device, "dtype": runtime.dtype}
    t = torch.tensor(500, device=runtime.device)
    unet, controlnet, vae = idm.denoiser.unet, idm.denoiser.controlnet, idm.codec.vae
    frame_latents = torch.randn(frames, 4, h, w, **options)
    text = torch.randn(frames, 77, unet.config.cross_attention_dim, **options)
    control = torch.rand(frames, 3, height, width, **options)
    rows = {}
    if vdm_name == "zeroscope":
        rows["SD1.5 UNet (IDM)"] = lambda: unet(frame_latents, t, encoder_hidden_states=text)
        rows["ControlNet"] = lambda: controlnet(frame_latents, t, encoder_hidden_states=text, controlnet_cond=control)
        rows["VAE decode"] = lambda: vae.decode(frame_latents / vae.config.scaling_factor)
        clip = torch.randn(1, 4, frames, h, w, **options)
        clip_text = torch.randn(1, 77, vdm.denoiser.unet.config.cross_attention_dim, **options)
        rows["ZeroScope UNet3D"] = lambda: vdm.denoiser.unet(clip, t, encoder_hidden_states=clip_text)
    else:
        rows["AnimateDiff motion UNet"] = lambda: vdm.denoiser.unet(frame_latents[None].transpose(1, 2), t, encoder_hidden_states=text)
    return rows


def measure(runtime, memory: Memory, sizes: list[tuple[int, int, int]], repeat: int) -> tuple[list[dict], list[dict]]:
    """Load rows and per-network rows, in the order they ran."""
    loads, evals = [], []
    row = {"model": "controlnet-canny (SD1.5 UNet, ControlNet, VAE, text encoder)"}
    with stage(memory, row):
        idm = load_model("controlnet-canny", "idm", runtime)
    loads.append({**row, "held_mb": memory.current()})
    for vdm_name, what in (("zeroscope", "UNet3D, VAE, text encoder"), ("animatediff", "motion adapter on the IDM's SD1.5")):
        gc.collect()
        before = memory.current()
        row = {"model": f"{vdm_name} ({what})"}
        with stage(memory, row):
            vdm = load_model(vdm_name, "vdm", runtime)
        loads.append({**row, "held_mb": memory.current(), "added_mb": memory.current() - before})
        evals += evaluate_networks(idm, vdm_name, vdm, runtime, memory, sizes, repeat)
        del vdm  # before the next VDM loads
    return loads, evals


def evaluate_networks(idm, vdm_name: str, vdm, runtime, memory: Memory, sizes, repeat: int) -> list[dict]:
    """The fastest of ``repeat`` evaluations of each network per size, after one untimed warm-up each."""
    import torch

    rows, warmed = [], set()
    with torch.inference_mode():
        for height, width, frames in sizes:
            evaluations = networks(idm, vdm_name, vdm, runtime, height, width, frames)
            rows += time_evaluations(evaluations, memory, repeat, warmed, f"{height}x{width}", frames)
    return rows


def time_evaluations(evaluations: dict, memory: Memory, repeat: int, warmed: set, size: str, frames: int) -> list[dict]:
    """One row per network: the fastest of ``repeat`` timed evaluations, per frame, and their peak memory; a network's
    first call (``warmed`` remembers which ran) is an untimed warm-up: it pays one-off costs (allocator, kernels,
    reading mapped weights)."""
    rows = []
    for label, evaluate in evaluations.items():
        if label not in warmed:
            evaluate()
            warmed.add(label)
        runs = []
        for _ in range(repeat):
            run = {}
            with stage(memory, run):
                evaluate()
            runs.append(run)
        seconds, peak = min(r["seconds"] for r in runs), max(r["peak_mb"] for r in runs)
        rows.append({"network": label, "size": size, "frames": frames, "per_frame_s": seconds / frames, "peak_mb": peak})
    return rows


def print_tables(loads: list[dict], evals: list[dict], header: str) -> None:
    print(header)
    print()
    print("| loaded | seconds | peak MiB while loading | held MiB after | added MiB |")
    print("|---|---|---|---|---|")
    for row in loads:
        added = f"{row['added_mb']:.0f}" if "added_mb" in row else ""
        print(f"| {row['model']} | {row['seconds']:.1f} | {row['peak_mb']:.0f} | {row['held_mb']:.0f} | {added} |")
    print()
    print("| network | size | frames | seconds per frame | peak MiB |")
    print("|---|---|---|---|---|")
    for row in evals:
        print(f"| {row['network']} | {row['size']} | {row['frames']} | {row['per_frame_s']:.2f} | {row['peak_mb']:.0f} |")


def measure_wan(runtime, memory: Memory, sizes: list[tuple[int, int, int]], repeat: int, folder: Path) -> tuple[list[dict], list[dict]]:
    """Wan 2.1 1.3B's load, then its transformer and VAE per size, as :func:`measure` does for the UNet models."""
    import torch

    row = {"model": "wan2.1-t2v-1.3b (transformer, VAE; UMT5 cut to 2 layers)"}
    with stage(memory, row):
        model = load_model("wan2.1-t2v-1.3b", "vdm", runtime, str(folder))
    loads = [{**row, "held_mb": memory.current()}]
    transformer, vae = model.wan.unet, model.codec.vae
    options = {"device": runtime.device, "dtype": runtime.dtype}
    text = torch.randn(1, 512, transformer.config.text_dim, **options)
    rows, warmed = [], set()
    with torch.inference_mode():
        for height, width, frames in sizes:
            latents = torch.randn(1, 16, (frames - 1) // 4 + 1, height // 8, width // 8, **options)
            t = torch.tensor([500.0], device=runtime.device)
            evaluations = {
                "Wan 2.1 1.3B transformer": lambda: transformer(latents, t, text, return_dict=False),
                "Wan VAE decode": lambda: vae.decode(latents.to(vae.dtype), return_dict=False),
            }
            rows += time_evaluations(evaluations, memory, repeat, warmed, f"{height}x{width}", frames)
    return loads, rows


def _size(text: str) -> tuple[int, int, int]:
    height, width, frames = (int(part) for part in text.lower().split("x"))
    return height, width, frames


def main(argv: list[str] | None = None) -> dict:
    """Measure, print the tables, and return their rows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=os.environ.get("VSYNTH_FULL_HUB"), help="full-size fake hub cache (default: $VSYNTH_FULL_HUB, else built in a temporary folder)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (as vsynth run --device)")
    parser.add_argument("--dtype", default="auto", help="auto, float16, bfloat16 or float32 (as vsynth run --dtype)")
    parser.add_argument("--family", choices=("sd", "wan"), default="sd", help="sd: SD1.5 + ControlNet, ZeroScope, AnimateDiff; wan: Wan 2.1 1.3B")
    parser.add_argument("--wan-folder", type=Path, help="with --family wan: a folder write_wan_folder wrote before (default: written in a temporary folder)")
    parser.add_argument("--repeat", type=int, default=2, help="timed evaluations per network and size; the fastest is reported")
    parser.add_argument("--sizes", nargs="+", type=_size, default=[(64, 64, 2), (256, 256, 2), (256, 256, 4)], metavar="HxWxF",
                        help="height x width x frames of each measured size (default: 64x64x2 256x256x2 256x256x4)")  # fmt: skip
    args = parser.parse_args(argv)

    import torch

    from vsynth.core.diffusion.inputs import Runtime
    from vsynth.core.run import validate
    from vsynth.core.run.progress import library_progress_bars, quiet_library_fallbacks
    from vsynth.testing.fake_hub import build_fake_hub, offline_hub

    validate.check_device(args.device)
    device = validate.resolve_device(args.device)
    dtype = validate.resolve_dtype(args.dtype, device)
    validate.check_precision(dtype, "none", device)
    runtime = Runtime(torch.device(device), getattr(torch, dtype))
    memory = Memory(runtime.device)
    with tempfile.TemporaryDirectory() as tmp:
        if args.family == "wan":
            from vsynth.testing.fake_hub import write_wan_folder

            folder = args.wan_folder if args.wan_folder and args.wan_folder.is_dir() else write_wan_folder(args.wan_folder or Path(tmp) / "wan")
            with library_progress_bars(False), quiet_library_fallbacks():
                loads, evals = measure_wan(runtime, memory, args.sizes, args.repeat, folder)
        else:
            cache = args.cache or build_fake_hub(Path(tmp) / "hub", REPOS, scale="full")
            with offline_hub(cache), library_progress_bars(False), quiet_library_fallbacks():
                loads, evals = measure(runtime, memory, args.sizes, args.repeat)
    where = torch.cuda.get_device_name(runtime.device) if runtime.device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)"
    peak = "CUDA max allocated" if memory.cuda else "peak RSS"
    print_tables(loads, evals, f"{date.today()}, {where}, {runtime.dtype}, torch {torch.__version__}; memory: {peak}")
    return {"loads": loads, "evals": evals}


if __name__ == "__main__":
    main()
