"""Counting what a run costs: forward calls and frame evaluations per network (model role, or ``ROLE.NAME``)."""

from __future__ import annotations

from collections import Counter

import torch

# Networks that take latents (B, F, C, H, W) rather than (B, C, F, H, W).
_FRAMES_FIRST = frozenset({"CogVideoXTransformer3DModel"})


class EvalCounter:
    """Counts forward calls and frame evaluations per key, through forward hooks on the networks attached.

    A frame evaluation is one frame through one call, so classifier-free guidance counts twice
    and a video UNet call on F frames counts F (latent frames, for a VAE that compresses time). The run counts each model's UNets under its role
    (``idm``, ``vdm``) and the networks that condition them apart (``idm.controlnet``, ``idm.adapter``).
    """

    def __init__(self):
        self.calls: Counter[str] = Counter()
        self.frame_evals: Counter[str] = Counter()
        self._handles = []

    def attach(self, module: torch.nn.Module, role: str) -> None:
        axis = 1 if type(module).__name__ in _FRAMES_FIRST else 2

        def hook(_module, args, kwargs):
            sample = args[0] if args else kwargs["sample"] if "sample" in kwargs else kwargs["hidden_states"]  # UNets; transformers
            self.calls[role] += 1
            self.frame_evals[role] += sample.shape[0] * (sample.shape[axis] if sample.ndim == 5 else 1)

        self._handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
