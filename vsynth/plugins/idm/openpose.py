"""OpenPose body skeletons, as ControlNet v1.1's "openpose" annotator draws them, without controlnet_aux.

A port of the body path of controlnet_aux 0.0.10's ``OpenposeDetector`` (Apache-2.0; itself from
lllyasviel/ControlNet and CMU's OpenPose): the same network, weights file, single-scale search,
part association and drawing. controlnet_aux imports torchvision (and timm) at import time, and
pip then upgrades a user's torch to the one the newest torchvision pins; a torchvision of the
matching version still fails on a CPU build of torch ("operator torchvision::nms does not
exist"). This needs torch, numpy and OpenCV only, so detecting poses installs nothing.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

WEIGHTS_FILE = "body_pose_model.pth"

# (in, out, kernel, stride, padding) per conv; (kernel, stride, padding) per pool.
_BACKBONE = [
    ("conv1_1", (3, 64, 3, 1, 1)), ("conv1_2", (64, 64, 3, 1, 1)), ("pool1_stage1", (2, 2, 0)),
    ("conv2_1", (64, 128, 3, 1, 1)), ("conv2_2", (128, 128, 3, 1, 1)), ("pool2_stage1", (2, 2, 0)),
    ("conv3_1", (128, 256, 3, 1, 1)), ("conv3_2", (256, 256, 3, 1, 1)), ("conv3_3", (256, 256, 3, 1, 1)),
    ("conv3_4", (256, 256, 3, 1, 1)), ("pool3_stage1", (2, 2, 0)),
    ("conv4_1", (256, 512, 3, 1, 1)), ("conv4_2", (512, 512, 3, 1, 1)), ("conv4_3_CPM", (512, 256, 3, 1, 1)),
    ("conv4_4_CPM", (256, 128, 3, 1, 1)),
]  # fmt: skip
PAF_CHANNELS, HEATMAP_CHANNELS = 38, 19  # branch L1: part affinity fields; L2: 18 part heatmaps + background


def _stage_layers(stage: int, branch: int) -> list[tuple[str, tuple]]:
    out = PAF_CHANNELS if branch == 1 else HEATMAP_CHANNELS
    if stage == 1:
        widths = [(128, 128, 3, 1, 1)] * 3 + [(128, 512, 1, 1, 0), (512, out, 1, 1, 0)]
        return [(f"conv5_{i + 1}_CPM_L{branch}", w) for i, w in enumerate(widths)]
    widths = [(185, 128, 7, 1, 3)] + [(128, 128, 7, 1, 3)] * 4 + [(128, 128, 1, 1, 0), (128, out, 1, 1, 0)]
    return [(f"Mconv{i + 1}_stage{stage}_L{branch}", w) for i, w in enumerate(widths)]


def _sequential(layers: list[tuple[str, tuple]], last_relu: bool) -> nn.Sequential:
    modules = []
    for i, (name, v) in enumerate(layers):
        if "pool" in name:
            modules.append((name, nn.MaxPool2d(kernel_size=v[0], stride=v[1], padding=v[2])))
            continue
        modules.append((name, nn.Conv2d(v[0], v[1], kernel_size=v[2], stride=v[3], padding=v[4])))
        if last_relu or i < len(layers) - 1:
            modules.append((f"relu_{name}", nn.ReLU(inplace=True)))
    return nn.Sequential(OrderedDict(modules))


class BodyPoseModel(nn.Module):
    """The six-stage body network; its state-dict keys are the weights file's keys under ``modelS_B.``."""

    def __init__(self):
        super().__init__()
        self.model0 = _sequential(_BACKBONE, last_relu=True)
        for stage in range(1, 7):
            for branch in (1, 2):
                # controlnet_aux's no-relu list names stage 6's L1 twice and never its L2: that layer keeps its ReLU.
                last_relu = stage == 6 and branch == 2
                setattr(self, f"model{stage}_{branch}", _sequential(_stage_layers(stage, branch), last_relu))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model0(x)
        out = features
        for stage in range(1, 7):
            pafs, heatmaps = getattr(self, f"model{stage}_1")(out), getattr(self, f"model{stage}_2")(out)
            out = torch.cat([pafs, heatmaps, features], 1)
        return pafs, heatmaps


