"""The memory planner: a run's peak memory on its device, estimated before any weights load.

    peak = weights on the device + the largest activations of one network call, times 1.1

**Weights**: the parameters of every file the run loads, read from the safetensors headers where
the files are on disk (a folder, the hub cache, the tiny models), else from their float32 sizes in
``vsynth/configs/layouts.json``, times the bytes of the run's dtype; a float16 VAE that diffusers
upcasts (``force_upcast``) and the depth estimator count 4 bytes. VAEs, text encoders and UNets
that models share (the same files) count once, as the loader holds them once. With ``--offload model``
only the largest unit (a UNet with its ControlNet or adapter; a text encoder; a VAE) is on the
device; with ``sequential`` only its largest weight tensor; with ``group`` the largest block of a network (a
top-level ``name.N`` module in its safetensors header, else its config's layers taken as equal) twice, the running
one and the next, prefetched, plus what lies outside its blocks. ``--quantize`` counts a denoising network's linear
weights (2-D ``.weight`` tensors in its header; every parameter where it is not on disk) at the scheme's bytes.

**Activations**: ``K * C * N * h * w * bytes``: N frames in one call (the IDM's ``batch_size`` or
every frame, the VDM's window; times 2 under classifier-free guidance, 3 for InstructPix2Pix),
``h * w`` the latent size, C the channels of the network's first block (320 for the real UNets,
128 for their VAEs). K, in elements per latent pixel and frame per channel, was measured by
counting the live tensors of one forward on the real architectures (built from ``vsynth/configs``
on PyTorch's meta device, attention as a fused kernel, which never holds the attention matrix):
UNet2DConditionModel 26.0, UNetMotionModel 26.2, UNet3DConditionModel 33.3, UNet2D with a
ControlNet 33.4, exactly linear in N, h and w; the VAE's decoder 480 and encoder 386 (per latent
pixel, frames at full size). The factor 1.1 covers the allocator's fragmentation and workspaces.

LTX-Video's VAE decodes the whole clip at once: 64 elements per output pixel and frame (58.5-63.6 measured the
same way on its real config), and its transformer (K 22.0-22.2) runs its classifier-free pair as one batch.

SDXL's UNet (measured the same way, from ``vsynth/configs``) has no attention in its first block:
18.4 at 512x512, 15.8 at 768 and 1024; with an SDXL ControlNet 23.8 and 21.5. It gets its own
bound, 24 (:data:`SDXL_UNET_K`), chosen by its ``text_time`` added conditions; its VAE is SD's
architecture (the same K), and its second text encoder is shared like the first.

A transformer IDM (FLUX) holds ``FLUX_K * D * N * tokens * bytes`` at once instead: D its
hidden width (heads times head width), tokens per frame its image tokens (h * w / 4 latent pixels;
twice that with Kontext's reference tokens) plus its text tokens; K was measured the same way on
FLUX.1's transformer (11.9 B parameters, 3072 wide): 30.2 at 512x512 and 23.5 at 1024x1024 for one
frame, 25.1 and 21.8 for two (a per-call overhead amortised over frames). A distilled-guidance model
makes one evaluation per step, so its copies are 1 whatever ``--guidance`` says. Weights that ship in
shards count every shard; where none is on disk, the parameter counts layouts.json records
(measured on the meta device from the real configs) are used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from vsynth.core.diffusion.weights import cached_snapshot
from vsynth.core.host.specs import ModelSpec, Params
from vsynth.errors import InsufficientMemoryError

GIB = 2**30
MARGIN = 1.1
UNET_K = 34  # the largest of the UNet families measured (UNet3D, UNet2D + ControlNet), as one bound for all
SDXL_UNET_K = 24  # SDXL's UNet, alone or with a ControlNet (see the module docstring)
# Transformers (Wan, FLUX): K elements per token and hidden unit, measured for Wan's blocks by benchmarks/activation_k.py
# (1.3B 22.9-23.4, 14B 14.2-19.1); classifier-free guidance runs its two passes one after the other (WanPipeline).
TRANSFORMER_K = 24
FLUX_K = 31  # FLUX.1's transformer, measured as above: the largest (one 512x512 frame), as a bound
VAE_DECODE_K = 480
LTX_VAE_DECODE_K = 64  # LTX-Video's VAE decoder, elements per output pixel and frame: 58.5-63.6 (benchmarks/ltx_activation_k.py)
VAE_ENCODE_K = 390
ENCODE_BATCH = 8  # frames a VaeCodec encodes at once
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
CONFIGS = Path(__file__).parents[2] / "configs"
WEIGHT_SUFFIXES = (".safetensors", ".bin")
INDEX_SUFFIX = ".index.json"  # a shard index: the weights are the files it names
SHARED = ("vae", "text_encoder", "text_encoder_2")  # components the loader holds once for every model on the same files


@dataclass
class Part:
    """The parameters of one weights file, and where they sit."""

    key: str  # what the file is (shared components: the file itself; others: per model)
    unit: str  # what --offload model moves together
    elements: int
    bytes_per: int
    largest: int  # elements of its largest tensor (0 when unknown)
    quantized: int = 0  # elements --quantize stores at quantized_bytes each (a network's linear weights)
    quantized_bytes: float = 0.0
    group: int = 0  # elements on the device at once under --offload group (0: unknown, twice the largest tensor)

    @property
    def bytes(self) -> int:
        return int((self.elements - self.quantized) * self.bytes_per + self.quantized * self.quantized_bytes)

    @property
    def group_bytes(self) -> int:
        """Bytes on the device at once with --offload group: the block running and the next, prefetched."""
        per = self.bytes / self.elements if self.elements else self.bytes_per
        return int((self.group or 2 * self.largest) * per)


@dataclass
class MemoryEstimate:
    """A run's estimated peak memory by offload mode, in bytes, and the device's free memory."""

    device: str
    offload: str
    weights: int  # all weights, as they sit on the device without offload
    activations: int
    peaks: dict[str, int]  # by offload mode
    free: int | None  # None: unknown (then nothing is checked)
    free_source: str
    parts: list[Part] = field(default_factory=list, repr=False)
    vae_batch: int | None = None  # frames the VAEs encode and decode at once, when lowered to fit

    @property
    def peak(self) -> int:
        return self.peaks[self.offload]

    @property
    def fits(self) -> bool:
        return self.free is None or self.peak <= self.free

    def record(self) -> dict:
        """What run.json says, in MiB."""
        return {
            "estimated_peak_mb": _mib(self.peak),
            "weights_mb": _mib(self.weights),
            "activations_mb": _mib(self.activations),
            "estimated_peak_by_offload_mb": {mode: _mib(b) for mode, b in self.peaks.items()},
            "free_mb": None if self.free is None else _mib(self.free),
            "free_source": self.free_source,
            "vae_batch": self.vae_batch,
        }


def _mib(value: int) -> float:
    return round(value / 2**20, 1)


def _gib(value: int) -> float:
    return round(value / GIB, 2)


def estimate(
    models: dict[str, ModelSpec],
    sources: dict[str, dict[str, str]],
    params: dict[str, Params],
    *,
    frames: int,
    height: int,
    width: int,
    guidance: dict[str, float],
    dtype: str,
    device: str,
    offload: str,
    vae_batch: int | None = None,
    quantize: str = "none",
) -> MemoryEstimate:
    """The estimate of a planned run; ``guidance`` by model role; nothing is loaded.

    ``vae_batch`` caps the frames every VAE encodes and decodes at once (see :func:`fit_vae_batch`).
    """
    size = DTYPE_BYTES[dtype]
    parts: dict[str, Part] = {}
    units: dict[str, dict[str, int]] = {}  # what --offload model moves together: bytes by part key
    activations = 0
    for role, spec in models.items():
        options = params[role].model_dump()
        folders = {w.role: _folder(sources[role][w.role]) for w in spec.weights if w.role in sources[role]}
        single = sources[role].get("gguf")  # a GGUF transformer: its file's bytes, instead of the folder's transformer
        if single:
            parts[single] = Part(single, f"{role}.unet", Path(single).stat().st_size, 1, 0)
            units.setdefault(f"{role}.unet", {})[single] = parts[single].bytes
        for weights in spec.weights:
            if weights.role not in sources[role]:
                continue
            for part in _parts(role, weights, sources[role][weights.role], folders[weights.role], options, size, quantize):
                if single and "transformer/" in part.key:
                    continue
                kept = parts.setdefault(part.key, part)
                # a shared VAE or text encoder is hooked once, in its first unit; a UNet file shared by tensor
                # is in every unit whose UNet holds it
                unit = kept.unit if part.unit.partition(".")[2] in SHARED else part.unit
                units.setdefault(unit, {})[part.key] = part.bytes
        unet = _config(folders, sources[role], "unet")
        vae = _config(folders, sources[role], "vae")
        transformer = _config(folders, sources[role], "transformer") if spec.architecture == "transformer" else None
        if transformer and not transformer.get("_class_name", "").startswith("Flux"):  # video transformers (Wan)
            # LTXPipeline and CogVideoXPipeline run their classifier-free pair as one batch (Wan's passes run one after the other)
            batch = 2 if transformer.get("_class_name") in _CFG_BATCHED and guidance[role] > 1 else 1
            activations = max(activations, batch * _transformer_activations(spec, params[role], transformer, frames, height, width, size))
        else:
            activations = max(activations, _unet_activations(spec, params[role], unet, vae, frames, height, width, guidance[role], size,
                                                             transformer))  # fmt: skip
        activations = max(activations, _vae_activations(params[role], vae, frames, height, width, dtype, vae_batch))
    weights = sum(p.bytes for p in parts.values())
    largest = max((p.largest * p.bytes_per for p in parts.values()), default=0)
    peaks = {
        "none": int((weights + activations) * MARGIN),
        "model": int((max((sum(unit.values()) for unit in units.values()), default=0) + activations) * MARGIN),
        "sequential": int((largest + activations) * MARGIN),
        "group": int((max((p.group_bytes for p in parts.values()), default=0) + activations) * MARGIN),
    }
    free, source = free_memory(device)
    return MemoryEstimate(device, offload, weights, activations, peaks, free, source, list(parts.values()), vae_batch)


VAE_BATCHES = (4, 2, 1)


def fit_vae_batch(plan_estimate, first: MemoryEstimate) -> MemoryEstimate:
    """``first`` if it fits, else the estimate with the largest VAE batch in :data:`VAE_BATCHES` that
    fits (VAE slicing: frames are encoded and decoded independently, so only memory and speed change),
    else the one with a single frame at a time, for :func:`check_fits` to refuse.

    At 512x512 a VAE decoding 8 frames at once in float32 needs about 8 GiB, more than any UNet call:
    one frame at a time is what lets an 8 GB GPU run at all. ``plan_estimate(vae_batch)`` re-estimates.
    """
    estimate = first
    for batch in VAE_BATCHES:
        if estimate.fits:
            break
        estimate = plan_estimate(batch)
    return estimate


def check_fits(estimate: MemoryEstimate, options: tuple[str, ...] = ("batch_size",)) -> None:
    """Refuse, in one line, a run whose estimated peak exceeds the device's free memory, with what would fit;
    ``options`` are the run's params that lower it (an IDM's batch_size, a VDM's window)."""
    if estimate.free is None or estimate.peak <= estimate.free:
        return
    fixes = []
    if estimate.device != "cpu":
        fixes = [
            f"add --offload {mode} (about {_gib(estimate.peaks[mode]):g} GiB)"
            for mode in ("model", "group", "sequential")
            if mode in estimate.peaks
            if estimate.peaks[mode] < estimate.peak and estimate.peaks[mode] <= estimate.free
        ][:1]
    if estimate.free_source == ADDRESS_SPACE:
        fixes.insert(0, "raise this process's address-space limit (ulimit -v)")
    levers = ["--frames", "--height", "--width", *(f"-o {option}" for option in options)]
    fixes.append(f"lower {', '.join(levers[:-1])} or {levers[-1]}")
    raise InsufficientMemoryError(
        f"this run needs about {_gib(estimate.peak):g} GiB on {estimate.device} (weights {_gib(estimate.weights):g}, "
        f"activations {_gib(estimate.activations):g}) and {_gib(estimate.free):g} GiB are free: {', or '.join(fixes)}; "
        "or pass --no-memory-check to run anyway"
    )


