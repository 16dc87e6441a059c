"""Spatial Preference Rewarding (SPR, arXiv 2510.14374) on Set-of-Marks frames.

Stages, each writing JSONL files the next one reads (see docs/spr.md):
regions (region growing over annotations) -> grounded region descriptions sampled from the
model -> semantic + localization scores -> grounding refinement and preference pairs -> DPO.
"""
