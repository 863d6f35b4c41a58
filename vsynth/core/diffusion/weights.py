"""Where each model's weights come from: a local directory, the hub cache, the hub, or ``--tiny``.

Weights are located before anything heavy is loaded, so that a run whose weights cannot be had
fails in a second with one line (which weights, how large, how to pass a local copy, that
``--tiny`` exists) instead of after huggingface_hub's retries.
"""

from __future__ import annotations

import json
import os
import re
import socket
from contextlib import contextmanager
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Iterator
from urllib.parse import urlparse

from vsynth.core.host.specs import ModelSpec, WeightsSpec
from vsynth.errors import InvalidWeightsError, UntrustedPickleError, VsynthInputError, WeightsUnavailableError


def weight_flags(spec: ModelSpec) -> dict[str, str]:
    """How a user replaces each set of weights: the first with --idm/--vdm-weights, the others with -o ROLE=..."""
    return {w.role: (f"--{spec.kind}-weights DIR" if i == 0 else f"-o {w.role}=DIR") for i, w in enumerate(spec.weights)}


def weights_options(spec: ModelSpec) -> set[str]:
    """The ``-o ROLE=PATH_OR_ID`` keys of ``spec``'s secondary weights that its params model does not
    declare itself: every role but the first can be overridden, whatever the params model holds."""
    return {w.role for w in spec.weights[1:]} - set(spec.params.model_fields)


def resolve_sources(spec: ModelSpec, primary: str | None, options: dict[str, object], tiny: bool, toy=None) -> dict[str, str]:
    """Pick the source of every weights role the options use: an explicit override, else the tiny or toy model, or
    the hub id (weights needed only with another param value, ``WeightsSpec.only_with``, are left out).

    ``toy`` is the toy world's implementation (registered as a world, see :mod:`vsynth.core.run.measure`), whose
    ``weights(name)`` is the folder of its shipped weights ``name``; None without --toy."""
    from vsynth.tiny import tiny_weights

    sources = {}
    for i, weights in enumerate(spec.weights):
        if options and not weights.used_with(options):
            continue
        override = primary if i == 0 else options.get(weights.role)
        if override is not None and not str(override).strip():  # not a silent "use the default"
            flag = f"--{spec.kind}-weights" if i == 0 else f"-o {weights.role}"
            raise VsynthInputError(
                f'{flag}{" " if i == 0 else "="}"": is empty: name a weights folder or hub id, or leave {flag} out for the default'
            )
        if override:
            sources[weights.role] = str(override)
        elif tiny:
            if weights.tiny is None:
                raise VsynthInputError(f"{spec.name} has no tiny form for its {weights.role} weights")
            from vsynth.tiny.build import TINY_MODELS

            if weights.tiny not in TINY_MODELS:  # a plugin spec's typo: one line naming it, not a KeyError from the builder
                raise VsynthInputError(f"{spec.name} ({spec.plugin}) names tiny model {weights.tiny!r} for its {weights.role} weights, "
                                       f"which vsynth does not build; it builds {', '.join(TINY_MODELS)}")  # fmt: skip
            sources[weights.role] = str(tiny_weights(weights.tiny))
        elif toy is not None:
            if weights.toy is None:
                raise VsynthInputError(
                    f"{spec.name} has no toy weights for its {weights.role} weights: --toy runs the models "
                    f"that `vsynth models` marks toy"
                )
            sources[weights.role] = str(toy.weights(weights.toy))
        else:
            sources[weights.role] = weights.id
    return sources


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _looks_like_path(source: str) -> bool:
    """Hub ids are ``name`` or ``namespace/name``; anything else is meant as a directory."""
    return not _HUB_ID.match(source)


@cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connection to the hub endpoint (its host and port): cheap, and no retries."""
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return False
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")):
        return True  # through a proxy a direct connection says nothing: let huggingface_hub try
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        with socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def hub_file(repo: str, filename: str) -> str:
    """One file of a hub repo: from the cache, else downloaded when one short connection reaches the hub (offline,
    huggingface_hub retries for half a minute); :class:`WeightsUnavailableError` with one line when neither works."""
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo, filename, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached (LocalEntryNotFoundError), or a malformed id: said below
        pass
    if not hub_reachable():
        raise WeightsUnavailableError(f"{filename} from {repo} is not in the hub cache and the hub cannot be reached")
    try:
        return hf_hub_download(repo, filename)
    except Exception as exc:  # noqa: BLE001 - the hub's own reasons: unknown repo, gated, missing file
        raise WeightsUnavailableError(f"cannot download {filename} from {repo}: {str(exc).splitlines()[0]}") from None


def needs_hub(sources: dict[str, dict[str, str]]) -> bool:
    """Whether any located source is a hub id rather than a local folder or file."""
    return any(not Path(source).exists() for role in sources.values() for source in role.values())


@contextmanager
def hub_offline(offline: bool) -> Iterator[None]:
    """Within the block, huggingface_hub (and the libraries on it) never reach the network when ``offline``.

    Once vsynth knows the hub is unreachable, loading cached weights must not spend minutes in
    retried requests: this is ``HF_HUB_OFFLINE=1``, set for this process and restored after.
    """
    if not offline:
        yield
        return
    from huggingface_hub import constants

    saved = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"], constants.HF_HUB_OFFLINE = "1", True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved[1]
        if saved[0] is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved[0]


def cached_snapshot(repo_id: str) -> Path | None:
    """The folder of ``repo_id``'s cached snapshot (whatever files it holds), or None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, ValueError, OSError):
        return None