def free_memory(device: str) -> tuple[int | None, str]:
    """Free bytes where the run computes: the GPU's free memory, the host's available memory for the CPU."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.mem_get_info(torch.device(device))[0], "torch.cuda.mem_get_info"
    if device == "cpu":
        return _host_available()
    return None, f"not measured on {device}"


ADDRESS_SPACE = "RLIMIT_AS headroom (ulimit -v)"


def _host_available() -> tuple[int | None, str]:
    """The host's available memory, or what the process may still map under ``ulimit -v`` when that is less:
    beyond RLIMIT_AS every allocation fails, however much memory the host has."""
    available, source = _mem_available()
    headroom = _address_space_headroom()
    if headroom is not None and (available is None or headroom < available):
        return headroom, ADDRESS_SPACE
    return available, source


def _address_space_headroom() -> int | None:
    """Bytes this process may still map under its soft RLIMIT_AS; None without a limit."""
    import resource

    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return None
    return max(0, limit - (address_space_used() or 0))


def address_space_used() -> int | None:
    """Bytes of address space this process maps (VmSize), which is what RLIMIT_AS limits; None where unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _mem_available() -> tuple[int | None, str]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free pages (sysconf)"
    except (ValueError, OSError, AttributeError):
        return None, "host memory not measured"


def _folder(source: str) -> Path | None:
    """A local folder or file, else the cached snapshot; None when the files are not on this machine."""
    path = Path(source).expanduser()
    return path if path.exists() else cached_snapshot(source)


