"""Flow warping error: each frame warped onto the next along optical flow, and what the warp gets wrong.

The flow is torchvision's RAFT when torchvision imports, else OpenCV's DIS (said in the record as
the metric's note). Pixels where the forward and backward flows disagree (occlusions, the frame's
border) are left out, with Sundaram et al.'s consistency test, as the video-editing papers do.
"""

from __future__ import annotations

import contextlib
import json
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

from vsynth.errors import VsynthInputError, WeightsUnavailableError
from vsynth.torchvision_guard import import_torchvision

RAFT_MIN_SIDE = 128  # RAFT's correlation pyramid needs feature maps of at least 16 (1/8 of the input)
RAFT_UPDATES = 12  # torchvision's default number of flow refinements
_TORCHVISION_OPS = None  # the op schemas declared for a torchvision whose C++ ops cannot load (see import_torchvision)


@lru_cache(maxsize=2)
def load_raft(source: str, device: str = "cpu"):
    """RAFT in eval mode: ``torchvision:raft_large`` / ``torchvision:raft_small`` (torchvision's published weights,
    from torch's cache or downloaded), a .pth/.safetensors file, or a folder with model.safetensors and a
    config.json naming the ``arch``."""
    torchvision = import_torchvision()
    if torchvision is None:
        raise VsynthInputError("RAFT needs torchvision: pip install torchvision (the version paired with your torch)")
    from torchvision.models import optical_flow

    if source.startswith("torchvision:"):
        arch = source.removeprefix("torchvision:")
        if arch not in ("raft_large", "raft_small"):
            raise VsynthInputError(f"unknown torchvision flow model {arch!r}: raft_large or raft_small")
        weights = getattr(optical_flow, "Raft_Large_Weights" if arch == "raft_large" else "Raft_Small_Weights").DEFAULT
        try:  # torch.hub says "Downloading: ..." on stdout, which `vsynth eval --json` keeps for JSON alone
            with contextlib.redirect_stdout(sys.stderr):
                model = getattr(optical_flow, arch)(weights=weights, progress=False)
        except OSError as exc:  # URLError is an OSError: no network, no cache
            raise WeightsUnavailableError(
                f"cannot get raft weights ({weights.url.rsplit('/', 1)[-1]}, about 20 MB): not in torch's cache and the "
                f"download failed ({type(exc).__name__}); download it elsewhere and pass --metric-weights raft=FILE, or "
                "--tiny for the offline random-weight RAFT"
            ) from None
        return model.to(device).eval()
    path = Path(source).expanduser()
    folder = path if path.is_dir() else path.parent
    config = folder / "config.json"
    arch = json.loads(config.read_text()).get("arch", "raft_large") if config.is_file() else ("raft_small" if "small" in path.name else "raft_large")
    file = path / "model.safetensors" if path.is_dir() else path
    if not file.is_file():
        raise VsynthInputError(f"raft weights not found: {file}")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(file))
    else:
        import torch

        state = torch.load(str(file), map_location="cpu", weights_only=True)
    model = getattr(optical_flow, arch)(weights=None)
    model.load_state_dict(state)
    return model.to(device).eval()


def raft_flows(frames: np.ndarray, model) -> tuple[np.ndarray, np.ndarray]:
    """(forward, backward) flows (F - 1, H, W, 2) in pixels: frame t -> t+1 and t+1 -> t."""
    import torch

    f, h, w = frames.shape[:3]
    scale = max(1.0, RAFT_MIN_SIDE / min(h, w))
    size = (int(round(h * scale / 8)) * 8, int(round(w * scale / 8)) * 8)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().to(next(model.parameters()).device) / 127.5 - 1
    x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
    with torch.no_grad():
        forward = model(x[:-1], x[1:], num_flow_updates=RAFT_UPDATES)[-1]
        backward = model(x[1:], x[:-1], num_flow_updates=RAFT_UPDATES)[-1]

    def back(flow):
        flow = torch.nn.functional.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
        flow = flow * torch.tensor([w / size[1], h / size[0]], device=flow.device)[None, :, None, None]
        return flow.permute(0, 2, 3, 1).cpu().numpy()

    return back(forward), back(backward)


def dis_flows(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(forward, backward) flows with OpenCV's DIS (medium preset): the fallback without torchvision."""
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    forward = np.stack([dis.calc(a, b, None) for a, b in zip(gray, gray[1:])])
    backward = np.stack([dis.calc(b, a, None) for a, b in zip(gray, gray[1:])])
    return forward, backward


def _sample(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` read at each pixel displaced by ``flow`` (bilinear, border pixels replicated)."""
    import cv2

    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image.astype(np.float32), xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def warping_errors(frames: np.ndarray, forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Per pair t -> t+1: mean absolute difference (0..1) of frame t+1 and frame t warped along the flow,
    over the pixels whose backward flow the forward flow undoes (|b + f(x + b)|^2 < 0.01 (|b|^2 + |f|^2) + 0.5);
    NaN for a pair with no such pixel."""
    h, w = frames.shape[1:3]
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    errors = []
    for t in range(len(frames) - 1):
        b = backward[t]  # for each pixel of frame t+1: where it was in frame t
        f_at = _sample(forward[t], b)
        consistent = ((b + f_at) ** 2).sum(-1) < 0.01 * ((b**2).sum(-1) + (f_at**2).sum(-1)) + 0.5
        inside = (xs + b[..., 0] >= 0) & (xs + b[..., 0] <= w - 1) & (ys + b[..., 1] >= 0) & (ys + b[..., 1] <= h - 1)
        valid = consistent & inside
        warped = _sample(frames[t], b)
        diff = np.abs(frames[t + 1].astype(np.float32) - warped).mean(-1)
        errors.append(float(diff[valid].mean() / 255.0) if valid.any() else float("nan"))
    return np.array(errors)
