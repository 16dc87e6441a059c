"""One interface for every source of object masks, selected by name.

A source turns a validated frame into candidate masks; filtering, overlap
resolution, ids and drawing are the same whichever source produced them.
Sources: ``depth`` (planes removed, the rest split at depth edges), ``color``
(graph segmentation, for cameras without depth), ``detections`` (boxes or masks
from an external detector, refined with depth) and ``sam`` (a SAM checkpoint
from a local directory).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from spatial_llava_ros.errors import InputError

if TYPE_CHECKING:
    from spatial_llava_ros.marks.config import MarkerConfig
    from spatial_llava_ros.marks.detections import Detection
    from spatial_llava_ros.marks.inputs import FrameInput


@dataclass
class Proposal:
    """A candidate object mask before filtering and numbering."""

    mask: np.ndarray  # (H, W) bool
    score: float = 1.0
    label: str | None = None
    box: tuple[int, int, int, int] | None = None  # tight box if the source knows it (speed)


@dataclass
class ProposalResult:
    proposals: list[Proposal]
    notes: list[str] = field(default_factory=list)  # why few or none were found


class ProposalSource(Protocol):
    """Anything with ``propose(frame, detections) -> ProposalResult``."""

    name: str

    def propose(self, frame: FrameInput,
                detections: list[Detection] | None = None) -> ProposalResult: ...


_REGISTRY: dict[str, Callable[[MarkerConfig], ProposalSource]] = {}


def register(name: str) -> Callable:
    """Class decorator: make a source selectable as ``MarkerConfig(proposals=name)``."""
    def wrap(factory: Callable[[MarkerConfig], ProposalSource]) -> Callable:
        _REGISTRY[name] = factory
        return factory
    return wrap


def source_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def make_source(name: str, config: MarkerConfig) -> ProposalSource:
    """The proposal source called ``name``, built from ``config``."""
    _load_builtin()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise InputError(f'unknown proposal source {name!r}; choose one of '
                         f'{", ".join(sorted(_REGISTRY))}') from None
    return factory(config)


def _load_builtin() -> None:
    # imported here, not at module top, so that importing the package stays cheap and
    # a source's heavy dependency (torch for sam) loads only when it is chosen
    from spatial_llava_ros.marks import color_segment, depth_segment, detections, sam  # noqa: F401
