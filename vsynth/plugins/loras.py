"""Published LoRAs the built-in models offer by name (``--idm-lora NAME``, ``--vdm-lora NAME``; ``vsynth models NAME``).

Few-step distillations: each sets the solver, steps and guidance it was distilled for, unless the user gives
them. Sources: the model cards of latent-consistency/lcm-lora-sdv1-5 and lcm-lora-sdxl (LCMScheduler, 2-8
steps, guidance off or 1-2), ByteDance/Hyper-SD (FLUX.1-dev 8 steps, fused at scale 0.125, guidance 3.5) and
lightx2v/Wan2.1-Distill-Loras (Wan 2.1 T2V 14B, 4 steps, classifier-free guidance distilled away).
"""

from vsynth.core.host.specs import LoraPreset

LCM_SD15 = (
    LoraPreset(name="lcm-4step", id="latent-consistency/lcm-lora-sdv1-5", file="pytorch_lora_weights.safetensors", size_gb=0.13,
               solver="lcm", steps=4, guidance=1.0,
               description="LCM-LoRA: latent-consistency distillation of SD1.5, 4 LCM steps without guidance (2-8 work)."),
)  # fmt: skip
LCM_SDXL = (
    LoraPreset(name="lcm-4step", id="latent-consistency/lcm-lora-sdxl", file="pytorch_lora_weights.safetensors", size_gb=0.39,
               solver="lcm", steps=4, guidance=1.0,
               description="LCM-LoRA of SDXL base 1.0: 4 LCM steps without guidance (2-8 work)."),
)  # fmt: skip
HYPER_FLUX = (
    LoraPreset(name="hyper-8step", id="ByteDance/Hyper-SD", file="Hyper-FLUX.1-dev-8steps-lora.safetensors", size_gb=1.39,
               scale=0.125, steps=8, guidance=3.5,
               description="Hyper-SD's FLUX.1-dev LoRA: 8 Euler steps at scale 0.125 (its card's), distilled guidance 3.5."),
)  # fmt: skip
WAN_LORAS = {
    "wan2.1-t2v-14b": (
        LoraPreset(name="lightx2v-4step", id="lightx2v/Wan2.1-Distill-Loras", file="wan2.1_t2v_14b_lora_rank64_lightx2v_4step.safetensors",
                   size_gb=0.63, solver="euler", steps=4, guidance=1.0,
                   description="LightX2V's step and guidance distillation of Wan 2.1 T2V 14B (rank 64): 4 Euler steps, no "
                   "classifier-free guidance (one forward per step)."),
    ),
}  # fmt: skip
