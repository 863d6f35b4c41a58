"""Solvers by name, independent of the noise process: ``--idm-scheduler dpm++`` on an eps model and on a
flow model gives each the diffusers scheduler that solves *its* process.

The table is plain data (no torch, no diffusers), so that a name is checked against a model's
process before anything loads; :func:`build` imports diffusers and makes the scheduler from the
model's own scheduler config (its training schedule, prediction type, spacing, flow shift), with
only the solver changed.
"""

from __future__ import annotations

import inspect
from typing import Any

from vsynth.errors import VsynthInputError

# name -> family ("vp" or "flow") -> (diffusers scheduler class, config overrides)
SOLVERS: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "ddim": {"vp": ("DDIMScheduler", {})},
    "euler": {"vp": ("EulerDiscreteScheduler", {}), "flow": ("FlowMatchEulerDiscreteScheduler", {"stochastic_sampling": False})},
    # Flow has no ancestral Euler in diffusers: FlowMatchEuler's stochastic_sampling re-noises the clean prediction
    # as LCM does, which narrows the distribution of an undistilled model (std 0.19 for 0.3 at 50 steps, tests/test_processes.py).
    "euler-a": {"vp": ("EulerAncestralDiscreteScheduler", {})},
    "dpm++": {
        "vp": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
        "flow": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_flow_sigmas": True,
                                                 "prediction_type": "flow_prediction"}),
    },  # fmt: skip
    "unipc": {
        "vp": ("UniPCMultistepScheduler", {}),
        "flow": ("UniPCMultistepScheduler", {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}),
    },
    "lcm": {"vp": ("LCMScheduler", {}), "flow": ("FlowMatchLCMScheduler", {})},
    "heun": {"vp": ("HeunDiscreteScheduler", {}), "flow": ("FlowMatchHeunDiscreteScheduler", {})},
}

# LCM's schedule is drawn from its original 50 steps: it takes no more.
MAX_STEPS = {"lcm": 50}


def family_of(process: str) -> str:
    """'vp' or 'flow' for a spec's process name ('vp-eps', 'vp-v', 'vp-sample', 'flow')."""
    return "flow" if process == "flow" else "vp"


def fitting(process: str) -> list[str]:
    """The solver names that solve ``process``, in the table's order."""
    family = family_of(process)
    return [name for name, families in SOLVERS.items() if family in families]


def check(name: str | None, spec, flag: str, steps: int | None = None) -> None:
    """A solver name must exist, fit the model's process and take its steps; one line otherwise, before loading."""
    if name is None:
        return
    choices = fitting(spec.process)
    if name not in SOLVERS:
        raise VsynthInputError(f"{flag} {name}: no such solver; {spec.name} takes {', '.join(choices)}")
    if name not in choices:
        raise VsynthInputError(
            f"{flag} {name}: {name} does not solve {spec.name}'s {spec.process} process; it takes {', '.join(choices)}"
        )
    if steps is not None and steps > MAX_STEPS.get(name, steps):
        raise VsynthInputError(f"{flag} {name} samples with at most {MAX_STEPS[name]} steps, not {steps}: lower the steps")


# Settings of a flow model's scheduler that shape its sigmas beyond the shift: FLUX's and LTX-Video's resolution-dependent
# shift, LTX's terminal sigma, spaced sigmas. A solver whose scheduler has no such setting would drop it without a word.
SCHEDULE_SETTINGS = ("use_dynamic_shifting", "shift_terminal", "invert_sigmas", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")


SHIFT_ANCHORS = ("base_shift", "max_shift", "base_image_seq_len", "max_image_seq_len")


def dropped_settings(name: str, base) -> list[str]:
    """The schedule settings ``base`` (a model's own scheduler) uses that solver ``name``'s scheduler cannot take."""
    import diffusers

    from vsynth.core.diffusion.processes import infer_process

    family = infer_process(base).family
    if family not in SOLVERS[name]:
        return []
    accepted = inspect.signature(getattr(diffusers, SOLVERS[name][family][0]).__init__).parameters
    return [key for key in SCHEDULE_SETTINGS if base.config.get(key) not in (None, False) and key not in accepted]


def build(name: str, base, flag: str = "--scheduler", model: str = "the model"):
    """A scheduler of solver ``name`` for the process of the model whose own scheduler is ``base``; one that would drop
    a setting of its schedule is refused (FlowMatchHeun has a static shift only: FLUX's and LTX-Video's schedules are
    not its, as their diffusers pipelines refuse it too)."""
    import diffusers

    from vsynth.core.diffusion.processes import infer_process

    family = infer_process(base).family
    class_name, overrides = SOLVERS[name][family]
    dropped = dropped_settings(name, base)
    if dropped:
        keep = [other for other in SOLVERS if family in SOLVERS[other] and not dropped_settings(other, base)]
        raise VsynthInputError(
            f"{flag} {name}: its scheduler ({class_name}) cannot keep {model}'s schedule ({', '.join(dropped)}); "
            f"these keep it: {', '.join(keep)}"
        )
    cls = getattr(diffusers, class_name)
    config = {k: v for k, v in dict(base.config).items() if not k.startswith("_")}
    config |= _shift(config, family)
    config |= overrides
    accepted = inspect.signature(cls.__init__).parameters
    scheduler = cls(**{k: v for k, v in config.items() if k in accepted})
    # the anchors a FLUX or LTX-Video denoiser computes its resolution-dependent shift from (calculate_shift reads them from
    # the scheduler's config): UniPC and DPM++ take no such settings, and LTX-Video's are not the defaults
    anchors = {k: config[k] for k in SHIFT_ANCHORS if k in config and k not in accepted}
    if anchors and config.get("use_dynamic_shifting"):
        scheduler.register_to_config(**anchors)
    return scheduler


def _shift(config: dict, family: str) -> dict:
    """Flow schedulers name the timestep shift differently (FlowMatch*: shift, UniPC / DPM: flow_shift)."""
    if family != "flow":
        return {}
    shift = config.get("shift", config.get("flow_shift"))
    return {} if shift is None else {"shift": shift, "flow_shift": shift}
