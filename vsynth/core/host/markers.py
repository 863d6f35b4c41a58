"""The pluggy project name and the markers of vsynth's hooks, importable without anything else."""

import pluggy

PROJECT = "vsynth"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