NETWORKS = ("unet", "transformer", "transformer_2")  # what --quantize quantizes: the model's denoising networks


def _parts(role: str, weights, source: str, folder: Path | None, options: dict, size: int, quantize: str = "none") -> list[Part]:
    parts = []
    for entry in weights.files:
        alternatives = entry.format(**options).split("|")
        if not any(name.endswith(WEIGHT_SUFFIXES) or name.endswith(INDEX_SUFFIX) for name in alternatives):
            continue
        component = str(PurePosixPath(alternatives[0]).parent).replace(".", "")
        elements, largest, key = _count(source, folder, alternatives, component)
        if component in SHARED:
            unit = f"{role}.{component}"
        else:
            if component != "unet":  # UNets on the same files share their tensors (SD1.5 under AnimateDiff)
                key = f"{role}:{key}"
            unit = f"{role}.detector" if weights.role == "depth_estimator" else f"{role}.unet"
        per = 4 if weights.role == "depth_estimator" or (component == "vae" and size == 2 and _upcast(folder, source)) else size
        linear, group = _header_stats(key.removeprefix(f"{role}:"), component in SHARED)
        if not group and component in NETWORKS:  # not on disk: the network's blocks from its config, as if of equal size
            group = 2 * elements // _blocks(_config({weights.role: folder}, {weights.role: source}, component))
        part = Part(key, unit, elements, per, largest, group=group)
        if quantize != "none" and component in NETWORKS:
            from vsynth.core.diffusion.quantize import SCHEMES

            part.quantized = elements if linear is None else linear  # not on disk: every parameter, as an estimate
            part.quantized_bytes = SCHEMES[quantize].bytes_per_weight
        parts.append(part)
    return parts


