"""The offline tiny models load through the real from_pretrained paths and behave like their families."""

import os
import subprocess
import sys
import tempfile

import pytest
import torch

from vsynth.tiny import build as tiny


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Run on one thread: on a shared 2-core machine, when a core is busy elsewhere, torch's OpenMP
    threads spin-wait on each other and these op-bound tiny models run 3-7x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Every test gets its own empty VSYNTH_CACHE (the session-wide one may already hold builds)."""
    monkeypatch.setenv("VSYNTH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every tiny model exported once for the module."""
    return tiny.export_all(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def sd15(exported):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(exported["sd15"], safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _prompt_embeds(pipe):
    ids = pipe.tokenizer("a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        return pipe.text_encoder(ids)[0]


def test_importing_does_not_import_torch():
    code = "import sys, vsynth.tiny as t; assert t.TINY_MODELS and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tokenizer_vocabulary_encoding_and_round_trip(tmp_path):
    from transformers import CLIPTokenizer

    tok = tiny.tiny_tokenizer()
    assert len(tok) == 514
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (512, 513, 513)
    ids = tok("a cat", padding="max_length", max_length=tok.model_max_length).input_ids
    assert tok.model_max_length == 77 and len(ids) == 77
    assert ids[0] == 512 and ids[-1] == 513
    tok.save_pretrained(tmp_path)
    loaded = CLIPTokenizer.from_pretrained(tmp_path)
    assert len(loaded) == 514 and loaded("a cat").input_ids == tok("a cat").input_ids


def test_unknown_name_lists_the_available_ones(tmp_path):
    with pytest.raises(KeyError, match="controlnet-canny"):
        tiny.export("sd21", tmp_path)
    with pytest.raises(KeyError, match="zeroscope"):
        tiny.tiny_weights("sd21")


def test_sd15_loads_and_runs_at_two_sizes(sd15):
    assert sd15.vae_scale_factor == 8
    assert sd15.scheduler.config.steps_offset == 1 and sd15.scheduler.config.beta_schedule == "scaled_linear"
    embeds = _prompt_embeds(sd15)
    assert embeds.shape == (1, 77, 32)
    with torch.no_grad():
        for size in (64, 128):
            latents = sd15.vae.encode(torch.randn(1, 3, size, size)).latent_dist.mean
            assert latents.shape == (1, 4, size // 8, size // 8)
            eps = sd15.unet(latents, 10, encoder_hidden_states=embeds).sample
            assert eps.shape == latents.shape and torch.isfinite(eps).all()


def test_controlnets_load_and_follow_the_control_image(exported, sd15):
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    canny = ControlNetModel.from_pretrained(exported["controlnet-canny"])
    depth = ControlNetModel.from_pretrained(exported["controlnet-depth"])
    assert not torch.equal(canny.controlnet_mid_block.weight, depth.controlnet_mid_block.weight)
    pipe = StableDiffusionControlNetPipeline(
        **{k: getattr(sd15, k) for k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")},
        controlnet=canny,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    left, top = torch.zeros(2, 1, 3, 64, 64)
    left[..., :32] = 1
    top[..., :32, :] = 1
    results = [
        pipe("a cat", image=image, num_inference_steps=2, height=64, width=64, output_type="latent",
             generator=torch.Generator().manual_seed(0)).images
        for image in (left, top)
    ]
    assert results[0].shape == (1, 4, 8, 8)
    assert (results[0] - results[1]).abs().max() > 1e-3


def test_depth_estimator_loads_with_auto_classes(exported):
    import numpy as np
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    model = AutoModelForDepthEstimation.from_pretrained(exported["depth-estimator"])
    processor = AutoImageProcessor.from_pretrained(exported["depth-estimator"])
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    with torch.no_grad():
        depth = model(**processor(images=image, return_tensors="pt")).predicted_depth
    assert depth.shape == (1, 64, 64) and torch.isfinite(depth).all()


def test_zeroscope_loads_and_runs(exported):
    from diffusers import TextToVideoSDPipeline

    pipe = TextToVideoSDPipeline.from_pretrained(exported["zeroscope"])
    pipe.set_progress_bar_config(disable=True)
    embeds = _prompt_embeds(pipe)
    assert embeds.shape == (1, 77, 48)  # not sd15's width: mixing up the text encoders must fail
    with torch.no_grad():
        for size in (64, 128):
            latents = torch.randn(1, 4, 8, size // 8, size // 8)
            assert pipe.unet(latents, 10, encoder_hidden_states=embeds).sample.shape == latents.shape
    frames = pipe("a cat", num_inference_steps=2, height=64, width=64, num_frames=4, output_type="latent",
                  generator=torch.Generator().manual_seed(0)).frames
    assert frames.shape == (1, 4, 4, 8, 8)


def test_zeroscope_shares_the_sd15_vae(exported):
    for file in ("config.json", "diffusion_pytorch_model.safetensors"):
        sd15_vae = (exported["sd15"] / "vae" / file).read_bytes()
        assert sd15_vae == (exported["zeroscope"] / "vae" / file).read_bytes()


def test_export_is_deterministic(exported, tmp_path):
    again = tiny.export("sd15", tmp_path / "sd15")
    weights = "unet/diffusion_pytorch_model.safetensors"
    assert (again / weights).read_bytes() == (exported["sd15"] / weights).read_bytes()


def test_tiny_weights_builds_once_into_the_cache(tmp_path, monkeypatch):
    path = tiny.tiny_weights("controlnet-depth")
    assert path == tmp_path / "cache" / "tiny" / f"v{tiny.TINY_FORMAT}" / "controlnet-depth"
    assert (path / "config.json").is_file()
    assert [p.name for p in path.parent.iterdir()] == ["controlnet-depth"]  # no staging dir left behind

    def fail(*args):
        raise AssertionError("rebuilt a cached model")

    monkeypatch.setattr(tiny, "export", fail)
    assert tiny.tiny_weights("controlnet-depth") == path


def test_tiny_weights_uses_the_copy_of_a_concurrent_builder(tmp_path, monkeypatch):
    """If another process renames its build into place first, ours is discarded and theirs returned."""
    real_export = tiny.export

    def export_while_another_process_wins(name, directory):
        real_export(name, directory)
        winner = tmp_path / "cache" / "tiny" / f"v{tiny.TINY_FORMAT}" / name
        real_export(name, winner)
        (winner / "theirs").touch()

    monkeypatch.setattr(tiny, "export", export_while_another_process_wins)
    path = tiny.tiny_weights("controlnet-canny")
    assert (path / "theirs").is_file()
    assert [p.name for p in path.parent.iterdir()] == ["controlnet-canny"]


def test_a_damaged_cached_model_is_rebuilt(caplog):
    path = tiny.tiny_weights("controlnet-canny")
    weights = path / "diffusion_pytorch_model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])  # a truncated copy, as a full disk or a killed copy leaves
    tiny._verified.clear()  # a new process
    assert tiny.tiny_weights("controlnet-canny") == path
    assert weights.read_bytes() == good
    assert "is damaged" in caplog.text and [p.name for p in path.parent.iterdir()] == ["controlnet-canny"]


def test_a_cache_that_cannot_be_written_says_what_to_set(monkeypatch):
    from vsynth.errors import VsynthInputError

    monkeypatch.setenv("VSYNTH_CACHE", "/proc/vsynth-cache")  # even root cannot create folders there
    with pytest.raises(VsynthInputError, match=r"^VSYNTH_CACHE=/proc/vsynth-cache cannot be written: set VSYNTH_CACHE"):
        tiny.tiny_weights("controlnet-canny")


@pytest.mark.parametrize("home", ["", "/proc"], ids=["empty HOME", "read-only HOME"])
def test_without_a_usable_home_the_cache_falls_back_to_a_temporary_folder(monkeypatch, tmp_path, home):
    monkeypatch.delenv("VSYNTH_CACHE")
    monkeypatch.setenv("HOME", home)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    assert tiny._cache_root().parents[1] == tmp_path / "tmp" / f"vsynth-cache-{os.getuid()}"
