"""Built-in bridges: specs and params, no torch."""

from __future__ import annotations

import warnings
from typing import Literal

from pydantic import Field, model_validator

from vsynth import hookimpl
from vsynth.core.host.specs import BridgeSpec, Params
from vsynth.errors import InvalidParamsError, VsynthWarning
from vsynth.plugins.bridges.flow_edit_params import FlowEditParams

ENHANCE = "enhance"


class MixedInversionParams(Params):
    mixing_ratio: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="r in z = r*z_image + (1-r)*z_video; the IDM supplies BIVDiff's per-task default.",
    )
    inversion_prompt: Literal["negative", "prompt"] = Field(
        "negative",
        description="Text embedding both inversions use: the negative prompt (as the official code does) or the prompt.",
    )
    reencode: bool = Field(
        True,
        description="Re-encode the decoded IDM frames with the VAE before inversion, as the official code passes frames "
        "between stages; false passes the IDM latents straight through.",
    )
    prompt_preset: Literal["none", "bivdiff"] = Field(
        "none",
        description="'bivdiff': the official code's prompts, its quality suffix on the IDM and VDM prompts and its long "
        "negative prompt (unless --negative-prompt is given), or none where its code has none (T2I-Adapter, "
        "Prompt-to-Prompt, inpainting); 'none': the prompts as given.",
    )


    def for_models(self, idm, vdm, given):
        """Across latent spaces only the video-side inversion can run: an IDM's default ratio becomes 0, with a notice."""
        if idm is None or idm.latent_space == vdm.latent_space or self.mixing_ratio == 0 or "mixing_ratio" in given:
            return self
        warnings.warn(
            f"mixed-inversion: {idm.name} ({idm.latent_space.name}) and {vdm.name} ({vdm.latent_space.name}) have different latent "
            f"spaces, so only the video-side inversion runs (mixing_ratio 0 instead of {self.mixing_ratio:g}), on the IDM frames "
            "encoded by the VDM's VAE",
            VsynthWarning,
            stacklevel=2,
        )
        return self.model_copy(update={"mixing_ratio": 0.0})

    def check_models(self, idm, vdm) -> None:
        """The image side inverts in the IDM's latent space and the mix is one latent: with a VDM of another
        space only the video-side inversion (of the IDM frames, encoded by the VDM's VAE) can run."""
        if idm is not None and idm.latent_space != vdm.latent_space and self.mixing_ratio > 0:
            raise InvalidParamsError(
                f"-o mixing_ratio={self.mixing_ratio:g} mixes an inversion in {idm.name}'s latent space ({idm.latent_space.name}) "
                f"with one in {vdm.name}'s ({vdm.latent_space.name}), which differ: use -o mixing_ratio=0 (video-side inversion only)"
            )


class NoParams(Params):
    pass


class T2IParams(Params):
    strength: float = Field(
        0.4,
        gt=0.0,
        le=1.0,
        description="T2I SDEdit strength s_I = t_I / T_I: the source is noised to this fraction of the IDM's schedule and "
        "the IDM denoises from there (EVS: 0.4 of 50 steps). With sd15 as IDM, write bridge.strength.",
    )

    def check_plan(self, sampling) -> None:
        _check_sdedit("strength", self.strength, sampling.steps, "T2I", "--steps")


class T2VParams(Params):
    t2v_strength: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="T2V noising t_V as a fraction of the VDM's schedule (0.5 of Lightning's 8 steps starts at step 4).",
    )

    def check_plan(self, sampling) -> None:
        _check_sdedit("t2v_strength", self.t2v_strength, sampling.vdm_steps, "T2V", "the VDM's steps")


def _check_sdedit(option: str, strength: float, steps: int, name: str, steps_flag: str) -> None:
    """SDEdit at ``strength`` runs the last int(steps * strength) steps: none is refused before loading."""
    if int(steps * strength) == 0:
        raise InvalidParamsError(f"{option} {strength} leaves none of the {steps} {name} steps: raise -o bridge.{option} or {steps_flag}")


class CompositionParams(T2VParams, T2IParams):  # fields in the order strength, t2v_strength
    def check_plan(self, sampling) -> None:
        T2IParams.check_plan(self, sampling)
        T2VParams.check_plan(self, sampling)