def _blocks(config: dict) -> int:
    """How many blocks group offload moves a network in: a transformer's layers, a UNet's down, mid and up blocks."""
    layers = config.get("num_layers", 0) + config.get("num_single_layers", 0)
    return max(1, layers or len(config.get("down_block_types", ())) + len(config.get("up_block_types", ())) + 1)


def _header_stats(path: str, leaf_level: bool) -> tuple[int | None, int]:
    """(elements of linear weights, elements on the device at once under group offload) from the safetensors header(s) of
    ``path``, or (None, 0) when it is not a safetensors file on disk. Group offload moves a diffusers network block by
    block (a top-level ``name.N`` module: ``blocks.3``, ``down_blocks.1``) with what is outside the blocks, the running
    block and the next; a text encoder (``leaf_level``) layer by layer."""
    file = Path(path)
    if not file.is_file() or not (file.suffix == ".safetensors" or file.name.endswith(INDEX_SUFFIX)):
        return None, 0
    files = [file]
    if file.name.endswith(INDEX_SUFFIX):
        files = [file.parent / s for s in sorted(set(json.loads(file.read_text()).get("weight_map", {}).values()))]
    linear, blocks, rest, largest = 0, {}, 0, 0
    for shard in files:
        if not shard.is_file():
            continue
        with shard.open("rb") as handle:
            header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            count = _product(entry["shape"])
            largest = max(largest, count)
            linear += count if len(entry["shape"]) == 2 and name.endswith(".weight") else 0
            parts = name.split(".")
            if len(parts) > 2 and parts[1].isdigit():
                blocks[parts[0] + "." + parts[1]] = blocks.get(parts[0] + "." + parts[1], 0) + count
            else:
                rest += count
    if leaf_level:
        return linear, 2 * largest
    biggest = sorted(blocks.values(), reverse=True)[:2]
    return linear, rest + sum(biggest)