def load_body_model(source: str) -> BodyPoseModel:
    """From a ``body_pose_model.pth`` file, a folder holding one, or a hub repo (lllyasviel/Annotators)."""
    path = Path(source)
    if path.is_dir():
        path = path / WEIGHTS_FILE
    elif not path.is_file():
        from vsynth.core.diffusion.weights import hub_file
        from vsynth.errors import WeightsUnavailableError

        try:
            path = Path(hub_file(source, WEIGHTS_FILE))
        except WeightsUnavailableError as exc:
            raise WeightsUnavailableError(f"cannot get the pose detector's weights: {exc}; pass a folder or file with -o detector=, "
                                          "or precomputed poses with --condition-video") from None  # fmt: skip
    model = BodyPoseModel()
    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)  # tensors only, even from a trusted pickle
        model.load_state_dict({key: weights[key.split(".", 1)[1]] for key in model.state_dict()})
    except Exception as exc:  # noqa: BLE001 - unpickling a damaged or hostile file raises anything
        from vsynth.errors import InvalidWeightsError

        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise InvalidWeightsError(
            f"cannot read the pose detector's weights {path} ({type(exc).__name__}: {reason}): it is not the OpenPose "
            "body network's state dict; pass lllyasviel/Annotators' body_pose_model.pth with -o detector="
        ) from exc
    return model.eval()


def _resize(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """controlnet_aux's smart_resize: area when shrinking, Lanczos when growing, channel by channel past 3."""
    import cv2

    if x.ndim == 3 and x.shape[2] not in (1, 3):
        return np.stack([_resize(x[:, :, i], height, width) for i in range(x.shape[2])], axis=2)
    shrink = (height + width) / (x.shape[0] + x.shape[1]) < 1
    return cv2.resize(x, (int(width), int(height)), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4)


def _resize_to_multiple_of_64(image: np.ndarray, resolution: int) -> np.ndarray:
    """controlnet_aux's resize_image: the short side to ``resolution``, both sides rounded to multiples of 64."""
    import cv2

    k = resolution / min(image.shape[:2])
    height, width = (int(np.round(side * k / 64.0)) * 64 for side in image.shape[:2])
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LANCZOS4 if k > 1 else cv2.INTER_AREA)


BOX_SIZE, STRIDE, PAD_VALUE, SCALE = 368, 8, 128, 0.5
PEAK_THRESHOLD, PAF_THRESHOLD, MID_POINTS = 0.1, 0.05, 10
# Limbs as pairs of 1-based part ids, and the PAF channels (offset by 19, as OpenPose numbers them) of each.
LIMBS = [[2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11], [2, 12], [12, 13], [13, 14], [2, 1],
         [1, 15], [15, 17], [1, 16], [16, 18], [3, 17], [6, 18]]  # fmt: skip
LIMB_PAFS = [[31, 32], [39, 40], [33, 34], [35, 36], [41, 42], [43, 44], [19, 20], [21, 22], [23, 24], [25, 26], [27, 28],
             [29, 30], [47, 48], [49, 50], [53, 54], [51, 52], [55, 56], [37, 38], [45, 46]]  # fmt: skip
COLORS = [[255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0], [0, 255, 0], [0, 255, 85],
          [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255], [0, 0, 255], [85, 0, 255], [170, 0, 255], [255, 0, 255],
          [255, 0, 170], [255, 0, 85]]  # fmt: skip


