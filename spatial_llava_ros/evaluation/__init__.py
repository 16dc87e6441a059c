"""Evaluation: grounding accuracy on synthetic scenes, zero-shot VSR true/false accuracy."""
