"""The loading path of real checkpoints (issue 14), on an offline fake hub cache of the real layouts.

The cache holds the default checkpoints' real configs and file names with random weights at the
reduced scale of :mod:`vsynth.testing.fake_hub`; models load from it by hub id, as a user's
download loads.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vsynth.core.host.registry import get_registry
from vsynth.core.run.config import RunConfig
from vsynth.core.run.pipeline import plan_run
from vsynth.errors import VsynthInputError, WeightsUnavailableError
from vsynth.testing import tiny_runtime
from vsynth.testing.fake_hub import build_fake_hub, fp16_name, layouts, offline_hub, snapshot_dir

SD15_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
LIGHTNING_ID = "ByteDance/AnimateDiff-Lightning"
REPOS = [
    LIGHTNING_ID,
    SD15_ID,
    "stable-diffusion-v1-5/stable-diffusion-inpainting",
    "timbrooks/instruct-pix2pix",
    "lllyasviel/control_v11p_sd15_canny",
    "lllyasviel/control_v11f1p_sd15_depth",
    "lllyasviel/control_v11p_sd15_openpose",
    "TencentARC/t2iadapter_canny_sd15v2",
    "TencentARC/t2iadapter_depth_sd15v2",
    "Intel/dpt-hybrid-midas",
]
# The SD1.5 family (SD's latent space): FLUX's IDMs sample with their own flow schedule (tests/test_flux.py).
BUILTIN_IDMS = sorted(
    name for name, spec in get_registry().models.items()
    if spec.kind == "idm" and spec.plugin == "vsynth" and spec.latent_space.name == "sd-vae"
)  # fmt: skip

# SD1.5's DDIM as REFERENCE.md states it: what every IDM samples and inverts with.
REFERENCE_DDIM = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "set_alpha_to_one": False,
    "clip_sample": False,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}


@pytest.fixture(scope="session")
def fake_hub(tmp_path_factory):
    return build_fake_hub(tmp_path_factory.mktemp("loading-hub") / "hub", REPOS)


def _load(name: str, sources: dict[str, str] | None = None, runtime=None, **params):
    """Load a built-in model from its default hub ids, with ``sources`` replacing some of them."""
    spec = get_registry().model(name)
    validated = spec.params.model_validate(params)
    sources = {**{w.role: w.id for w in spec.weights}, **(sources or {})}
    return spec.load_impl().load(spec, validated, sources, runtime or tiny_runtime())


def _scheduler_settings(model) -> list[tuple[str, dict]]:
    """(class, public config) of the schedulers an IDM samples and inverts with."""
    denoisers = {id(d): d for d in (model.denoiser, model.inversion_denoiser)}.values()
    return [
        (type(d.scheduler).__name__, {k: v for k, v in d.scheduler.config.items() if not k.startswith("_")}) for d in denoisers
    ]


def _assert_reference(model) -> None:
    from diffusers import DDIMScheduler

    reference = {k: v for k, v in DDIMScheduler(**REFERENCE_DDIM).config.items() if not k.startswith("_")}
    for cls, config in _scheduler_settings(model):
        assert (cls, config) == ("DDIMScheduler", reference)
    scheduler = model.denoiser.new_scheduler()
    scheduler.set_timesteps(50)
    assert scheduler.timesteps[0] == 981 and scheduler.timesteps[-1] == 1


@pytest.mark.parametrize("name", BUILTIN_IDMS)
def test_every_idm_samples_with_sd15_ddim(fake_hub, name):
    """instruct-pix2pix's repo ships EulerAncestral; every IDM still samples with SD1.5's DDIM."""
    with offline_hub(fake_hub):
        _assert_reference(_load(name))


def _finetune_with_a_foreign_scheduler(fake_hub, folder):
    """An SD1.5 finetune folder whose scheduler config is a minimal EulerAncestral one, as finetunes ship."""
    shutil.copytree(snapshot_dir(fake_hub, SD15_ID), folder)
    scheduler = folder / "scheduler" / "scheduler_config.json"
    scheduler.unlink()
    scheduler.write_text(json.dumps({"_class_name": "EulerAncestralDiscreteScheduler", "beta_schedule": "scaled_linear"}))
    return folder


def test_a_finetune_passed_as_idm_weights_samples_with_sd15_ddim(fake_hub, tmp_path):
    finetune = _finetune_with_a_foreign_scheduler(fake_hub, tmp_path / "finetune")
    with offline_hub(fake_hub):
        _assert_reference(_load("sd15", {"base": str(finetune)}))


def test_a_finetune_passed_as_base_samples_with_sd15_ddim(fake_hub, tmp_path):
    finetune = _finetune_with_a_foreign_scheduler(fake_hub, tmp_path / "finetune")
    with offline_hub(fake_hub):
        _assert_reference(_load("controlnet-canny", {"base": str(finetune)}))


def _cache_without(fake_hub, tmp_path, repo_id: str, removed: str):
    """A view of ``fake_hub`` in which ``repo_id``'s snapshot lacks ``removed`` (a file or a folder)."""
    view = tmp_path / "hub"
    view.mkdir()
    for repo in fake_hub.iterdir():
        (view / repo.name).symlink_to(repo)
    name = f"models--{repo_id.replace('/', '--')}"
    (view / name).unlink()
    shutil.copytree(fake_hub / name, view / name)
    target = snapshot_dir(view, repo_id) / removed
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    return view