def locate(weights: WeightsSpec, source: str, flag: str, params: dict[str, object] | None = None) -> str:
    """Return a source that ``from_pretrained`` can load, or raise a one-line error saying what to do.

    Every file of ``weights.files`` (its ``{name}`` filled from ``params``) is checked here, in a
    folder or in the cached snapshot, so that nothing loads when one is missing; a cached snapshot
    may lack files the reachable hub still has.
    """
    path = Path(source).expanduser()
    if _exists(path):  # a folder, or a single checkpoint file for models that load one
        _check_local(weights, path, flag, params or {})
        return str(path)
    if _looks_like_path(source):
        raise VsynthInputError(f"{weights.role} weights directory not found: {source}")
    snapshot = cached_snapshot(source)
    if snapshot is not None:
        missing = _first_missing(weights, snapshot, params or {})
        if missing is None or hub_reachable():
            return source
        raise WeightsUnavailableError(
            f"cannot get {weights.role} weights '{source}': the local cache lacks {_describe(missing, snapshot)}, and the hub "
            f"is unreachable; download the file elsewhere, or pass a complete folder with {flag}"
        )
    if hub_reachable():
        return source
    raise WeightsUnavailableError(
        f"cannot get {weights.role} weights '{source}' (about {weights.size_gb:g} GB): not in the local cache and the hub "
        f"is unreachable; download them elsewhere and pass the folder with {flag}, or add --tiny to run on offline tiny models"
    )


def _exists(path: Path) -> bool:
    """``path.exists()``, false for a name the file system refuses (too long), not an OSError."""
    try:
        return path.exists()
    except OSError:
        return False


def _first_missing(weights: WeightsSpec, folder: Path, params: dict[str, object]) -> list[str] | None:
    """The alternatives of the first entry of ``weights.files`` that ``folder`` has none of, or None."""
    for entry in weights.files:
        alternatives = entry.format(**params).split("|")
        if not any((folder / name).is_file() for name in alternatives):
            return alternatives
    return None


def _describe(alternatives: list[str], folder: Path) -> str:
    """``a or b (unet/ holds ...)``: what is missing, and what its folder does hold (the Lightning step files
    that were downloaded, say), so that a user sees at once what went wrong."""
    where = PurePosixPath(alternatives[0]).parent
    label = "the top level" if str(where) == "." else f"{where}/"
    directory = folder / where
    if not directory.is_dir():
        return f"{' or '.join(alternatives)} (there is no {label})"
    there = sorted(p.name for p in directory.iterdir() if p.is_file())
    shown = there[:MAX_LISTED] + [f"{len(there) - MAX_LISTED} more"] * (len(there) > MAX_LISTED)
    return f"{' or '.join(alternatives)} ({label} holds {', '.join(shown) or 'no files'})"


MAX_LISTED = 8
CONFIG_FILES = ("model_index.json", "config.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")


def _check_local(weights: WeightsSpec, path: Path, flag: str, params: dict[str, object]) -> None:
    """A local source looks loadable: a folder with the files its spec lists (else a diffusers config),
    each JSON file of them parsing and each safetensors header reading, or a weights file whose header reads."""
    what = f"{weights.role} weights {path} ({flag})"
    configs = [entry for entry in weights.files if entry.endswith("config.json")]
    if path.is_dir():
        if weights.files:
            missing = _first_missing(weights, path, params)
            if missing is not None:
                raise VsynthInputError(f"{what}: the folder lacks {_describe(missing, path)}; pass the complete folder")
            listed = [path / name for entry in weights.files for name in entry.format(**params).split("|")]
        elif not any((path / name).is_file() for name in CONFIG_FILES):
            raise VsynthInputError(
                f"{what}: the folder holds no {' or '.join(CONFIG_FILES)}, so it is not diffusers-format weights "
                "(write them with save_pretrained, or pass the folder that holds the config)"
            )
        else:
            listed = [path / name for name in CONFIG_FILES]
        for file in (f for f in listed if f.is_file()):
            _check_readable(file, what)
        _check_classes(weights, path, configs, what)  # after: a config that does not parse is said as such
        return
    if path.suffix not in WEIGHT_SUFFIXES or not path.is_file():
        raise VsynthInputError(f"{what}: not a weights folder nor a weights file ({', '.join(WEIGHT_SUFFIXES)})")
    _check_readable(path, what)
    if configs:
        raise VsynthInputError(f"{what}: is a file, and these weights are a folder holding {', '.join(configs)}; pass that folder")


