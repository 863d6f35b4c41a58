"""The diffusion runtime that model and bridge plugins build on: the denoiser interface, the
sampling math, attention control, shared components, weights and the bridge base."""