def _count(source: str, folder: Path | None, alternatives: list[str], component: str = "") -> tuple[int, int, str]:
    """(parameters, largest tensor, identity) of the file a loader reads: from its header (every shard's,
    for a shard index) when on disk, else from its size in layouts.json, else from the parameter count
    layouts.json records for the component."""
    if folder is not None and folder.is_file():
        return (*_read_counts(folder), str(folder.resolve()))
    for name in alternatives:
        path = folder / name if folder is not None else None
        if path is not None and path.is_file():
            return (*_read_counts(path), str(path.resolve()))
    layout = _layouts().get(source, {})
    files = layout.get("files", {})
    for name in alternatives:
        if isinstance(files.get(name), int):
            return files[name] // (2 if ".fp16." in name else 4), 0, f"{source}/{name}"
    counted = layout.get("parameters", {}).get(component)
    if counted:
        return counted["total"], counted["largest"], f"{source}/{alternatives[0]}"
    return 0, 0, f"{source}/{alternatives[0]}"


def _read_counts(path: Path) -> tuple[int, int]:
    """Parameters and the largest tensor's, from a safetensors header (every shard's, for a shard index); a .bin
    file's size over its element size."""
    if path.name.endswith(INDEX_SUFFIX):
        shards = sorted(set(json.loads(path.read_text()).get("weight_map", {}).values()))
        counts = [_read_counts(path.parent / shard) for shard in shards if (path.parent / shard).is_file()]
        return sum(c[0] for c in counts), max((c[1] for c in counts), default=0)
    if path.suffix != ".safetensors":
        return path.stat().st_size // (2 if ".fp16." in path.name else 4), 0
    with path.open("rb") as file:
        header = json.loads(file.read(int.from_bytes(file.read(8), "little")))
    counts = [_product(t["shape"]) for name, t in header.items() if name != "__metadata__"]
    return sum(counts), max(counts, default=0)


def _product(shape: list[int]) -> int:
    result = 1
    for n in shape:
        result *= n
    return result


_LAYOUTS: dict | None = None


def _layouts() -> dict:
    global _LAYOUTS
    if _LAYOUTS is None:
        _LAYOUTS = json.loads((CONFIGS / "layouts.json").read_text())
    return _LAYOUTS


def _config(folders: dict[str, Path | None], sources: dict[str, str], component: str) -> dict:
    """The config of ``component`` in the first of the model's weights that has one: on disk, else in vsynth/configs."""
    for role, folder in folders.items():
        candidates = [folder / component / "config.json"] if folder is not None and folder.is_dir() else []
        candidates.append(CONFIGS / sources[role].replace("/", "__") / component / "config.json")
        for path in candidates:
            if path.is_file():
                return json.loads(path.read_text())
    return {}


def _upcast(folder: Path | None, source: str) -> bool:
    return _config({"vae": folder}, {"vae": source}, "vae").get("force_upcast", True)


