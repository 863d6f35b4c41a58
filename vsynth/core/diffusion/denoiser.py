"""The denoiser interface: a network (and whatever conditions it) seen as one prediction function.

Both image and video models provide one; every loop in :mod:`vsynth.core.diffusion.sampling` and
every bridge works through it alone.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from vsynth.core.diffusion.components import encode_text
from vsynth.core.diffusion.inputs import Conditioning
from vsynth.core.diffusion.offload import execution_device
from vsynth.core.diffusion.processes import Process, infer_process


class Denoiser:
    """A network (and whatever conditions it) seen as ``output = predict(x_t, t, cond, guidance)``.

    ``frame_folded`` denoisers (image models) fold frames into the batch, so their initial noise
    is drawn per frame, (B*F, C, H, W), as the image pipelines draw it.

    What a bridge may rely on, for every denoiser (built-in, a plugin's, or a wrapper):

    - ``process`` says what ``predict`` returns and how the latents hold signal and noise
      (:mod:`vsynth.core.diffusion.processes`): eps, v or the flow velocity. A denoiser declares it
      (a class attribute), or it is read from its scheduler's config (``prediction_type``, a flow
      scheduler); bridges never look further than the process;
    - ``predict`` returns the prediction of the latents' shape (B, C, F, H, W), in the latents'
      process form at the timestep ``t``, and draws no randomness: all of a run's randomness comes
      from the generator, through :meth:`initial_noise` (and a stochastic solver's steps);
    - ``condition(...)`` is computed once and reused for every step and every call;
    - ``unet`` is the module every prediction runs through (a UNet or a transformer), possibly several
      times per ``predict`` (a batch chunk, a window), always at that call's timestep: evaluation
      counters and attention control (:mod:`vsynth.core.diffusion.attention`) attach to it and see
      every call; that is the one reason for a bridge to touch it;
    - ``scheduler`` is the diffusers scheduler the model samples with (its solver, chosen by name
      with ``--idm-scheduler``/``--vdm-scheduler``), and :meth:`new_scheduler` a fresh one of its kind
      and config; only :mod:`~vsynth.core.diffusion.sampling` and
      :mod:`~vsynth.core.diffusion.processes` step it or read its fields.

    A denoiser written before 0.3 defines ``predict_noise`` (eps): it still works, as the eps
    prediction of a VP model.
    """

    frame_folded: ClassVar[bool]
    declared_process: ClassVar[Process | None] = None  # None: read from the scheduler's config

    def __init__(self, unet, scheduler, tokenizer, text_encoder):
        self.unet = unet
        self.scheduler = scheduler
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder

    @property
    def device(self) -> torch.device:
        """Where the UNet computes (with ``--offload``, not where its weights wait)."""
        return execution_device(self.unet)

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def process(self) -> Process:
        """The noise process and the prediction type of :meth:`predict`."""
        return self.declared_process or infer_process(self.scheduler)

    def new_scheduler(self):
        """A fresh scheduler of the model's kind and config (schedulers keep per-run state)."""
        return type(self.scheduler).from_config(self.scheduler.config)

    def finish(self, latents: torch.Tensor) -> torch.Tensor:
        """A clean latent video as the model's pipeline returns it: a model that holds some frames fixed
        (Wan 2.2 TI2V conditioned on its first frame) puts them back. Unchanged by default."""
        return latents

    def set_timesteps(self, scheduler, steps: int) -> None:
        """Set ``steps`` sampling steps on a fresh ``scheduler`` as the model's diffusers pipeline does.

        A model whose pipeline passes more (FLUX's sigmas and resolution-dependent shift ``mu``)
        overrides this; the size of the run is known by then (:meth:`Model.configure`).
        """
        scheduler.set_timesteps(steps, device=self.device)

    def initial_noise(self, shape: tuple[int, int, int, int, int], generator: torch.Generator) -> torch.Tensor:
        """Gaussian noise of ``shape`` (B, C, F, H, W), drawn as the model's own pipeline draws it.

        Image pipelines draw (B*F, C, H, W) for a batch of frames, video pipelines (B, C, F, H, W);
        drawing the same way keeps vsynth's frames equal to the diffusers pipelines' for one seed.
        A denoiser that owns its noise (windows with re-scheduled noise) overrides this.
        """
        b, c, f, h, w = shape
        if self.frame_folded:
            noise = torch.randn((b * f, c, h, w), generator=generator, device=generator.device, dtype=torch.float32)
            noise = noise.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)
        else:
            noise = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
        return noise.to(self.device, self.dtype)

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        return encode_text(self.tokenizer, self.text_encoder, [prompt]).to(self.dtype)

    def condition(self, prompt: str, negative_prompt: str | None = None, **extras) -> Conditioning:
        negative = None if negative_prompt is None else self.encode_prompt(negative_prompt)
        return Conditioning(text=self.encode_prompt(prompt), negative=negative, extras=extras)

    def predict(self, latents: torch.Tensor, t, cond: Conditioning, guidance: float) -> torch.Tensor:
        """The network's prediction (of ``process.prediction``) for latents (B, C, F, H, W) at timestep ``t``,
        with the model's own guidance (classifier-free where guidance > 1)."""
        if type(self).predict_noise is Denoiser.predict_noise:
            raise NotImplementedError(f"{type(self).__name__} must define predict (or, for an eps model, predict_noise)")
        return self.predict_noise(latents, t, cond, guidance)

    def predict_noise(self, latents: torch.Tensor, t, cond: Conditioning, guidance: float) -> torch.Tensor:
        """The name of :meth:`predict` before 0.3, kept for plugins that define it (eps models)."""
        return self.predict(latents, t, cond, guidance)


class DelegatingDenoiser(Denoiser):
    """A denoiser that wraps another and passes everything through: a subclass overrides only what it
    changes (its noise, its predictions over windows, ...).

    It shares the wrapped denoiser's UNet, scheduler, tokenizer and text encoder, so evaluation
    counters and attention processors on the UNet see every call the wrapper makes.
    """

    def __init__(self, inner: Denoiser):
        super().__init__(inner.unet, inner.scheduler, inner.tokenizer, inner.text_encoder)
        self.inner = inner

    @property
    def frame_folded(self) -> bool:
        return self.inner.frame_folded

    @property
    def process(self) -> Process:
        return self.inner.process

    def new_scheduler(self):
        return self.inner.new_scheduler()

    def set_timesteps(self, scheduler, steps: int) -> None:
        self.inner.set_timesteps(scheduler, steps)

    def finish(self, latents: torch.Tensor) -> torch.Tensor:
        return self.inner.finish(latents)

    def initial_noise(self, shape: tuple[int, int, int, int, int], generator: torch.Generator) -> torch.Tensor:
        return self.inner.initial_noise(shape, generator)

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        return self.inner.encode_prompt(prompt)

    def condition(self, prompt: str, negative_prompt: str | None = None, **extras) -> Conditioning:
        return self.inner.condition(prompt, negative_prompt, **extras)

    def predict(self, latents: torch.Tensor, t, cond: Conditioning, guidance: float) -> torch.Tensor:
        if type(self).predict_noise is not Denoiser.predict_noise:  # a subclass written before 0.3
            return self.predict_noise(latents, t, cond, guidance)
        return self.inner.predict(latents, t, cond, guidance)
