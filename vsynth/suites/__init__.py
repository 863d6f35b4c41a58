"""Prompt suites that ship with vsynth (``vsynth eval --suite default``), with their small source clips."""
