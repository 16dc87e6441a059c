"""A synthetic bag replayed as a live camera: frames re-stamped to now, tf kept per stamp.

Shared by the soak and flood benchmarks and the flood tests: render a trajectory, write
it as an MCAP bag, read it back through rosbags (the replay CLI's path), then mark each
frame with one tracking ``MarkEngine`` as the marker node does.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from spatial_llava_ros.pipeline import FrameRecord, TransformTable, TransformUnavailableError


class StampedTransforms:
    """A tf buffer stand-in: one TransformTable per frame stamp, the last ``keep`` kept.

    Lookups at a stamp that is not kept raise ``TransformUnavailableError`` (what tf2 does
    for a time outside its buffer), so a missing tf is a real failure, not a silent pose.
    """

    def __init__(self, keep: int = 16) -> None:
        self.keep = int(keep)
        self._tables: OrderedDict[int, TransformTable] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, stamp_ns: int, transforms: dict[tuple[str, str], np.ndarray]) -> None:
        table = TransformTable.from_edges(transforms)
        with self._lock:
            self._tables[int(stamp_ns)] = table
            while len(self._tables) > self.keep:
                self._tables.popitem(last=False)

    def __call__(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        with self._lock:
            table = self._tables.get(int(stamp_ns))
            kept = len(self._tables)
        if table is None:
            raise TransformUnavailableError(f'no tf at t = {stamp_ns * 1e-9:.3f} s for '
                                            f'{source!r} -> {target!r} ({kept} stamps kept)')
        return table.lookup(target, source, stamp_ns)


def synthetic_bag(out: str | Path, seed: int = 3, n_frames: int = 10, width: int = 320,
                  height: int = 240) -> tuple[list, list[str]]:
    """Write and read back a synthetic bag; returns (BagFrames, the scene's expressions)."""
    from spatial_llava_ros.scene.bag import read_bag, write_bag
    from spatial_llava_ros.scene.trajectory import render_trajectory

    traj = render_trajectory(seed, n_frames=n_frames, width=width, height=height)
    path = write_bag(traj.frames, Path(out), overwrite=True)
    frames = list(read_bag(path))
    texts = [e.text for e in traj.scene.expressions] or ['the object on the left']
    return frames, texts


class LiveReplay:
    """Marks bag frames in a loop and hands them to a service as if they were live."""

    def __init__(self, frames: list, service, transforms: StampedTransforms) -> None:
        from spatial_llava_ros.marks.engine import MarkEngine

        if not frames:
            raise ValueError('no frames to replay')
        self.frames = frames
        self.service = service
        self.transforms = transforms
        self.engine = MarkEngine()
        self.index = 0
        self.published = 0

    def publish_next(self) -> FrameRecord:
        """Mark the next frame (wrapping around, tracker reset at the wrap), stamp it now."""
        if self.index == 0:
            self.engine.reset()
        bag_frame = self.frames[self.index]
        self.index = (self.index + 1) % len(self.frames)
        stamp = time.time_ns()
        marked = self.engine.process(bag_frame.rgb, bag_frame.depth, bag_frame.intrinsics,
                                     stamp_ns=stamp)
        self.transforms.add(stamp, bag_frame.transforms)
        record = FrameRecord.from_marked_frame(marked, bag_frame.frame_id)
        self.service.add_frame(record)
        self.published += 1
        return record
