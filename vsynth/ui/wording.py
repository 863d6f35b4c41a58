"""An error or warning line in the page's words: the library speaks in CLI flags (``add --idm``, ``-o detector=``),
which the form shows as fields (image model (IDM), model options)."""

from __future__ import annotations

import re

# the form's field for each flag a message may name, and the start of its label in the form (ui.app); a setting's own
# name is its field's label (frames, steps...)
FIELDS = {
    "idm": "image model (IDM)",
    "vdm": "video model (VDM)",
    "bridge": "bridge",
    "video": "source video",
    "condition-video": "control-map video",
    "mask": "mask",
    "outpaint": "outpaint",
    "source-prompt": "source prompt",
    "idm-prompt": "IDM prompt",
    "negative-prompt": "negative prompt",
    "idm-scheduler": "IDM solver",
    "vdm-scheduler": "VDM solver",
    "idm-weights": "IDM weights",
    "vdm-weights": "VDM weights",
    "trust-pickles": "trust pickle weights",
    "tiny": "tiny models",
    "toy": "toy models",
}
_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")
_OPTION = re.compile(r"(?<![\w-])-o ([A-Za-z_][\w.]*)")
_CONFIG_FILE = re.compile(r" \(`[a-z_]+:` in a [^)]*\)|, or `[a-z_]+:` in a --config file")


def in_form_words(line: str) -> str:
    """``line`` with each flag named as the form's field ('the image model (IDM)' for --idm, 'frames' for --frames)
    and each -o option as a model option; what only a config file can do is left out."""
    parts = _CONFIG_FILE.sub("", line).split("`")  # odd parts are quoted commands (`vsynth models --kind vdm`): kept
    for i in range(0, len(parts), 2):
        parts[i] = _OPTION.sub(lambda m: f"model option {m.group(1)}", parts[i])
        parts[i] = _FLAG.sub(lambda m: f"'{FIELDS.get(m.group(1), m.group(1).replace('-', '_'))}'", parts[i])
    return "`".join(parts)
