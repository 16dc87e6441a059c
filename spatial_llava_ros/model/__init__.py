"""Spatial-LLaVA model side: local loading, prompt, one-pass mark scoring, ONNX vision,
tiny models.

Heavy imports (torch, transformers) happen when a submodule is imported, not here.
"""
