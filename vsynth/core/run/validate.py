"""Checks of a run that need the selected models or the machine, made before any weights load.

``RunConfig`` checks each value alone (types, ranges); these check values against the models
(their train steps), the machine (devices, the output folder's file system) and the plugins
(an implementation that does not import). Each raises a typed one-line error.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path

from vsynth.core.host.specs import BridgeSpec, ModelSpec
from vsynth.errors import OutputFolderError, PluginError, VsynthInputError, VsynthWarning, shorten

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_steps(steps: dict[str, tuple[int, str]], models: dict[str, ModelSpec]) -> None:
    """A scheduler cannot take more steps than the timesteps it was trained with; ``steps`` is role -> (steps, flag)."""
    for role, spec in models.items():
        value, flag = steps[role]
        if value > spec.train_timesteps:
            raise VsynthInputError(
                f"{flag} {value}: {spec.name} was trained with {spec.train_timesteps} timesteps, "
                f"so it samples with at most {spec.train_timesteps} steps"
            )


def check_schedule_reach(scheduler, steps: int, flag: str, model: str) -> None:
    """Once a VP model's scheduler is known: its timesteps at ``steps`` stay within its training schedule. SD's DDIM counts
    from timestep 1 (leading spacing, ``steps_offset`` 1), so at 1000 steps of 1000 it reaches timestep 1000, one past the
    end (an IndexError in diffusers' own pipelines); CogVideoX's trailing spacing does not."""
    import copy

    total = int(scheduler.config.num_train_timesteps)
    probe = copy.deepcopy(scheduler)
    probe.set_timesteps(steps)
    last = int(probe.timesteps.max())
    if last >= total:
        most = steps - (last - total + 1)
        raise VsynthInputError(
            f"{flag} {steps}: {model}'s schedule ({type(scheduler).__name__}, {probe.config.get('timestep_spacing', 'leading')} spacing "
            f"from timestep {probe.config.get('steps_offset', 0)}) reaches timestep {last} at that many steps, past its {total}; "
            f"at most {most}"
        )


def fit_to_latents(frames: int, height: int, width: int, models: dict[str, ModelSpec], fit: str) -> tuple[int, int, int, list[str]]:
    """Frames and size that every model's latent space holds: rounded down (``fit='round'``, with the
    notices to show) or refused in one line (``fit='strict'``)."""
    multiple = max(spec.latent_space.size_multiple for spec in models.values())
    vdm = models.get("vdm")  # none with a bridge that uses no video model: an image model takes any number of frames
    fitted = (vdm.latent_space.fit_frames(frames) if vdm else frames, *(max(multiple, side // multiple * multiple) for side in (height, width)))
    notices = []
    if fitted[0] != frames:
        notices.append(f"--frames {frames}: {vdm.name}'s latent space holds {vdm.latent_space.frame_rule()}; running {fitted[0]}")
    if fitted[1:] != (height, width):
        names = " and ".join(s.name for s in models.values() if s.latent_space.size_multiple == multiple)
        notices.append(f"--height {height} --width {width}: {names} need{'s' if ' and ' not in names else ''} multiples of "
                       f"{multiple} pixels; running {fitted[1]}x{fitted[2]}")  # fmt: skip
    if notices and fit == "strict":
        raise VsynthInputError(notices[0].rsplit(";", 1)[0] + ": choose such values, or --fit round to round them down")
    return (*fitted, notices)


def check_device(device: str) -> None:
    """Only devices that exist here: cpu, an available cuda:N or mps, or auto."""
    if not _DEVICE.match(device):
        raise VsynthInputError(f"--device {shorten(device)}: not a device vsynth runs on; use auto, cpu, cuda, cuda:N or mps")
    if device in ("auto", "cpu"):
        return
    import torch

    if device == "mps":
        if not torch.backends.mps.is_available():
            raise VsynthInputError("--device mps: MPS is not available on this machine; use --device cpu or auto")
        return
    if not torch.cuda.is_available():
        raise VsynthInputError(f"--device {device}: CUDA is not available on this machine; use --device cpu or auto")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise VsynthInputError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")


def resolve_device(device: str) -> str:
    """The device a checked ``--device`` names: auto is the first GPU when there is one, else the CPU;
    a GPU gets its index, as memory is counted per GPU."""
    if device == "cpu" or device == "mps":
        return device
    import torch

    if device == "auto" and not torch.cuda.is_available():
        return "cpu"
    if device in ("auto", "cuda"):
        return f"cuda:{torch.cuda.current_device()}"
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """``--dtype auto``: float16 on a GPU (or MPS), float32 on the CPU."""
    if dtype != "auto":
        return dtype
    return "float32" if device == "cpu" else "float16"


def check_precision(dtype: str, offload: str, device: str) -> None:
    """Offload moves weights between host memory and an accelerator, so it needs one; bfloat16 needs a GPU
    that computes in it."""
    if offload != "none" and device == "cpu":
        raise VsynthInputError(
            f"--offload {offload}: offloading keeps weights in host memory for a GPU, and this run is on the CPU, "
            "where they are in host memory already; drop --offload"
        )
    if dtype == "bfloat16" and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_bf16_supported():
            raise VsynthInputError(f"--dtype bfloat16: {torch.cuda.get_device_name(device)} does not compute in bfloat16; use --dtype float16")


def warn_compile(requested: bool, device: str) -> None:
    """torch.compile on the CPU generates C++ for every UNet: minutes before the first step, for a small gain."""
    if requested and device == "cpu":
        warnings.warn(
            "--compile on the CPU: compiling each network (UNet or transformer) takes minutes before its first step (a 'compiling' bar shows "
            "it), and CPU runs gain little from it; leave --compile out for a quick run",
            VsynthWarning,
            stacklevel=3,
        )


def check_out(out: Path, given: bool) -> None:
    """The output folder is a new name whose folder can be created and written."""
    flag = f"--out {out}" if given else f"output folder {out}"
    if out.name in ("", ".", ".."):
        raise VsynthInputError(f"{flag}: names an existing folder, not a new one; name a folder, e.g. --out result")
    check_creatable(out, flag, "choose another --out")


NAME_MAX = 255  # bytes in one file name: ext4, XFS, Btrfs, APFS and NTFS alike
# An output folder NAME is written as `.NAME.vsynth-partial-PID` beside it (a PID has at most 7 digits on Linux).
PARTIAL_NAME_EXTRA = len("..vsynth-partial-") + 7


def check_name_lengths(path: str | Path, reserve: int = 0) -> None:
    """Every name in ``path`` fits the file system (the last with ``reserve`` bytes to spare, for what vsynth
    writes beside it); else a ValueError saying which is too long. A name past NAME_MAX makes even asking
    whether the path exists fail (ENAMETOOLONG), so paths a user gives are checked before anything touches them."""
    names = [name for name in Path(path).parts if name not in ("/", ".", "..")]
    for index, name in enumerate(names):
        last = index == len(names) - 1
        size = len(os.fsencode(name))
        if size > NAME_MAX - (reserve if last else 0):
            which = "its last name" if last else f"its folder name {name[:24]}..."
            room = f", and vsynth needs {reserve} of them for the partial folder it writes beside" if last and reserve else ""
            raise ValueError(f"{which} is too long ({size} bytes; file names hold at most {NAME_MAX}{room}): choose a shorter name")


def check_creatable(path: Path, what: str, fix: str) -> None:
    """Folders can be created at ``path``: probed on its nearest existing ancestor.

    The probe creates and removes one hidden folder there, so that a read-only file system,
    ``/sys`` or missing permissions are found before any work, and nothing is left behind.
    """
    try:
        check_name_lengths(path)
    except ValueError as exc:
        raise OutputFolderError(f"{what}: {exc}") from None
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        if ancestor.is_symlink():  # a link to an unmounted disk, or a loop: folders cannot be made through it
            raise OutputFolderError(f"{what}: {ancestor} is a link to {os.readlink(ancestor)}, which does not exist (or loops); {fix}")
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputFolderError(f"{what}: {ancestor} is a file, not a folder; {fix}")
    try:
        Path(tempfile.mkdtemp(prefix=".vsynth-probe-", dir=ancestor)).rmdir()
    except OSError as exc:
        raise OutputFolderError(f"{what}: cannot create folders in {ancestor} ({exc.strerror}); {fix}") from None


def check_impls(specs: list[ModelSpec | BridgeSpec]) -> None:
    """Every selected implementation imports, has its class, and that class subclasses the base its
    kind needs (``ImageModel``, ``VideoModel``, ``Bridge``): one line naming the plugin, before any weights load."""
    for spec in specs:
        problem = impl_problem(spec)
        if problem:
            raise PluginError(f"plugin '{spec.plugin}': {problem}; update or uninstall the plugin")


def impl_problem(spec: ModelSpec | BridgeSpec) -> str:
    """Why ``spec``'s implementation cannot run (``idm 'x' names impl 'a:B', which does not resolve (...)``), or ''."""
    try:
        impl = spec.load_impl()
    except (ImportError, AttributeError) as exc:
        return f"{spec.kind} '{spec.name}' names impl '{spec.impl}', which does not resolve ({type(exc).__name__}: {exc})"
    base = _impl_base(spec.kind)
    if not (isinstance(impl, type) and issubclass(impl, base)):
        what = impl.__name__ if isinstance(impl, type) else f"a {type(impl).__name__}, not a class"
        return f"{spec.kind} '{spec.name}' names impl '{spec.impl}', which is {what}, not a subclass of {base.__module__}.{base.__name__}"
    return ""


def _impl_base(kind: str) -> type:
    """The class an implementation of ``kind`` must subclass (imported here: they import torch)."""
    from vsynth.core.diffusion.bridge import Bridge
    from vsynth.core.diffusion.models import ImageModel, VideoModel
    from vsynth.core.run.measure import Metric

    return {"idm": ImageModel, "vdm": VideoModel, "bridge": Bridge, "metric": Metric, "world": object}[kind]
