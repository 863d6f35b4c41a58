"""Weight quantization of the denoising networks (``--quantize``), with the backends diffusers quantizes through.

- ``int8``: torchao's int8 weight-only (diffusers' ``TorchAoConfig("int8wo")``): 1 byte per weight of every
  linear layer, computed in the run's dtype. Runs on the CPU too.
- ``fp8``: torchao's float8 (e4m3) weight-only (``TorchAoConfig("float8wo")``): 1 byte per weight; fast on
  GPUs with float8 units (compute capability 8.9+: Ada, Hopper), emulated elsewhere. Runs on the CPU too.
- ``nf4``: bitsandbytes' 4-bit NormalFloat (diffusers' ``BitsAndBytesConfig(load_in_4bit=True,
  bnb_4bit_quant_type="nf4")``): about half a byte per weight, in ``Linear4bit`` layers that dequantize on
  the fly; a CUDA GPU only (refused on the CPU before loading, in one line).

The networks are the model's ``unets()`` (UNets, transformers, both Wan 2.2 experts): most of a model's
weights and all of its compute. Text encoders, VAEs, ControlNets and adapters keep the run's dtype. The
networks are quantized in place after loading (as diffusers' torchao quantizer does layer by layer while
loading), so the loading peak is the unquantized network's; LoRAs are fused before (``--fuse-lora``), or
stay unquantized adapters beside the quantized layers. torchao is the optional extra ``vsynth[quantize]``,
bitsandbytes ``vsynth[nf4]`` (apart: diffusers imports it with its models once installed, seconds per process).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass

from vsynth.errors import QuantizationError



@dataclass(frozen=True)
class Scheme:
    name: str
    package: str  # the module it needs
    extra: str  # the vsynth extra that installs it
    bytes_per_weight: float  # of a quantized linear layer's weight, scales included
    gpu_only: bool
    description: str


SCHEMES = {
    "int8": Scheme("int8", "torchao", "quantize", 1.0, False, "torchao int8 weight-only"),
    "fp8": Scheme("fp8", "torchao", "quantize", 1.0, False, "torchao float8 weight-only"),
    # 4 bits per weight, plus one float32 absmax per block of 64 (double-quantized to about 8 bits: 0.13 bit a weight)
    "nf4": Scheme("nf4", "bitsandbytes", "nf4", 0.5 + 0.13 / 8, True, "bitsandbytes 4-bit NormalFloat"),
}


def check(scheme: str, device: str) -> None:
    """Refuse, before loading, a scheme this device cannot run or whose package is not installed."""
    if scheme == "none":
        return
    chosen = SCHEMES[scheme]
    if chosen.gpu_only and not device.startswith("cuda"):
        raise QuantizationError(
            f"--quantize {scheme}: {chosen.description} runs on a CUDA GPU only, and this run is on {device}; "
            "use --quantize int8 (runs on the CPU), or run on a GPU"
        )
    import importlib.util

    if importlib.util.find_spec(chosen.package) is None:
        raise QuantizationError(f"--quantize {scheme}: needs the {chosen.package} package: pip install 'vsynth[{chosen.extra}]'")


# Loggers of the quantization backends that diffusers imports with its models once they are installed: the CUDA
# kernels a CPU build cannot load, a missing optional package, the enum registrations torch warns about, and
# diffusers' note that a newer torchao lacks the tensor classes of checkpoints serialized with torchao (vsynth
# quantizes after loading and never reads such checkpoints).
NOISY = ("torchao", "bitsandbytes", "torch.utils._pytree", "diffusers.quantizers.torchao.torchao_quantizer")


def quiet_backends() -> None:
    """Only errors from the backends' loggers (the CLI's choice, made before diffusers imports them)."""
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.ERROR)


@contextmanager
def quiet_imports(root: bool = False):
    """Only errors from the backends' loggers while vsynth imports and loads models for a library caller, then as
    they were; a logger whose level the caller set is left alone (the CLI silences them for good: quiet_backends).
    ``root`` too while a backend quantizes (bitsandbytes logs its missing kernels package on the root logger)."""
    loggers = [logging.getLogger(name) for name in NOISY]
    chosen = [logger for logger in loggers if logger.level == logging.NOTSET] + ([logging.getLogger()] if root else [])
    levels = [logger.level for logger in chosen]
    for logger in chosen:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(chosen, levels):
            logger.setLevel(level)


def _skip_lora(module, name: str) -> bool:
    """Quantize linear layers, not peft's LoRA matrices (kept beside a quantized base layer)."""
    import torch

    return isinstance(module, torch.nn.Linear) and "lora_" not in name


def apply(networks, scheme: str, dtype) -> dict:
    """Quantize every linear layer of ``networks`` in place; returns what run.json records."""
    unique = list({id(n): n for n in networks}.values())
    before = sum(_linear_bytes(n) for n in unique)
    if scheme in ("int8", "fp8"):
        with quiet_imports(root=True):
            from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig, quantize_
        config = Int8WeightOnlyConfig() if scheme == "int8" else Float8WeightOnlyConfig()
        for network in unique:
            quantize_(network, config, filter_fn=_skip_lora)
    elif scheme == "nf4":
        for network in unique:
            to_nf4(network, dtype)
    layers = sum(1 for n in unique for name, m in n.named_modules() if _quantized(m))
    return {"scheme": scheme, "layers": layers, "linear_weights_mb_before": round(before / 2**20, 1), "networks": len(unique),
            "backend": SCHEMES[scheme].package, "compute_dtype": str(dtype).removeprefix("torch.")}  # fmt: skip


def _linear_bytes(network) -> int:
    import torch

    return sum(m.weight.numel() * m.weight.element_size() for m in network.modules() if isinstance(m, torch.nn.Linear))


def _quantized(module) -> bool:
    """A layer holding a quantized weight of its own (a peft LoRA wrapper's ``weight`` is its base layer's: not counted twice)."""
    weight = module._parameters.get("weight") if hasattr(module, "_parameters") else None
    return weight is not None and type(weight).__module__.split(".")[0] in ("torchao", "bitsandbytes")


def to_nf4(network, dtype) -> None:
    """Replace each linear layer by bitsandbytes' ``Linear4bit`` (nf4, double-quantized scales, computing in ``dtype``),
    as diffusers' bitsandbytes quantizer builds them; the weights quantize when the layer reaches its device."""
    import torch

    with quiet_imports(root=True):
        import bitsandbytes as bnb

    for parent in list(network.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear) or "lora_" in name or isinstance(child, bnb.nn.Linear4bit):
                continue
            device = child.weight.device
            layer = bnb.nn.Linear4bit(
                child.in_features, child.out_features, bias=child.bias is not None, compute_dtype=dtype,
                compress_statistics=True, quant_type="nf4", device="meta",
            )  # fmt: skip
            layer.weight = bnb.nn.Params4bit(child.weight.data.to("cpu"), requires_grad=False, compress_statistics=True, quant_type="nf4")
            if child.bias is not None:
                layer.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(parent, name, layer.to(device))