def _latent_pixels(vae: dict, height: int, width: int, tiled: bool = False) -> int:
    factor = 2 ** (len(vae.get("block_out_channels", (1, 2, 3, 4))) - 1)
    if tiled:
        tile = vae.get("sample_size", 512)
        height, width = min(height, tile), min(width, tile)
    return (height // factor) * (width // factor)


def _unet_activations(spec: ModelSpec, params: Params, unet: dict, vae: dict, frames: int, height: int, width: int,
                      guidance: float, size: int, transformer: dict | None = None) -> int:  # fmt: skip
    window = getattr(params, "window", None) if spec.kind == "vdm" else getattr(params, "batch_size", None)
    per_call = min(frames, window or frames)
    classifier_free = getattr(spec, "guidance", "classifier-free") == "classifier-free"
    copies = (3 if hasattr(params, "image_guidance") else 2) if guidance > 1 and classifier_free else 1
    if transformer and transformer.get("_class_name", "").startswith("Flux"):
        return _flux_activations(spec, params, transformer, vae, per_call * copies, height, width, size)
    channels = unet.get("block_out_channels", [320])[0]
    k = SDXL_UNET_K if unet.get("addition_embed_type") == "text_time" else UNET_K
    return k * channels * per_call * copies * _latent_pixels(vae, height, width) * size


# Video transformers whose pipeline runs the classifier-free pair as one batch.
_CFG_BATCHED = frozenset({"LTXVideoTransformer3DModel", "CogVideoXTransformer3DModel"})


def _transformer_activations(spec: ModelSpec, params: Params, transformer: dict, frames: int, height: int, width: int, size: int) -> int:
    """TRANSFORMER_K * tokens of one call * hidden width * bytes; tokens from the declared latent space and the patch size
    (CogVideoX: and its 226 text tokens, which it puts in the sequence)."""
    space = spec.latent_space
    patch = transformer.get("patch_size", 1)
    side = (patch[-1] if isinstance(patch, (list, tuple)) else patch) * space.packing
    if spec.kind == "vdm":
        window = getattr(params, "window", None)
        latent_frames = min(space.latent_frames(frames), window or frames)
    else:  # frame by frame, in batches
        latent_frames = min(frames, getattr(params, "batch_size", None) or frames)
    tokens = latent_frames * (height // space.spatial // side) * (width // space.spatial // side)
    hidden = transformer.get("num_attention_heads", 24) * transformer.get("attention_head_dim", 128)
    if transformer.get("_class_name") == "CogVideoXTransformer3DModel":
        tokens += transformer.get("max_text_seq_length", 0)
    return TRANSFORMER_K * tokens * hidden * size


def _flux_activations(spec: ModelSpec, params: Params, transformer: dict, vae: dict, frames: int, height: int, width: int,
                             size: int) -> int:  # fmt: skip
    """FLUX's transformer (where K was measured) over packed latents (2x2 per token) and its text tokens."""
    width_ = transformer["num_attention_heads"] * transformer.get("attention_head_dim", 128)
    image = _latent_pixels(vae, height, width) // (spec.latent_space.packing ** 2)
    image *= 2 if spec.task == "editing" else 1  # Kontext attends to the source frame's tokens too
    tokens = image + (getattr(params, "max_sequence_length", None) or 512)  # None: the tokenizer's, 512 in every FLUX.1 repo
    return FLUX_K * width_ * frames * tokens * size


def _vae_activations(params: Params, vae: dict, frames: int, height: int, width: int, dtype: str, vae_batch: int | None) -> int:
    from vsynth.core.diffusion.components import TILE_ABOVE

    if vae.get("_class_name") == "AutoencoderKLLTXVideo":  # LTX-Video's, over the whole clip at once (per output pixel and frame)
        return LTX_VAE_DECODE_K * frames * height * width * DTYPE_BYTES[dtype]
    if "z_dim" in vae:  # Wan's causal VAE: float32, one latent frame (4 frames) at a time, at its own compression
        factor, channels = vae.get("scale_factor_spatial", 8), vae.get("decoder_base_dim") or vae.get("base_dim", 96)
        calls = min(frames, vae.get("scale_factor_temporal", 4))
        return calls * VAE_DECODE_K * channels * (height // factor) * (width // factor) * 4
    size = 4 if dtype == "float16" and vae.get("force_upcast", True) else DTYPE_BYTES[dtype]
    pixels = _latent_pixels(vae, height, width, tiled=max(height, width) > TILE_ABOVE)
    channels = vae.get("block_out_channels", [128])[0]
    cap = vae_batch or frames
    decode = min(frames, getattr(params, "decode_batch_size", ENCODE_BATCH), cap) * VAE_DECODE_K
    encode = min(frames, ENCODE_BATCH, cap) * VAE_ENCODE_K
    return max(decode, encode) * channels * pixels * size
