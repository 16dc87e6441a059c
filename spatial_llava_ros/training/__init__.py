"""Training side of Spatial-LLaVA: SUN-Spot-style conversations, packing, the trainer."""
