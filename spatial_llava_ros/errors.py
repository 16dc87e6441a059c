"""Typed errors raised at the core's boundaries.

Every bad input ends in one of these with a one-line message that names the numbers
involved; the CLI prints it and exits non-zero, the nodes put it in ``SpatialResult.reason``.
"""


class SpatialLlavaError(Exception):
    """Base class of every error the core raises on purpose."""


class InputError(SpatialLlavaError, ValueError):
    """An image, depth map, intrinsics or query that cannot be used as given."""


class ModelLoadError(SpatialLlavaError):
    """A model directory that is missing, corrupt or not a LLaVA checkpoint."""


class ResolveError(SpatialLlavaError):
    """A query that could not be answered (no frame, no marks, abstain...)."""
