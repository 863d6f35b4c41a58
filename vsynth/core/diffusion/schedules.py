"""Noise schedules that several parts of vsynth must agree on, as plain data (no torch, no diffusers)."""

# SD1.5's DDIM (REFERENCE.md): the schedule of every SD1.5-based image model, of ZeroScope and
# ModelScope, and of the tiny and toy models that stand in for them.
SD15_DDIM = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}

# SDXL base 1.0's own scheduler, as its repo ships it (stabilityai/stable-diffusion-xl-base-1.0,
# scheduler/scheduler_config.json): Euler over SD1.5's very training schedule (the same betas, offset and
# leading spacing), the sampler StableDiffusionXLPipeline runs the checkpoint with. Built with
# ``EulerDiscreteScheduler.from_config``, which keeps the DDIM keys Euler does not take (clip_sample,
# set_alpha_to_one), so that ``--idm-scheduler ddim`` builds SD1.5's DDIM from it.
SDXL_EULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "trained_betas": None,
    "clip_sample": False,
    "interpolation_type": "linear",
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "use_karras_sigmas": False,
}
