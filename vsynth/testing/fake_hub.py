"""Offline Hugging Face caches holding the default checkpoints' real layouts, with random weights.

Each repo of :mod:`vsynth.configs` (the real configs and file names of every default hub id)
is written as ``models--ORG--NAME/snapshots/<commit>/...`` with ``refs/main``, so that
``from_pretrained("org/name")`` and ``hf_hub_download`` find it exactly as they find a download,
with ``HF_HUB_OFFLINE=1`` and ``HF_HUB_CACHE`` pointing at it (see :func:`offline_hub`).

``scale="full"`` builds the real architectures (SD1.5's UNet alone is 3.4 GB in float32);
``scale="reduced"`` changes the real configs as little as it can to make them fast on a CPU:
every channel width and text width divided by about ten, text encoders of two layers; layer
counts per block, block types, attention layouts, head counts and vocabularies stay real.

Weights are random (seeded per repo), written under their real file names, in the first weight
file format each component's repo ships (safetensors, or ``.bin`` where the repo has only that).
The CLIP vocabulary (1 MB) is not in the repo: the tokenizers get vsynth's offline byte-level
vocabulary under the real tokenizer settings. Torch, diffusers and transformers are imported
when a cache is built, not when this module is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Iterator, Literal

Scale = Literal["reduced", "full"]
Precision = Literal["full", "fp16", "both"]  # which weight files to write where the repo also ships *.fp16.*

FORMAT = "1"  # part of every snapshot's commit hash: bump when the reduced configs change


def layouts() -> dict[str, dict]:
    """``{repo id: {"files": {path: size}, "weights": {component: file}}}`` of every default checkpoint."""
    return json.loads(resources.files("vsynth.configs").joinpath("layouts.json").read_text())


def real_config(repo_id: str, path: str) -> dict:
    """A real config file of ``repo_id`` as stored in :mod:`vsynth.configs`."""
    folder = repo_id.replace("/", "__")
    return json.loads(resources.files("vsynth.configs").joinpath(folder, path).read_text())


def commit_hash(repo_id: str, scale: Scale) -> str:
    return hashlib.sha1(f"vsynth-fake-hub/{FORMAT}/{scale}/{repo_id}".encode()).hexdigest()


def snapshot_dir(cache: str | Path, repo_id: str, scale: Scale = "reduced") -> Path:
    return Path(cache) / f"models--{repo_id.replace('/', '--')}" / "snapshots" / commit_hash(repo_id, scale)


def _narrow(width: int) -> int:
    """A real channel width divided by ten, kept a multiple of 32 (the real group-norm group count)."""
    return max(32, round(width / 10 / 32) * 32)


_TEXT_WIDTHS = {768: 48, 1024: 64}  # 12 and 16 heads of width 4
_TEXT_WIDTHS[1280] = 80  # SDXL's OpenCLIP-bigG: 20 heads of width 4
_TEXT_WIDTHS[768 + 1280] = 48 + 80  # SDXL's UNet attends to both text encoders' states side by side
_UMT5_WIDTH, _UMT5_VOCAB = 32, 98  # the offline character tokenizer of vsynth.tiny.wan has 98 ids
_T5_WIDTH = 64  # T5-XXL's 4096 (FLUX's text_encoder_2), 64 heads of width 1
_LLAMA_WIDTH = 32  # HunyuanVideo's Llama 3 8B (4096): 4 heads of 8, 3 layers (the pipeline reads the third-to-last states)


def reduce_config(cls_name: str, config: dict) -> dict:
    """The smallest change of a real config that keeps its structure: see the module docstring."""
    config = dict(config)
    if cls_name in ("UNet2DConditionModel", "UNet3DConditionModel", "ControlNetModel", "MotionAdapter"):
        config["block_out_channels"] = [_narrow(c) for c in config.get("block_out_channels", (320, 640, 1280, 1280))]
        if "cross_attention_dim" in config:
            config["cross_attention_dim"] = _TEXT_WIDTHS[config["cross_attention_dim"]]
        if config.get("addition_embed_type") == "text_time":  # SDXL: the pooled text (1280 -> 80) beside six size ids
            config["projection_class_embeddings_input_dim"] = 6 * config["addition_time_embed_dim"] + _TEXT_WIDTHS[1280]
        if cls_name == "UNet3DConditionModel":
            config["attention_head_dim"] = 8  # UNet3D reads it as the width of a head: 4 heads at 32 channels
    elif cls_name == "T2IAdapter":
        config["channels"] = [_narrow(c) for c in config["channels"]]
    elif cls_name == "AutoencoderKL":
        config["block_out_channels"] = [32, 32, 64, 64]
    elif cls_name in ("CLIPTextModel", "CLIPTextModelWithProjection"):
        width = _TEXT_WIDTHS[config["hidden_size"]]
        config.update(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=2)
        if cls_name == "CLIPTextModelWithProjection":
            config["projection_dim"] = _TEXT_WIDTHS[config["projection_dim"]]
    elif cls_name in ("WanTransformer3DModel", "WanVACETransformer3DModel"):
        config.update(num_layers=2, num_attention_heads=2, attention_head_dim=24, ffn_dim=64, text_dim=_UMT5_WIDTH, freq_dim=32)
        if "vace_layers" in config:
            config["vace_layers"] = [0, 1]
    elif cls_name == "AutoencoderKLWan":
        config.update(base_dim=8, num_res_blocks=1, **({"decoder_base_dim": 8} if config.get("decoder_base_dim") else {}))
    elif cls_name == "UMT5EncoderModel":
        config.update(vocab_size=_UMT5_VOCAB, d_model=_UMT5_WIDTH, d_kv=8, d_ff=64, num_layers=2, num_heads=2)
    elif cls_name == "FluxTransformer2DModel":  # layers real; 4 heads of 8 (RoPE axes summing to 8): 24 would be 46M parameters
        config.update(num_attention_heads=4, attention_head_dim=8, axes_dims_rope=[2, 2, 4], joint_attention_dim=_T5_WIDTH,
                      pooled_projection_dim=_TEXT_WIDTHS[config.get("pooled_projection_dim", 768)])  # fmt: skip
    elif cls_name == "CogVideoXTransformer3DModel":  # two layers of 2 heads of 16 (RoPE splits a head 4/6/6), over the reduced T5
        config.update(num_layers=2, num_attention_heads=2, attention_head_dim=16, time_embed_dim=32, text_embed_dim=_T5_WIDTH)
    elif cls_name == "AutoencoderKLCogVideoX":
        config.update(block_out_channels=[32, 32, 32, 32], layers_per_block=1)
    elif cls_name == "T5EncoderModel":  # heads and layers real, one channel per head
        config.update(d_model=_T5_WIDTH, d_kv=_T5_WIDTH // config["num_heads"], d_ff=160)
    elif cls_name == "LTXVideoTransformer3DModel":  # 2 of 28 blocks, 2 heads of 8, T5's reduced width
        config.update(num_layers=2, num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16, caption_channels=_T5_WIDTH)
    elif cls_name == "AutoencoderKLLTXVideo":  # the 0.9.1 layout (32x/8x, 128 channels, timestep-conditioned decoder) at small widths
        config.update(block_out_channels=[8, 8, 16, 16], decoder_block_out_channels=[8, 16, 32], layers_per_block=[1] * 5,
                      decoder_layers_per_block=[1] * 4)  # fmt: skip
    elif cls_name == "HunyuanVideoTransformer3DModel":  # layers real but two; 2 heads of 12 (RoPE axes summing to 12)
        config.update(num_layers=2, num_single_layers=2, num_attention_heads=2, attention_head_dim=12, rope_axes_dim=[4, 4, 4],
                      text_embed_dim=_LLAMA_WIDTH, pooled_projection_dim=_TEXT_WIDTHS[config.get("pooled_projection_dim", 768)])  # fmt: skip
    elif cls_name == "AutoencoderKLHunyuanVideo":
        config.update(block_out_channels=[32, 32, 64, 64], layers_per_block=1)
    elif cls_name == "LlamaModel":  # the offline word-level tokenizer of vsynth.tiny.hunyuan: its ids
        from vsynth.tiny.hunyuan import llama_tokenizer

        tokenizer = llama_tokenizer()
        config.update(vocab_size=len(tokenizer), hidden_size=_LLAMA_WIDTH, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    elif cls_name == "DPTForDepthEstimation":
        bit = dict(config["backbone_config"], embedding_size=32, hidden_sizes=[64, 128, 256, 512], num_groups=8)
        config.update(backbone_config=bit, hidden_size=48, intermediate_size=192, fusion_hidden_size=32,
                      neck_hidden_sizes=[64, 128, 48, 48], backbone_featmap_shape=[1, 256, 24, 24])  # fmt: skip
    return config


def _component_class(repo_id: str, component: str) -> str:
    """The class name of a component: from model_index.json in pipeline repos, else from config.json."""
    if component.startswith("lightning"):
        return "MotionAdapter"
    if component:
        return real_config(repo_id, "model_index.json")[component][1]
    config = real_config(repo_id, "config.json")
    return config.get("_class_name") or config["architectures"][0]


def _config_path(component: str) -> str:
    return f"{component}/config.json" if component else "config.json"


def _build_module(cls_name: str, config: dict):
    import diffusers
    import transformers

    public = {k: v for k, v in config.items() if not k.startswith("_")}
    if hasattr(diffusers, cls_name):
        return getattr(diffusers, cls_name).from_config(public)
    model_cls = getattr(transformers, cls_name)
    return model_cls(model_cls.config_class(**public))


def fp16_name(filename: str) -> str:
    """``unet/diffusion_pytorch_model.safetensors`` -> ``unet/diffusion_pytorch_model.fp16.safetensors``."""
    stem, _, suffix = filename.rpartition(".")
    return f"{stem}.fp16.{suffix}"


def _save_weights(module, path: Path, dtype=None, shards: list[str] = ()) -> None:
    import torch
    from safetensors.torch import save_file

    state, seen = {}, set()
    for k, v in module.state_dict().items():
        if v.numel() == 0 or v.data_ptr() not in seen:  # a tied tensor once, as save_pretrained writes it (T5's shared embedding)
            seen.add(v.data_ptr())
            state[k] = v.detach().to(dtype or v.dtype).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".index.json"):  # sharded as the repo is: the tensors in order over its shards, and their index
        keys, weight_map = list(state), {}
        for i, shard in enumerate(shards):
            part = keys[i * len(keys) // len(shards) : (i + 1) * len(keys) // len(shards)]
            save_file({k: state[k] for k in part}, str(path.parent / shard), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(part, shard))
        total = sum(v.numel() * v.element_size() for v in state.values())
        _write_json(path, {"metadata": {"total_size": total}, "weight_map": weight_map})
    elif path.suffix == ".safetensors":
        save_file(state, str(path), metadata={"format": "pt"})
    else:
        torch.save(state, path)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _shards(repo_id: str, index: str) -> list[str]:
    """The shard files of a shard index, by name, as the repo lists them (``model-00001-of-00002.safetensors``, ...)."""
    stem = PurePosixPath(index).name.removesuffix(".safetensors.index.json")
    folder = str(PurePosixPath(index).parent)
    names = (PurePosixPath(f) for f in layouts()[repo_id]["files"])
    return sorted(n.name for n in names if str(n.parent) == folder and n.name.startswith(f"{stem}-") and n.suffix == ".safetensors")


def _write_t5_tokenizer(folder: Path) -> None:
    """T5's tokenizer.json (2.4 MB) is not stored: vsynth's offline T5-style one, under the repo's settings."""
    from vsynth.tiny.build import tiny_t5_tokenizer

    tokenizer = tiny_t5_tokenizer()
    tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))


