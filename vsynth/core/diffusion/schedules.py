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
