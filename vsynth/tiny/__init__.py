"""The built-in offline tiny models: the real architectures with small configs and random weights.

``vsynth run --tiny``, the test suite and plugin tests load them through the same
``from_pretrained`` path as real weights. Importing this package imports no torch.
"""

from vsynth.tiny.build import LIGHTNING_STEPS, TINY_FORMAT, TINY_MODELS, export, export_all, tiny_tokenizer, tiny_weights

__all__ = ["LIGHTNING_STEPS", "TINY_FORMAT", "TINY_MODELS", "export", "export_all", "tiny_tokenizer", "tiny_weights"]