def _write_vocabulary(folder: Path) -> None:
    from vsynth.tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    (folder / "vocab.json").write_text(json.dumps(tokenizer.get_vocab(), ensure_ascii=False), "utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", "utf-8")


def _component_of(snapshot: Path, component: str) -> str | None:
    """The class model_index.json names for ``component``, if the repo has one."""
    index = snapshot / "model_index.json"
    return json.loads(index.read_text()).get(component, [None, None])[1] if index.is_file() else None


def _write_repo(snapshot: Path, repo_id: str, scale: Scale, precision: Precision, seed: int) -> None:
    import torch

    folder = resources.files("vsynth.configs").joinpath(repo_id.replace("/", "__"))
    for entry in _walk(folder) if folder.is_dir() else ():  # AnimateDiff-Lightning ships no config
        relative = entry[len(str(folder)) + 1 :]
        target = snapshot / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(entry, target)
    if (snapshot / "model_index.json").is_file() and "LlamaModel" in (snapshot / "model_index.json").read_text():
        from vsynth.tiny.hunyuan import llama_tokenizer

        llama_tokenizer().save_pretrained(snapshot / "tokenizer")  # HunyuanVideo's Llama 3 tokenizer: tokenizer.json
    if (snapshot / "tokenizer").is_dir() and _component_of(snapshot, "tokenizer") == "T5Tokenizer":
        _write_t5_tokenizer(snapshot / "tokenizer")  # CogVideoX's T5 tokenizer
    elif (snapshot / "tokenizer").is_dir():
        _write_vocabulary(snapshot / "tokenizer")
    elif (snapshot / "model_index.json").is_file() and "UMT5EncoderModel" in (snapshot / "model_index.json").read_text():
        from vsynth.tiny.wan import umt5_tokenizer

        umt5_tokenizer().save_pretrained(snapshot / "tokenizer")  # Wan's: tokenizer.json, as transformers 5 saves it
    elif (snapshot / "model_index.json").is_file() and real_config(repo_id, "model_index.json").get("text_encoder", [None, None])[1] == "T5EncoderModel":
        (snapshot / "tokenizer").mkdir()
        _write_t5_tokenizer(snapshot / "tokenizer")  # LTX-Video's T5 tokenizer
    if (snapshot / "tokenizer_2").is_dir() and "T5Tokenizer" not in (snapshot / "model_index.json").read_text():  # SDXL's second CLIP tokenizer
        _write_vocabulary(snapshot / "tokenizer_2")
    if (snapshot / "tokenizer_2" / "tokenizer_config.json").is_file() and "T5Tokenizer" in (snapshot / "model_index.json").read_text():
        _write_t5_tokenizer(snapshot / "tokenizer_2")  # FLUX's T5 tokenizer
    written_configs = set()
    for component, filename in layouts()[repo_id]["weights"].items():
        cls_name = _component_class(repo_id, component)
        if cls_name == "MotionAdapter" and component.startswith("lightning"):
            config = {}  # the repo ships no config.json: its checkpoints fit MotionAdapter's defaults
        else:
            config = real_config(repo_id, _config_path(component))
        if scale == "reduced":
            config = reduce_config(cls_name, config)
            if component.startswith("lightning") and "config.json" not in written_configs:
                # Only the reduced form needs one: it is how a reduced checkpoint says its shape.
                _write_json(snapshot / "config.json", {"_class_name": cls_name, **config})
                written_configs.add("config.json")
            elif not component.startswith("lightning"):
                _write_json(snapshot / _config_path(component), config)
        torch.manual_seed(seed)
        seed += 1
        module = _build_module(cls_name, config)
        has_fp16 = fp16_name(filename) in layouts()[repo_id]["files"]
        if precision != "fp16" or not has_fp16:
            _save_weights(module, snapshot / filename, shards=_shards(repo_id, filename) if filename.endswith(".index.json") else ())
        if precision != "full" and has_fp16:
            _save_weights(module, snapshot / fp16_name(filename), torch.float16)


