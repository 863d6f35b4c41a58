"""An IDM and a VDM on one SD1.5 base hold one copy of its VAE and text encoder."""

from vsynth.testing import load_tiny_model


def _storages(*modules) -> set[int]:
    return {p.untyped_storage().data_ptr() for m in modules for p in m.parameters()}


def test_sd15_idm_and_animatediff_share_the_base_weights():
    idm = load_tiny_model("controlnet-canny")
    vdm = load_tiny_model("animatediff")
    assert vdm.codec.vae is idm.codec.vae
    assert vdm.denoiser.text_encoder is idm.denoiser.text_encoder
    shared = _storages(idm.codec.vae, idm.denoiser.text_encoder)
    assert shared <= _storages(vdm.codec.vae, vdm.denoiser.text_encoder)


def test_one_copy_per_source_and_dtype():
    import torch
    from diffusers import AutoencoderKL

    from vsynth.core.diffusion.components import load
    from vsynth.tiny import tiny_weights

    source = str(tiny_weights("sd15"))
    vae = load(AutoencoderKL, source, what="vae", subfolder="vae", torch_dtype=torch.float32, share=True)
    assert load(AutoencoderKL, source, what="vae", subfolder="vae", torch_dtype=torch.float32, share=True) is vae
    assert load(AutoencoderKL, source, what="vae", subfolder="vae", torch_dtype=torch.bfloat16, share=True) is not vae


def _unet_storages(unet) -> set[int]:
    return {p.untyped_storage().data_ptr() for p in unet.parameters()}


def test_sd15_idm_and_animatediff_hold_one_copy_of_the_unet_weights():
    """The motion UNet's 2D weights are the IDM UNet's tensors; the modules stay apart, so each keeps its own
    attention processors."""
    idm = load_tiny_model("controlnet-canny")
    vdm = load_tiny_model("animatediff")
    unet, motion = idm.denoiser.unet, vdm.denoiser.unet
    assert _unet_storages(unet) <= _unet_storages(motion)
    assert len(_unet_storages(motion) - _unet_storages(unet)) == sum(1 for n, _ in motion.named_parameters() if "motion_modules" in n)
    assert not {id(m) for m in motion.modules()} & {id(m) for m in unet.modules()}


def test_unet_weights_are_shared_whichever_model_loads_first():
    vdm = load_tiny_model("animatediff-lightning")
    idm = load_tiny_model("sd15")
    assert idm.denoiser.unet is not vdm.denoiser.unet
    assert _unet_storages(idm.denoiser.unet) <= _unet_storages(vdm.denoiser.unet)
    assert not idm.denoiser.unet.training
