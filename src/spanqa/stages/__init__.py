"""The pipeline's stages, one module each: ``data`` -> ``features`` -> (model) -> ``decode`` -> ``metrics``.

Pure functions over examples, windows and logits; no model is loaded here.
"""