def _walk(folder) -> Iterator[str]:
    for entry in folder.iterdir():
        if entry.is_dir():
            yield from _walk(entry)
        else:
            yield str(entry)


def build_fake_hub(
    cache: str | Path, repos: list[str] | None = None, *, scale: Scale = "reduced", precision: Precision = "full"
) -> Path:
    """Write ``repos`` (default: every default checkpoint) into the hub cache ``cache`` and return it.

    ``precision`` says which weight files a component whose repo also ships an fp16 variant gets:
    the full ones, only the ``*.fp16.*`` ones (as some model cards tell users to download), or both.
    A repo already there is kept (so one cache holds one ``precision``); each is written into a
    partial folder (``.COMMIT.vsynth-partial-PID``, marked as vsynth's) and renamed into place, so an
    interrupted build never leaves half a snapshot: an error or Ctrl-C removes it, and what a killed
    build left, in any repo of ``cache``, is removed by the next build.
    """
    from vsynth.core.media.outputs import PARTIAL_MARKER, create_partial, partial_path, remove_debris

    cache = Path(cache)
    for snapshots in cache.glob("models--*/snapshots"):
        remove_debris(snapshots)
    for i, repo_id in enumerate(repos or list(layouts())):
        snapshot = snapshot_dir(cache, repo_id, scale)
        if snapshot.is_dir():
            continue
        staging = partial_path(snapshot)
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        create_partial(staging)
        try:
            _write_repo(staging, repo_id, scale, precision, seed=7000 + 100 * i)
            (staging / PARTIAL_MARKER).unlink()
            os.rename(staging, snapshot)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        refs = snapshot.parents[1] / "refs"
        refs.mkdir(exist_ok=True)
        (refs / "main").write_text(snapshot.name)
    return cache