def _plan_lightning(tmp_path, **options):
    return plan_run(RunConfig(vdm="animatediff-lightning", prompt="a ball", options=options, out=tmp_path / "out"))


@pytest.mark.parametrize(
    ("repo_id", "removed", "said"),
    [
        (LIGHTNING_ID, "animatediff_lightning_4step_diffusers.safetensors",
         "the top level holds animatediff_lightning_1step_diffusers.safetensors, animatediff_lightning_2step_diffusers.safetensors, "
         "animatediff_lightning_8step_diffusers.safetensors"),
        (SD15_ID, "unet/config.json", "unet/config.json (unet/ holds diffusion_pytorch_model.safetensors)"),
        (SD15_ID, "text_encoder", "text_encoder/config.json (there is no text_encoder/)"),
        (SD15_ID, "tokenizer/merges.txt", "tokenizer/tokenizer.json or tokenizer/merges.txt (tokenizer/ holds "),
    ],
)  # fmt: skip
def test_a_file_missing_from_the_cache_is_named_before_anything_loads(fake_hub, tmp_path, repo_id, removed, said):
    """plan_run checks every file of every component, so a run fails in its planning step, in one line."""
    with offline_hub(_cache_without(fake_hub, tmp_path, repo_id, removed)):
        with pytest.raises(WeightsUnavailableError) as error:
            _plan_lightning(tmp_path)
    message = str(error.value)
    assert f"'{repo_id}'" in message and said in message and "\n" not in message


def test_the_lightning_file_of_the_chosen_steps_is_the_one_checked(fake_hub, tmp_path):
    view = _cache_without(fake_hub, tmp_path, LIGHTNING_ID, "animatediff_lightning_4step_diffusers.safetensors")
    with offline_hub(view):
        plan = _plan_lightning(tmp_path, checkpoint_steps=8)
    assert plan.sources["vdm"]["lightning"] == LIGHTNING_ID


