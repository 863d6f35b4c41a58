"""Today's bridges on the tiny models: the cases whose final latents tests/data/regression_latents.safetensors
keeps, so that a change to the diffusion core can prove it kept every result (issue: noise processes).

``python -m tests.regression_cases --write`` records them anew; do that only for a change that is
meant to alter results, and say so in its commit.
"""

from __future__ import annotations

import sys
from pathlib import Path

SAMPLE_VIDEO = Path(__file__).parents[1] / "examples" / "shapes.mp4"
FILE = Path(__file__).parent / "data" / "regression_latents.safetensors"
TINY = dict(tiny=True, frames=2, height=64, width=64, steps=3, vdm_steps=3, prompt="a red ball", seed=7)
VIDEO = dict(video=SAMPLE_VIDEO, stride=4)

# name -> (settings, options)
CASES: dict[str, tuple[dict, dict]] = {
    "none-zeroscope": (dict(vdm="zeroscope", bridge="none"), {}),
    "none-lightning": (dict(vdm="animatediff-lightning", bridge="none", vdm_steps=4), {}),
    "mi-canny-zeroscope": (dict(idm="controlnet-canny", vdm="zeroscope", bridge="mixed-inversion", **VIDEO), {"mixing_ratio": 0.5}),
    "mi-canny-animatediff": (dict(idm="controlnet-canny", vdm="animatediff", bridge="mixed-inversion", **VIDEO), {"mixing_ratio": 0.5}),
    "mi-canny-lightning": (dict(idm="controlnet-canny", vdm="animatediff-lightning", bridge="mixed-inversion", vdm_steps=4, **VIDEO), {"mixing_ratio": 0.5}),
    "mi-p2p-zeroscope": (dict(idm="prompt2prompt", vdm="zeroscope", bridge="mixed-inversion", source_prompt="a blue ball", **VIDEO), {}),
    "evs-sd15-zeroscope": (dict(idm="sd15", vdm="zeroscope", bridge="encapsulated", **VIDEO), {}),
    "evs-sd15-lightning-t2v": (dict(idm="sd15", vdm="animatediff-lightning", bridge="encapsulated", vdm_steps=4), {"renoise": "fresh"}),
    "evs-sfi-zeroscope": (dict(idm="sd15", vdm="zeroscope", bridge="encapsulated", **VIDEO), {"injection": "sfi", "t2v_steps": 1}),
    "idm-only": (dict(idm="controlnet-canny", vdm="zeroscope", bridge="idm-only", **VIDEO), {}),
    "vdm-only": (dict(vdm="zeroscope", bridge="vdm-only", **VIDEO), {}),
    "idm-then-vdm": (dict(idm="controlnet-canny", vdm="animatediff-lightning", bridge="idm-then-vdm", vdm_steps=4, **VIDEO), {}),
    "vdm-then-idm": (dict(idm="sd15", vdm="zeroscope", bridge="vdm-then-idm", **VIDEO), {"bridge.strength": 0.7}),
}


def final_latents(name: str):
    import vsynth

    settings, options = CASES[name]
    return vsynth.run(**{**TINY, **settings}, options=options).latents.float().cpu()


def main(argv: list[str]) -> None:
    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(1)  # as the test compares: the bits depend on the threads' summation order
    if argv != ["--write"]:
        sys.exit("usage: python -m tests.regression_cases --write")
    save_file({name: final_latents(name).contiguous() for name in CASES}, FILE)
    print(f"wrote {len(CASES)} cases to {FILE}")


if __name__ == "__main__":
    main(sys.argv[1:])