@contextmanager
def offline_hub(cache: str | Path) -> Iterator[Path]:
    """Within the block, the hub is ``cache`` and offline, as ``HF_HUB_OFFLINE=1 HF_HUB_CACHE=cache`` makes it.

    The environment is set for code that reads it later (vsynth's reachability probe), and
    huggingface_hub's constants, which it reads once at import, are set for this process too.
    """
    from huggingface_hub import constants

    from vsynth.core.diffusion.weights import hub_reachable

    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_HUB_CACHE")}
    saved = (constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE)
    os.environ.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache))
    constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE = True, str(cache)
    hub_reachable.cache_clear()
    try:
        yield Path(cache)
    finally:
        constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE = saved
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        hub_reachable.cache_clear()


def write_wan_folder(folder: str | Path, repo_id: str = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", *, text_layers: int = 2) -> Path:
    """A Wan 2.1 pipeline folder with its real transformer and VAE (random weights, float32: 5.7 GB for the 1.3B) and
    UMT5 cut to ``text_layers`` of its 24 layers at its real width: the whole UMT5-XXL is 22.7 GB in float32, more
    than a 24 GB machine holds beside the transformer. The text encoder runs once per prompt, before the transformer
    (and is released from the GPU then), so the transformer's and VAE's figures are those of the real model."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from vsynth.tiny.wan import umt5_tokenizer

    repo = resources.files("vsynth.configs").joinpath(repo_id.replace("/", "__"))

    def config(component):
        return {k: v for k, v in json.loads(repo.joinpath(component, "config.json").read_text()).items() if not k.startswith("_")}

    torch.manual_seed(0)
    text = UMT5Config(**{**config("text_encoder"), "num_layers": text_layers, "vocab_size": 98})
    pipe = WanPipeline(tokenizer=umt5_tokenizer(), text_encoder=UMT5EncoderModel(text), vae=AutoencoderKLWan.from_config(config("vae")),
                       scheduler=UniPCMultistepScheduler.from_config(json.loads(repo.joinpath("scheduler", "scheduler_config.json").read_text())),
                       transformer=WanTransformer3DModel.from_config(config("transformer")))  # fmt: skip
    folder = Path(folder)
    pipe.save_pretrained(folder)
    return folder
