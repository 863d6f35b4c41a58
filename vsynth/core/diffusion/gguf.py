"""GGUF checkpoints of a model's transformer (``--vdm-weights FILE.gguf``), through diffusers' ``from_single_file``
with ``GGUFQuantizationConfig``: the weights stay in the file's quantized types (Q8_0, Q4_K, ...) and are
dequantized layer by layer to the run's dtype as they compute.

A GGUF file holds the transformer alone, in the original trainers' names (diffusers converts them). The rest of
the pipeline (VAE, text encoder, tokenizer, scheduler) and the transformer's config come from the model's own
weights (its hub id, or ``--tiny``); their transformer files are neither needed nor counted. A model reads GGUF
where its implementation says so (``gguf = True``: Wan 2.1 and 2.2 TI2V, one transformer); others refuse in one line.
"""

from __future__ import annotations

import re
from pathlib import Path

from vsynth.errors import InvalidWeightsError, QuantizationError, VsynthInputError, shorten

MAGIC = b"GGUF"


def is_gguf(source: str | None) -> bool:
    return source is not None and str(source).lower().endswith(".gguf")


def check(spec, impl, path: str, flag: str, experts: int) -> Path:
    """The GGUF file ``path`` exists, is a GGUF file, and ``spec``'s implementation reads one; else one line."""
    import importlib.util

    if not getattr(impl, "gguf", False):
        raise VsynthInputError(f"{flag} {path}: {spec.name} does not read GGUF checkpoints (Wan 2.1 and Wan 2.2 TI2V do); pass a diffusers folder")
    if experts > 1:
        raise VsynthInputError(f"{flag} {path}: {spec.name} has {experts} expert transformers, and a GGUF file holds one")
    file = Path(path).expanduser()
    if not file.is_file():
        raise VsynthInputError(f"{flag} {path}: no such GGUF file")
    with file.open("rb") as handle:
        if handle.read(4) != MAGIC:
            raise InvalidWeightsError(f"{flag} {path}: not a GGUF file (it does not start with GGUF); re-download it")
    if importlib.util.find_spec("gguf") is None:
        raise QuantizationError(f"{flag} {path}: reading GGUF needs the gguf package: pip install 'vsynth[quantize]'")
    from gguf import GGUFReader

    try:  # the header and every tensor's place in the file (memory-mapped: no data is read); a cut download fails here
        GGUFReader(file)
    except Exception as exc:  # noqa: BLE001 - gguf's own reasons (ValueError, IndexError, ...) for a damaged file
        raise InvalidWeightsError(f"{flag} {path}: not a readable GGUF file (truncated or corrupt: {shorten(str(exc))}); re-download it") from None
    return file


def load_transformer(cls, path: str, config_source: str, dtype):
    """``cls.from_single_file`` on the GGUF file, its config from ``config_source``'s transformer folder."""
    from diffusers import GGUFQuantizationConfig

    try:
        return cls.from_single_file(path, config=config_source, subfolder="transformer", torch_dtype=dtype,
                                    quantization_config=GGUFQuantizationConfig(compute_dtype=dtype))  # fmt: skip
    except ValueError as exc:  # another model size's checkpoint: "Cannot load ... expected shape ..., but got ..."
        if "expected shape" not in str(exc):
            raise
        found = re.search(r"because (\S+) expected shape torch.Size\((\[[^\]]*\])\), but got torch.Size\((\[[^\]]*\])\)", str(exc))
        reason = f"{found[1]} is {found[3]} in the file, {found[2]} in the model" if found else shorten(str(exc))
        raise InvalidWeightsError(f"{path}: does not fit this model's transformer ({reason}); pass the GGUF of this model and size") from None
