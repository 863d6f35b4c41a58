"""The toy world's trained weights that ship with vsynth (``vsynth run --toy``).

They live in ``vsynth/toy/weights/<name>/`` as float16 safetensors in the diffusers layouts the
loaders read, listed with their SHA-256 hashes in ``manifest.json`` with the command that made
them (``vsynth toy train``). Import-light: no torch.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

from vsynth.errors import VsynthInputError

WEIGHTS_DIR = Path(__file__).parent / "weights"
TOY_SIZE = (64, 64)  # (height, width) the toy models were trained at


@cache
def manifest() -> dict:
    """The shipped manifest (empty when no toy weights are installed)."""
    path = WEIGHTS_DIR / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def toy_models() -> list[str]:
    """Names of the shipped toy models (the folders ``WeightsSpec.toy`` names)."""
    return sorted(manifest().get("models", {}))


def toy_weights(name: str) -> Path:
    """The folder of toy model ``name``; one line if it is not shipped."""
    path = WEIGHTS_DIR / name
    if name not in manifest().get("models", {}) or not path.is_dir():
        raise VsynthInputError(f"no toy weights '{name}' in {WEIGHTS_DIR}: reinstall vsynth, or rebuild them with `vsynth toy train`")
    return path


def verify(name: str) -> list[str]:
    """The files of toy model ``name`` whose SHA-256 differs from the manifest's (empty when intact)."""
    bad = []
    for entry in manifest()["models"][name]["files"]:  # {"path": "NAME/...", "sha256": ..., "bytes": ...}
        path = WEIGHTS_DIR / entry["path"]
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            bad.append(entry["path"])
    return bad
