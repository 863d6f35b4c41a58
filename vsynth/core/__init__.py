"""vsynth.core"""