class EncapsulatedParams(CompositionParams):
    t2v_at: float = Field(
        0.5,
        ge=0.0,
        lt=1.0,
        description="When the [T2V] block runs: the fraction of the T2I denoising steps (from t_I down) done before it; "
        "0 = right at t_I. Earlier favours imaging quality, later temporal consistency.",
    )
    t2v_steps: int | None = Field(
        None,
        ge=0,
        description="n_V, the VDM steps the block runs from t_V; default: all that are left. 0 makes the block the identity.",
    )
    renoise: Literal["predicted", "fresh"] = Field(
        "predicted",
        description="The noise that takes the [T2V] block's clean latent back to t_T2V: 'predicted', the noise the T2I "
        "step there predicted (an identity block then gives idm-only back), or 'fresh', drawn from the run's generator "
        "(Algorithm 1's literal form).",
    )
    injection: Literal["none", "sfi"] = Field(
        "none",
        description="How the block reaches t_V: 'none' noises the T2I prediction (SDEdit); 'sfi' DDIM-inverts it and injects "
        "the inversion's self-attention Q, K, V while denoising (Selective Feature Injection, for inputs far outside "
        "the VDM's domain).",
    )
    sfi_layers: Literal["deep", "shallow", "all"] = Field(
        "deep",
        description="SFI layers: 'deep' (the lower-resolution half of the VDM decoder's spatial self-attention), 'shallow' "
        "(the other half) or 'all' (every spatial self-attention layer of the VDM).",
    )
    sfi_gamma: float = Field(
        0.8, ge=0.0, le=1.0, description="SFI query blend: Q = gamma * Q_inv + (1 - gamma) * Q (paper: 0.8 deep, 0.5 shallow)."
    )

    @model_validator(mode="after")
    def _sfi_options_need_sfi(self):
        given = sorted(self.model_fields_set & {"sfi_layers", "sfi_gamma"})
        if given and self.injection != "sfi":
            raise ValueError(f"{' and '.join(given)} {'apply' if len(given) > 1 else 'applies'} only with -o injection=sfi")
        return self

    def check_models(self, idm, vdm) -> None:
        """Selective Feature Injection works on a UNet decoder's spatial self-attention: a transformer VDM has none."""
        if self.injection == "sfi" and vdm.architecture != "unet":
            raise InvalidParamsError(
                f"-o injection=sfi injects into a UNet decoder's spatial self-attention, and {vdm.name} is a {vdm.architecture} "
                "without one: use -o injection=none (SDEdit into the [T2V] block)"
            )

    def check_plan(self, sampling) -> None:
        """Both SDEdits leave steps (the T2V one unless the block is the identity), and the block's n_V steps fit in
        what SDEdit at t2v_strength leaves of the VDM's steps (before loading)."""
        left = int(sampling.vdm_steps * self.t2v_strength)
        if self.t2v_steps is not None and self.t2v_steps > left:
            raise InvalidParamsError(
                f"-o t2v_steps={self.t2v_steps} exceeds the {left} VDM steps left at t2v_strength {self.t2v_strength} "
                f"of {sampling.vdm_steps}: lower t2v_steps or raise t2v_strength"
            )
        T2IParams.check_plan(self, sampling)
        if self.t2v_steps != 0:
            T2VParams.check_plan(self, sampling)


@hookimpl
def vsynth_register_bridges(registrar):
    registrar.register_bridge(
        BridgeSpec(
            name="none",
            description="No bridge: the VDM alone generates a video from the prompt (plain text-to-video), "
            "e.g. the low-quality source that an enhancement bridge later improves.",
            params=NoParams,
            impl="vsynth.plugins.bridges.text_to_video:TextToVideo",
            needs_idm=False,
            video="unused",
            task="text-to-video",
            image_inversion=False,
        )
    )
    registrar.register_bridge(
        BridgeSpec(
            name="mixed-inversion",
            description="BIVDiff: frame-wise IDM generation, Mixed Inversion (image and video DDIM inversion mixed once), "
            "then temporal smoothing by full VDM denoising.",
            paper="BIVDiff, CVPR 2024 (arXiv:2312.02813)",
            params=MixedInversionParams,
            impl="vsynth.plugins.bridges.mixed_inversion:MixedInversion",
            hands_frames=True,
            video_noise=False,
        )
    )
    registrar.register_bridge(
        BridgeSpec(
            name="encapsulated",
            description="EVS: T2I SDEdit of the source video with the IDM, with one encapsulated [T2V] block (SDEdit, or DDIM "
            "inversion with Selective Feature Injection) bridged in and out through predicted clean latents. Without --video, "
            "the source is the VDM's own text-to-video result, made first in the same run (the paper's setting).",
            paper="EVS, CVPR 2025",
            params=EncapsulatedParams,
            impl="vsynth.plugins.bridges.encapsulated:Encapsulated",
            video="optional",
            task=ENHANCE,
            image_inversion=False,
        )
    )
    registrar.register_bridge(
        BridgeSpec(
            name="flow-edit",
            description="FlowEdit: inversion-free editing of the source video from --source-prompt to --prompt along a direct "
            "path of velocity differences, with a flow VDM (Wan, LTX, HunyuanVideo); with --idm, the IDM's frame-wise edit "
            "(Kontext's instruction edit, or FlowEdit frame-wise with a text-to-image flow IDM) is the target of the first "
            "levels and the VDM's edit path keeps motion and coherence.",
            paper="FlowEdit, Kulikov et al., ICCV 2025 (arXiv:2412.08629)",
            params=FlowEditParams,
            impl="vsynth.plugins.bridges.flow_edit:FlowEdit",
            hands_frames=True,
            needs_idm=False,
            accepts_idm=True,
            needs=("source_prompt",),
            video="required",
            task="editing",
            image_inversion=False,
        )
    )
    for name, description, params, impl, needs_idm in (
        ("idm-only", "Baseline T2I: frame-wise T2I SDEdit of the source video with the IDM alone (no video model).", T2IParams, "IdmOnly", True),
        ("vdm-only", "Baseline T2V: T2V SDEdit of the source video with the VDM alone.", T2VParams, "VdmOnly", False),
        ("idm-then-vdm", "Baseline T2I+T2V: full T2I SDEdit, then full T2V SDEdit of its result.", CompositionParams, "IdmThenVdm", True),
        ("vdm-then-idm", "Baseline T2V+T2I: full T2V SDEdit, then full T2I SDEdit of its result.", CompositionParams, "VdmThenIdm", True),
    ):
        registrar.register_bridge(
            BridgeSpec(
                name=name,
                description=description + ("" if name == "idm-only" else " Models meet through clean latents."),
                paper="EVS, CVPR 2025 (composition baselines)",
                params=params,
                impl=f"vsynth.plugins.bridges.composition:{impl}",
                needs_idm=needs_idm,
                needs_vdm=name != "idm-only",
                video="required",
                task=ENHANCE,
                image_inversion=False,
            )
        )
