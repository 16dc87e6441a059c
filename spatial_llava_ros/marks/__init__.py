"""Set-of-Marks: turn a camera frame into numbered object masks the model can name.

``MarkEngine(MarkerConfig(...)).process(rgb, depth, intrinsics)`` returns a
``MarkedFrame``; ``mark_frame`` does the same for a single image without tracking.
"""

from spatial_llava_ros.marks.engine import MarkEngine, MarkerConfig, mark_frame
from spatial_llava_ros.marks.types import Mark, MarkedFrame

__all__ = ['Mark', 'MarkEngine', 'MarkedFrame', 'MarkerConfig', 'mark_frame']