def test_a_local_folder_missing_a_file_is_named_before_anything_loads(fake_hub, tmp_path):
    folder = tmp_path / "sd15"
    shutil.copytree(snapshot_dir(fake_hub, SD15_ID), folder)
    (folder / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    said = r"-o base=DIR.*lacks vae/diffusion_pytorch_model.safetensors or vae/diffusion_pytorch_model.bin or .*\(vae/ holds config.json\)"
    with offline_hub(fake_hub), pytest.raises(VsynthInputError, match=said):
        _plan_lightning(tmp_path, base=str(folder))


@pytest.fixture(scope="session")
def unreachable_hub_run(fake_hub, tmp_path_factory):
    """`vsynth run` (T2I-Adapter, whose repo ships only .bin, with Lightning) in a fresh process, every file
    cached, no HF_HUB_OFFLINE, an endpoint that refuses connections: (exit code, output, seconds)."""
    from vsynth.testing import write_sample_video

    root = tmp_path_factory.mktemp("unreachable")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HUB_CACHE=str(fake_hub), HF_ENDPOINT="http://127.0.0.1:9", PYTHONPATH=os.pathsep.join(sys.path))
    args = ["run", "--idm", "t2i-adapter-canny", "--vdm", "animatediff-lightning", "-o", "vdm.checkpoint_steps=1",
            "--video", str(write_sample_video(root / "in.mp4", frames=2)), "--prompt", "a ball", "--frames", "2",
            "--stride", "1", "--steps", "1", "--height", "64", "--width", "64", "--out", str(root / "out")]  # fmt: skip
    start = time.monotonic()
    try:
        run = subprocess.run([sys.executable, "-c", "from vsynth.cli import main; main()", *args], env=env,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        return None, f"still loading after {exc.timeout} s", exc.timeout
    return run.returncode, run.stdout + run.stderr, time.monotonic() - start


def test_an_unreachable_hub_is_probed_once_then_loading_stays_offline(unreachable_hub_run):
    """The run loads at once, without huggingface_hub's retried requests (which took minutes)."""
    code, output, seconds = unreachable_hub_run
    assert code == 0, output[-2000:]
    assert "Retrying" not in output
    assert seconds < 60


@pytest.mark.parametrize("noise", ["Could not reach the Hub", "local_dir_use_symlinks", "An error occurred while trying to fetch"])
def test_an_offline_run_keeps_the_libraries_fallback_messages_out_of_its_output(unreachable_hub_run, noise):
    code, output, _ = unreachable_hub_run
    assert code == 0 and noise not in output, output[-2000:]


# ---------------------------------------------------------------------------- fp16 variants


def _runtime(dtype: str):
    import torch

    from vsynth.core.diffusion.inputs import Runtime

    return Runtime(torch.device("cpu"), getattr(torch, dtype))


@pytest.fixture(scope="session")
def fp16_only_hub(tmp_path_factory):
    """SD1.5 with only its *.fp16.* weight files, as some model cards tell users to download; Lightning (no variant)."""
    return build_fake_hub(tmp_path_factory.mktemp("fp16-hub") / "hub", [SD15_ID, LIGHTNING_ID], precision="fp16")


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_a_cache_of_fp16_files_only_plans_and_loads(fp16_only_hub, tmp_path, dtype):
    with offline_hub(fp16_only_hub):
        _plan_lightning(tmp_path)
        model = _load("sd15", runtime=_runtime(dtype))
    assert str(model.denoiser.unet.dtype) == f"torch.{dtype}"


@pytest.fixture(scope="session")
def both_precisions(tmp_path_factory):
    """An SD1.5 folder holding the full and the fp16 weight files."""
    cache = build_fake_hub(tmp_path_factory.mktemp("both-hub") / "hub", [SD15_ID], precision="both")
    return snapshot_dir(cache, SD15_ID)


@pytest.mark.parametrize(("dtype", "damaged"), [("float16", "full"), ("float32", "fp16")])
def test_a_run_reads_the_weight_files_of_its_precision(both_precisions, tmp_path, dtype, damaged):
    """float16 reads the fp16 variant (half the bytes), float32 the full files: the other kind may be garbage."""
    folder = tmp_path / "sd15"
    shutil.copytree(both_precisions, folder)
    unet = "unet/diffusion_pytorch_model.safetensors"
    (folder / (unet if damaged == "full" else fp16_name(unet))).write_bytes(b"garbage")
    model = _load("sd15", {"base": str(folder)}, runtime=_runtime(dtype))
    assert str(model.denoiser.unet.dtype) == f"torch.{dtype}"


def _size_gb(size) -> float | None:
    """A layouts.json size: bytes, or the hub's rounded '1.45 GB' / '908 MB'."""
    if isinstance(size, int):
        return size / 1e9
    if isinstance(size, str):
        number, unit = size.split()
        return float(number) * {"GB": 1.0, "MB": 1e-3, "kB": 1e-6}[unit]
    return None


def _read_gb(weights) -> float | None:
    """What a run reads of ``weights`` by its files and vsynth/configs/layouts.json: None where a size is unknown."""
    files = layouts()[weights.id]["files"]
    total = 0.0
    for entry in weights.files:
        name = next((n for n in entry.format(checkpoint_steps=4).split("|") if n in files), None)
        if name is None or not name.endswith((".safetensors", ".bin")):
            continue
        if _size_gb(files[name]) is None:
            return None
        total += _size_gb(files[name])
    return total


@pytest.mark.parametrize("weights", sorted({w for s in get_registry().models.values() if s.plugin == "vsynth" for w in s.weights},
                                           key=lambda w: (w.id, w.role)), ids=lambda w: f"{w.role}:{w.id}")  # fmt: skip
def test_the_size_a_spec_reports_is_what_a_run_reads(weights):
    """Where layouts.json knows every size; the others were measured on the hub (issue 14)."""
    read = _read_gb(weights)
    if read is None:
        pytest.skip(f"{weights.id}: a weight file's size is not in layouts.json")
    assert weights.size_gb == pytest.approx(read, abs=0.05)


# ---------------------------------------------------------------------------- weights nobody uses


@pytest.mark.parametrize("idm", ["instruct-pix2pix", "sd-inpaint"])
@pytest.mark.parametrize("bridge", ["idm-only", "idm-then-vdm", "encapsulated"])
def test_a_bridge_that_never_inverts_loads_no_second_sd15(fake_hub, tmp_path, idm, bridge):
    """Their SD1.5 base serves BIVDiff's image inversion only: other bridges leave it unlocated and unloaded."""
    from vsynth.testing import write_sample_video

    video = write_sample_video(tmp_path / "in.mp4", frames=2)
    inputs = {"instruct-pix2pix": {}, "sd-inpaint": {"outpaint": "horizontal"}}[idm]
    config = RunConfig(idm=idm, vdm="animatediff-lightning", bridge=bridge, video=video, prompt="a ball", frames=2, stride=1,
                       height=64, width=64, options={"vdm.checkpoint_steps": 1}, out=tmp_path / "out", **inputs)  # fmt: skip
    with offline_hub(fake_hub):
        plan = plan_run(config)
        assert "base" not in plan.sources["idm"]
        spec = get_registry().model(idm)
        model = spec.load_impl().load(spec, plan.params["idm"], plan.sources["idm"], tiny_runtime())
    assert model.inversion_denoiser is None and len(model.unets()) == 1


def test_mixed_inversion_still_loads_the_sd15_base(fake_hub, tmp_path):
    from vsynth.testing import write_sample_video

    config = RunConfig(idm="instruct-pix2pix", vdm="animatediff-lightning", video=write_sample_video(tmp_path / "in.mp4", frames=2),
                       prompt="a ball", frames=2, stride=1, options={"vdm.checkpoint_steps": 1}, out=tmp_path / "out")  # fmt: skip
    with offline_hub(fake_hub):
        assert plan_run(config).sources["idm"]["base"] == SD15_ID


def _as_blobs(snapshot, folder: str, content_from=None):
    """Store ``snapshot/folder``'s files as the hub cache does: symlinks to ``blobs/<sha256>`` (optionally
    with the content of the same files in ``content_from``, another snapshot)."""
    import hashlib

    blobs = snapshot.parents[1] / "blobs"
    blobs.mkdir(exist_ok=True)
    for file in sorted((snapshot / folder).iterdir()):
        data = ((content_from / folder / file.name) if content_from else file).read_bytes()
        blob = blobs / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        file.unlink()
        file.symlink_to(os.path.relpath(blob, file.parent))


def test_two_repos_shipping_the_same_vae_files_hold_one_vae(fake_hub, tmp_path):
    """instruct-pix2pix ships SD1.5's VAE: beside AnimateDiff-Lightning (on SD1.5) one copy is loaded."""
    view = _cache_without(fake_hub, tmp_path, "timbrooks/instruct-pix2pix", "safety_checker")
    name = f"models--{SD15_ID.replace('/', '--')}"
    (view / name).unlink()
    shutil.copytree(fake_hub / name, view / name)
    sd15, pix2pix = snapshot_dir(view, SD15_ID), snapshot_dir(view, "timbrooks/instruct-pix2pix")
    _as_blobs(sd15, "vae")
    _as_blobs(pix2pix, "vae", content_from=sd15)
    with offline_hub(view):
        idm = _load("instruct-pix2pix")
        vdm = _load("animatediff-lightning", checkpoint_steps=1)
    assert idm.codec.vae is vdm.codec.vae
    assert idm.denoiser.unet is not idm.inversion_denoiser.unet  # UNets are never shared


# ---------------------------------------------------------------------------- load-time transients


def _load_tiny(name: str, dtype: str, **params):
    from vsynth.core.diffusion.weights import resolve_sources

    spec = get_registry().model(name)
    validated = spec.params.model_validate(params)
    return spec.load_impl().load(spec, validated, resolve_sources(spec, None, validated.model_dump(), tiny=True), _runtime(dtype))


def _plain_motion_unet(name: str, dtype: str):
    """The motion UNet as diffusers' own path builds it: a float32 adapter with random init, every weight copied, cast."""
    import torch
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
    from safetensors.torch import load_file

    from vsynth.core.diffusion.weights import resolve_sources

    spec = get_registry().model(name)
    sources = resolve_sources(spec, None, {}, tiny=True)
    unet = UNet2DConditionModel.from_pretrained(sources["base"], subfolder="unet")
    if name == "animatediff":
        adapter = MotionAdapter.from_pretrained(sources["motion_adapter"])
    else:
        folder = Path(sources["lightning"])
        adapter = MotionAdapter(**{k: v for k, v in json.loads((folder / "config.json").read_text()).items() if not k.startswith("_")})
        adapter.load_state_dict(load_file(str(folder / "animatediff_lightning_1step_diffusers.safetensors")))
    return UNetMotionModel.from_unet2d(unet, adapter).to(getattr(torch, dtype))


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("name", ["animatediff", "animatediff-lightning"])
def test_the_motion_unet_holds_the_checkpoints_tensors_without_a_copy(monkeypatch, name, dtype):
    """The motion UNet takes the SD1.5 UNet's tensors themselves (and Lightning's adapter the checkpoint's,
    where no cast is needed): nothing is randomly initialised, no weight is held twice while loading
    (a float32 copy of the SD1.5 UNet is 3.4 GB), and every weight is what diffusers' own path gives."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors import torch as safetensors_torch

    from vsynth.plugins.idm import stable_diffusion

    reference = _plain_motion_unet(name, dtype).state_dict()  # first: it also builds the tiny weights
    loaded, initialised = [], []
    sd15_load = stable_diffusion.SD15.load.__func__
    monkeypatch.setattr(stable_diffusion.SD15, "load", classmethod(lambda cls, *a: loaded.append(sd15_load(cls, *a)) or loaded[-1]))
    load_file = safetensors_torch.load_file
    monkeypatch.setattr(safetensors_torch, "load_file", lambda *a, **k: loaded.append(load_file(*a, **k)) or loaded[-1])
    for init in ("kaiming_uniform_", "normal_", "uniform_", "zeros_", "xavier_uniform_"):
        original = getattr(torch.nn.init, init)
        spy = lambda *a, _f=original, **k: initialised.append((a[0] if a else k["tensor"]).device) or _f(*a, **k)  # noqa: E731
        monkeypatch.setattr(torch.nn.init, init, spy)  # called with the tensor by keyword under torch.device("meta")

    unet = _load_tiny(name, dtype, **({"checkpoint_steps": 1} if name == "animatediff-lightning" else {})).denoiser.unet

    assert all(device.type == "meta" for device in initialised)  # no random init of real memory
    sd_unet = next(m.unet for m in loaded if isinstance(getattr(m, "unet", None), UNet2DConditionModel))
    state = unet.state_dict()
    assert all(state[k].data_ptr() == v.data_ptr() for k, v in sd_unet.state_dict().items())
    if name == "animatediff-lightning" and dtype == "float32":  # the tiny checkpoint is float32: taken as it is
        checkpoint = next(d for d in loaded if isinstance(d, dict))
        assert all(state[k].data_ptr() == v.data_ptr() for k, v in checkpoint.items())
    assert state.keys() == reference.keys() and all(state[k].dtype == getattr(torch, dtype) for k in state)
    assert all(torch.equal(state[k], reference[k]) for k in reference)