@torch.no_grad()
def network_maps(model: nn.Module, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 19) heatmaps and (H, W, 38) PAFs of a BGR image, from the network run on its device."""
    height, width = bgr.shape[:2]
    scale = SCALE * BOX_SIZE / height
    image = _resize(bgr, height * scale, width * scale)
    pad_down, pad_right = (-image.shape[0]) % STRIDE, (-image.shape[1]) % STRIDE
    padded = np.pad(image, ((0, pad_down), (0, pad_right), (0, 0)), constant_values=PAD_VALUE)
    data = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1)[None].astype(np.float32) / 256 - 0.5))
    device = next(model.parameters()).device
    pafs, heatmaps = model(data.to(device))
    maps = []
    for output in (heatmaps, pafs):
        array = output[0].float().cpu().numpy().transpose(1, 2, 0)
        array = _resize(array, array.shape[0] * STRIDE, array.shape[1] * STRIDE)
        array = array[: padded.shape[0] - pad_down, : padded.shape[1] - pad_right]
        maps.append(_resize(array, height, width).astype(np.float64))
    return maps[0], maps[1]


def _peaks(heatmaps: np.ndarray) -> list[list[tuple]]:
    """Per part, its local maxima above the threshold as (x, y, score, id), ids counted over all parts."""
    import cv2

    peaks, counter = [], 0
    for part in range(18):
        original = heatmaps[:, :, part]
        # scipy's gaussian_filter(sigma=3) as OpenCV computes it: 25 taps (truncate 4), mirrored borders.
        smooth = cv2.GaussianBlur(original, (25, 25), 3, borderType=cv2.BORDER_REFLECT)
        neighbours = np.zeros((4, *smooth.shape))
        neighbours[0, 1:, :], neighbours[1, :-1, :] = smooth[:-1, :], smooth[1:, :]
        neighbours[2, :, 1:], neighbours[3, :, :-1] = smooth[:, :-1], smooth[:, 1:]
        binary = np.logical_and.reduce([*(smooth >= n for n in neighbours), smooth > PEAK_THRESHOLD])
        ys, xs = np.nonzero(binary)
        peaks.append([(x, y, original[y, x], counter + i) for i, (x, y) in enumerate(zip(xs, ys))])
        counter += len(xs)
    return peaks


def _connections(peaks: list[list[tuple]], pafs: np.ndarray, height: int) -> list[np.ndarray | None]:
    """Per limb, the accepted (idA, idB, score, i, j) pairs of its two parts' peaks, greedily by PAF score."""
    connections = []
    for (a, b), channels in zip(LIMBS, LIMB_PAFS):
        field = pafs[:, :, [c - HEATMAP_CHANNELS for c in channels]]
        cand_a, cand_b = peaks[a - 1], peaks[b - 1]
        if not cand_a or not cand_b:
            connections.append(None)
            continue
        scored = []
        for i, pa in enumerate(cand_a):
            for j, pb in enumerate(cand_b):
                vec = np.subtract(pb[:2], pa[:2])
                norm = max(0.001, math.sqrt(vec[0] * vec[0] + vec[1] * vec[1]))
                vec = np.divide(vec, norm)
                points = zip(np.linspace(pa[0], pb[0], num=MID_POINTS), np.linspace(pa[1], pb[1], num=MID_POINTS))
                samples = np.array([field[int(round(y)), int(round(x))] for x, y in points])
                along = samples[:, 0] * vec[0] + samples[:, 1] * vec[1]
                score = sum(along) / len(along) + min(0.5 * height / norm - 1, 0)
                if len(np.nonzero(along > PAF_THRESHOLD)[0]) > 0.8 * len(along) and score > 0:
                    scored.append([i, j, score, score + pa[2] + pb[2]])
        connection = np.zeros((0, 5))
        for i, j, score, _ in sorted(scored, key=lambda c: c[2], reverse=True):
            if i not in connection[:, 3] and j not in connection[:, 4]:
                connection = np.vstack([connection, [cand_a[i][3], cand_b[j][3], score, i, j]])
                if len(connection) >= min(len(cand_a), len(cand_b)):
                    break
        connections.append(connection)
    return connections


