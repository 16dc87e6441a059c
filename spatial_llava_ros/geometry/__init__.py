"""Geometry of the pipeline: pinhole camera maths, frame transforms, goal poses."""