def _check_readable(file: Path, what: str) -> None:
    """A JSON file that parses, a safetensors file whose header reads: what the memory planner and the
    loaders read first, and crashed on when a download was cut short."""
    if file.suffix == ".json":
        try:
            json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "truncated or not JSON"
            raise InvalidWeightsError(f"{what}: {file} cannot be read ({reason}); re-download or re-export the weights") from None
    elif file.suffix == ".safetensors" and safetensors_header(file) is None:
        raise InvalidWeightsError(f"{what}: {file} is not a readable safetensors file (truncated or corrupt); re-download or re-export the weights")


# Formats whose loading unpickles: code can run while they load. vsynth refuses those it can see (local files
# and folders, cached snapshots of the ids a user names) unless the run trusts pickles (--trust-pickles).
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def refuse_pickles(models: dict[str, ModelSpec], sources: dict[str, dict[str, str]], params: dict[str, object]) -> None:
    """Raise :class:`UntrustedPickleError` for weights the user named that load from a pickle.

    A located source other than the spec's own is looked at where it is on disk (a file, a folder, a
    cached snapshot): a folder is a pickle when one of its folders holds pickled weights and no
    safetensors, which the loaders prefer. A params field marked ``json_schema_extra={"weights": "pickle"}``
    names weights that only come as a pickle (controlnet-openpose's ``detector``): any value but its
    default is refused.
    """
    for role, spec in models.items():
        flags = weight_flags(spec)
        for weights in spec.weights:
            source = sources[role].get(weights.role)
            if source is not None and source != weights.id:
                _refuse_pickle(source, f"{weights.role} weights {source} ({flags[weights.role]})")
        for key, field in type(params[role]).model_fields.items():
            value = getattr(params[role], key)
            if (field.json_schema_extra or {}).get("weights") == "pickle" and value != field.default:
                raise UntrustedPickleError(
                    f"-o {key}={value}: these weights load from a pickle, which can run any code while it loads; pass "
                    "--trust-pickles (trust_pickles: true) if you trust where they came from"
                )


def _refuse_pickle(source: str, what: str) -> None:
    path = Path(source).expanduser()
    folder = path if path.exists() else (None if _looks_like_path(source) else cached_snapshot(source))
    if folder is None:
        return
    pickle = folder if folder.is_file() and folder.suffix in PICKLE_SUFFIXES else _pickled_folder(folder) if folder.is_dir() else None
    if pickle is not None:
        raise UntrustedPickleError(
            f"{what}: {pickle} is a pickle ({pickle.suffix}), which can run any code while it loads; convert it to "
            "safetensors, or pass --trust-pickles (trust_pickles: true) if you trust where it came from"
        )


def _pickled_folder(folder: Path) -> Path | None:
    """The first pickled weights file of ``folder`` or its subfolders (one level) that has no safetensors beside it."""
    for directory in (folder, *sorted(d for d in folder.iterdir() if d.is_dir())):
        files = sorted(f for f in directory.iterdir() if f.is_file())
        pickles = [f for f in files if f.suffix in PICKLE_SUFFIXES]
        if pickles and not any(f.suffix == ".safetensors" for f in files):
            return pickles[0]
    return None


def _check_classes(weights: WeightsSpec, folder: Path, configs: list[str], what: str) -> None:
    """Each model config of ``folder`` names the class the default weights' does (a UNet3DConditionModel for a
    video model, not an image model's UNet2DConditionModel), where vsynth ships the default's configs: else
    from_pretrained would fail only after loading."""
    shipped = resources.files("vsynth.configs").joinpath(weights.id.replace("/", "__"))
    for config in configs:
        expected, found = _class_name(shipped.joinpath(config)), _class_name(folder / config)
        if expected and found and expected != found:
            raise VsynthInputError(
                f"{what}: {config} is a {found}, and these weights need a {expected} (as {weights.id}); pass weights of that architecture"
            )


def _class_name(config) -> str | None:
    """The ``_class_name`` a diffusers config file names, or None (no such file, not JSON: other checks say so)."""
    try:
        name = json.loads(config.read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def safetensors_header(path: str | Path) -> dict | None:
    """The header of a readable safetensors file ({tensor name: entry}, "__metadata__" left out), or None.

    The format starts with a little-endian u64 header length and that many bytes of JSON, whose tensors'
    data offsets end within the file (a download cut short has the whole header and part of the data; a
    git-lfs pointer or a saved error page has none)."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            size = int.from_bytes(file.read(8), "little")
            if not 0 < size <= min(path.stat().st_size - 8, 100 * 2**20):
                return None
            header = json.loads(file.read(size))
        entries = {name: entry for name, entry in header.items() if name != "__metadata__"}
        ends = [entry["data_offsets"][1] for entry in entries.values()]
        if not all(isinstance(entry["shape"], list) for entry in entries.values()):
            return None
        return entries if max(ends, default=0) <= path.stat().st_size - 8 - size else None
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None