def find_people(heatmaps: np.ndarray, pafs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenPose's part association: candidates (x, y, score, id) and people, each a row of 18 candidate ids
    (-1 where missing), the total score and the number of parts."""
    peaks = _peaks(heatmaps)
    connections = _connections(peaks, pafs, heatmaps.shape[0])
    candidates = np.array([peak for part in peaks for peak in part])
    people = -1 * np.ones((0, 20))
    for k, connection in enumerate(connections):
        if connection is None:
            continue
        index_a, index_b = np.array(LIMBS[k]) - 1
        for part_a, part_b, score in connection[:, :3]:
            found = [j for j in range(len(people)) if people[j][index_a] == part_a or people[j][index_b] == part_b][:2]
            if len(found) == 1 or (len(found) == 2 and ((people[found[0]] >= 0) & (people[found[1]] >= 0))[:-2].any()):
                j = found[0]
                if len(found) == 2 or people[j][index_b] != part_b:
                    people[j][index_b] = part_b
                    people[j][-1] += 1
                    people[j][-2] += candidates[int(part_b), 2] + score
            elif len(found) == 2:  # two disjoint people joined by this limb: merge them
                j1, j2 = found
                people[j1][:-2] += people[j2][:-2] + 1
                people[j1][-2:] += people[j2][-2:]
                people[j1][-2] += score
                people = np.delete(people, j2, 0)
            elif k < 17:
                row = -1 * np.ones(20)
                row[index_a], row[index_b] = part_a, part_b
                row[-1] = 2
                row[-2] = candidates[int(part_a), 2] + candidates[int(part_b), 2] + score
                people = np.vstack([people, row])
    keep = [i for i in range(len(people)) if not (people[i][-1] < 4 or people[i][-2] / people[i][-1] < 0.4)]
    return candidates, people[keep]


def draw_bodies(candidates: np.ndarray, people: np.ndarray, height: int, width: int) -> np.ndarray:
    """Limbs (at 60% colour) and then joints on a black (H, W, 3) canvas, as ControlNet was trained on."""
    import cv2

    canvas = np.zeros((height, width, 3), np.uint8)
    size = np.array([width, height], np.float64)
    for person in people:
        # Normalised and scaled back as controlnet_aux does, so that every pixel is rounded as there.
        points = [None if i == -1 else candidates[i][:2] / size * size for i in person[:18].astype(int)]
        for (a, b), color in zip(LIMBS[:17], COLORS):
            if points[a - 1] is None or points[b - 1] is None:
                continue
            xs, ys = np.array([points[a - 1][0], points[b - 1][0]]), np.array([points[a - 1][1], points[b - 1][1]])
            length = ((ys[0] - ys[1]) ** 2 + (xs[0] - xs[1]) ** 2) ** 0.5
            angle = math.degrees(math.atan2(ys[0] - ys[1], xs[0] - xs[1]))
            polygon = cv2.ellipse2Poly((int(np.mean(xs)), int(np.mean(ys))), (int(length / 2), 4), int(angle), 0, 360, 1)
            cv2.fillConvexPoly(canvas, polygon, [int(float(c) * 0.6) for c in color])
        for point, color in zip(points, COLORS):
            if point is not None:
                cv2.circle(canvas, (int(point[0]), int(point[1])), 4, color, thickness=-1)
    return canvas


class OpenposeMaps:
    """uint8 RGB frames (F, H, W, 3) -> pose maps of the same size; the network loads on first use (a run given
    --condition-video never needs its weights) and runs on the run's device."""

    def __init__(self, source: str, device: torch.device, detect_resolution: int = 512):
        self.source, self.device, self.detect_resolution = source, device, detect_resolution
        self.model: nn.Module | None = None

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        from PIL import Image

        if self.model is None:
            self.model = load_body_model(self.source).to(self.device)
        height, width = frames.shape[1:3]
        maps = []
        for frame in frames:
            image = _resize_to_multiple_of_64(frame, self.detect_resolution)
            heatmaps, pafs = network_maps(self.model, np.ascontiguousarray(image[:, :, ::-1]))
            canvas = draw_bodies(*find_people(heatmaps, pafs), *image.shape[:2])
            maps.append(np.array(Image.fromarray(canvas).resize((width, height))))
        return np.stack(maps)
