"""FlowEdit's parameters and its published defaults per model family; no torch.

FlowEdit (Kulikov et al., 2024, arXiv:2412.08629) is defined by five numbers: the editing path
runs the levels from ``n_max`` steps before the end of a T-step schedule down to ``n_min`` steps
before it, averaging the velocity difference over ``n_avg`` noise draws; below ``n_min`` the target
is sampled plainly. The source and target velocities have their own guidance. The authors and the
ports published these per family (``FAMILIES``); left unset, a run gets its model's, scaled to the
run's steps when they differ from the published T.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt, PrivateAttr, model_validator

from vsynth.core.host.specs import ModelSpec, Params
from vsynth.errors import InvalidParamsError
from vsynth.plugins.idm import GENERATION  # the task of a plain text-to-image IDM


@dataclass(frozen=True)
class FamilyDefaults:
    """FlowEdit's published settings for one model family: the schedule's T steps and the levels in it."""

    family: str
    prefixes: tuple[str, ...]  # model names that belong to it
    steps: int
    n_max: int
    n_min: int
    source_guidance: float
    target_guidance: float
    source: str  # where the numbers are published

    def levels(self, steps: int) -> tuple[int, int]:
        """(n_max, n_min) for a run of ``steps`` steps: the published ones, scaled by steps / T and rounded;
        at least one editing level, n_min at most n_max."""
        n_max = min(steps, max(1, round(self.n_max * steps / self.steps)))
        return n_max, min(n_max, round(self.n_min * steps / self.steps))


FAMILIES = (
    FamilyDefaults("wan", ("wan",), 50, 35, 0, 5.0, 13.5,
                   "KyujinHan/Awesome-Training-Free-WAN2.1-Editing, config/*/*.yaml: flowedit strength 0.7 of 50 steps, "
                   "source_guidance_scale 5.0, target_guidance_scale 13.5 (listed by fallenshock/FlowEdit)"),
    FamilyDefaults("ltx", ("ltx",), 30, 27, 6, 2.0, 6.5,
                   "Lightricks/ComfyUI-LTXVideo, example_workflows/tricks/ltxvideo-flow-edit.json: LTXVScheduler 30 steps, "
                   "LTXFlowEditSampler skip_steps 3 refine_steps 6, LTXFlowEditCFGGuider source_cfg 2 target_cfg 6.5"),
    FamilyDefaults("hunyuan", ("hunyuan",), 30, 28, 8, 1.0, 7.0,
                   "logtd/ComfyUI-HunyuanLoom, example_workflows/example_hy_flowedit.json: 30 steps, HYFlowEditSampler "
                   "skip_steps 2 drift_steps 8, embedded guidance 1 (source) and 7 (target)"),
    FamilyDefaults("flux", ("flux",), 28, 24, 0, 1.5, 5.5, "fallenshock/FlowEdit, FLUX_exp.yaml (T_steps 28, n_max 24)"),
    FamilyDefaults("sd3", ("sd3", "stable-diffusion-3"), 50, 33, 0, 3.5, 13.5, "fallenshock/FlowEdit, SD3_exp.yaml (T_steps 50, n_max 33)"),
)  # fmt: skip
# A flow model of no listed family gets the paper's SD3 setting (its main experiments), scaled to its steps.
GENERIC = FamilyDefaults("other", (), 50, 33, 0, 3.5, 13.5, "fallenshock/FlowEdit, SD3_exp.yaml (the paper's main setting)")


def family_of(spec: ModelSpec) -> FamilyDefaults:
    """The published FlowEdit defaults of ``spec``'s family, by its name (GENERIC for any other flow model)."""
    return next((f for f in FAMILIES if spec.name.startswith(f.prefixes)), GENERIC)


@dataclass(frozen=True)
class EditPlan:
    """FlowEdit's settings for one model and one run, resolved."""

    n_max: int
    n_min: int
    n_avg: int
    source_guidance: float
    target_guidance: float
    family: str

    def record(self) -> dict:
        return dict(vars(self))


class FlowEditParams(Params):
    n_max: PositiveInt | None = Field(
        None,
        description="FlowEdit's n_max: editing starts this many steps before the end of the VDM's schedule (more: a "
        "stronger edit, less of the source kept). Default: the family's published value (Wan 35 of 50, LTX 27 of 30, "
        "HunyuanVideo 28 of 30, FLUX 24 of 28, SD3 33 of 50) scaled to the run's steps.",
    )
    n_min: NonNegativeInt | None = Field(
        None,
        description="FlowEdit's n_min: the last n_min steps sample the target plainly (from the edit path's latent, "
        "re-noised), with the model's own solver. Default: the family's (Wan, FLUX, SD3 0; LTX 6 of 30; HunyuanVideo 8 of 30).",
    )
    n_avg: PositiveInt = Field(1, le=64, description="Noise draws the velocity difference is averaged over at each level (FlowEdit's n_avg).")
    source_guidance: float | None = Field(
        None, gt=0.0, le=50.0, description="Guidance of the source-prompt velocity (the model's kind); default: the family's (Wan 5.0)."
    )
    target_guidance: float | None = Field(
        None, gt=0.0, le=50.0, description="Guidance of the target-prompt velocity; default: the family's (Wan 13.5)."
    )
    idm_levels: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="With --idm: the share of the editing levels, from n_max down, whose target is the IDM's frame-wise edit "
        "instead of the VDM's target prompt (costs no VDM evaluation); the VDM edits the rest. 1 with n_min=0 returns the IDM's edit.",
    )
    idm_edit: Literal["auto", "flow-edit", "own"] = Field(
        "auto",
        description="With --idm: how it edits each frame: 'flow-edit' (FlowEdit frame-wise with --source-prompt and the "
        "IDM's prompt, at its family's defaults; a flow IDM), 'own' (its own generation: Kontext's instruction edit, a "
        "control or fill model), or 'auto' (flow-edit for a text-to-image IDM, own for the others).",
    )

    _vdm_family: FamilyDefaults | None = PrivateAttr(None)
    _has_idm: bool = PrivateAttr(False)

    @model_validator(mode="after")
    def _n_min_below_n_max(self):
        if self.n_max is not None and self.n_min is not None and self.n_min > self.n_max:
            raise ValueError(f"n_min {self.n_min} exceeds n_max {self.n_max}: editing runs from n_max down to n_min")
        return self

    def for_models(self, idm, vdm, given):
        """Keep the VDM's family, so that :meth:`check_plan` checks the levels the run will take."""
        params = self.model_copy()
        params._vdm_family = family_of(vdm) if vdm.process == "flow" else None
        params._has_idm = idm is not None
        return params

    def idm_level_count(self, plan: EditPlan) -> int:
        """The editing levels whose target is the IDM's edit: ``idm_levels`` of them, rounded."""
        return round(self.idm_levels * (plan.n_max - plan.n_min))

    def plan(self, family: FamilyDefaults, steps: int) -> EditPlan:
        """The settings a run of ``steps`` steps takes: the values given, the family's for the others."""
        n_max, n_min = family.levels(steps)
        n_max = self.n_max if self.n_max is not None else max(n_max, self.n_min or 0)
        n_min = self.n_min if self.n_min is not None else min(n_min, n_max)
        if n_max > steps:
            raise InvalidParamsError(f"-o n_max={n_max} exceeds the VDM's {steps} steps: lower n_max, or raise --vdm-steps")
        if n_min > n_max:
            raise InvalidParamsError(f"-o n_min={n_min} exceeds n_max {n_max}: editing runs from n_max down to n_min")
        source = family.source_guidance if self.source_guidance is None else self.source_guidance
        target = family.target_guidance if self.target_guidance is None else self.target_guidance
        return EditPlan(n_max, n_min, self.n_avg, source, target, family.family)

    def image_edit(self, idm: ModelSpec) -> str:
        """'flow-edit' or 'own': how ``idm`` edits the frames."""
        if self.idm_edit != "auto":
            return self.idm_edit
        return "flow-edit" if idm.task == GENERATION else "own"

    def check_plan(self, sampling) -> None:
        if self._vdm_family is not None:
            plan = self.plan(self._vdm_family, sampling.vdm_steps)
            if self._has_idm and self.idm_levels > 0 and self.idm_level_count(plan) == 0:
                label = f"-o idm_levels={self.idm_levels:g}" if "idm_levels" in self.model_fields_set else f"idm_levels {self.idm_levels:g} (its default)"
                raise InvalidParamsError(
                    f"{label} of the {plan.n_max - plan.n_min} editing level(s) at {sampling.vdm_steps} VDM "
                    "steps rounds to none, leaving the IDM's edit unused: raise the steps or idm_levels, or drop --idm"
                )
        elif self.n_max is not None and self.n_max > sampling.vdm_steps:
            raise InvalidParamsError(f"-o n_max={self.n_max} exceeds the VDM's {sampling.vdm_steps} steps: lower n_max, or raise --vdm-steps")

    def check_models(self, idm, vdm) -> None:
        """A flow VDM (and, to edit frame-wise by FlowEdit, a flow IDM); IDM options only with an IDM."""
        if vdm.process != "flow":
            raise InvalidParamsError(
                f"flow-edit integrates the difference of two rectified-flow velocities (FlowEdit), and {vdm.name} is a "
                f"{vdm.process} (variance-preserving) model: choose a flow VDM (e.g. wan2.1-t2v-1.3b), or --bridge mixed-inversion"
            )
        if idm is None:
            given = sorted(self.model_fields_set & {"idm_levels", "idm_edit"})
            if given:
                raise InvalidParamsError(f"-o {given[0]} composes an image model's edit, and this run has none: add --idm, or drop it")
            return
        if self.idm_levels == 0:
            raise InvalidParamsError("-o idm_levels=0 leaves the IDM's edit unused: raise idm_levels, or drop --idm")
        if self.image_edit(idm) == "flow-edit" and idm.process != "flow":
            how = "-o idm_edit=flow-edit runs FlowEdit with the IDM" if self.idm_edit == "flow-edit" else "a text-to-image IDM edits by FlowEdit frame-wise"
            raise InvalidParamsError(
                f"{how}, and {idm.name} is a {idm.process} (variance-preserving) model: use -o idm_edit=own (its own "
                "generation), or a flow IDM (e.g. flux-dev)"
            )
