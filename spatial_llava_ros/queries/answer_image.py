"""The picture of an answer: the marked frame with the chosen mark boxed and the query and
verdict written on it, so that a person sees what the robot chose and why (``demo`` writes
it as answer.png, the resolver node publishes it on ``answer_image``)."""

from __future__ import annotations

import numpy as np


def answer_image(marked_image: np.ndarray, outcome, query: str | None = None) -> np.ndarray:
    """A copy of ``marked_image`` (H, W, 3 RGB) with ``outcome.box`` (the chosen mark's, when
    there is one) in green and '"query" -> mark N (p)' or '"query" -> code' in a dark
    banner."""
    import cv2

    image = np.ascontiguousarray(marked_image.copy())
    h, w = image.shape[:2]
    if outcome.box is not None:
        x0, y0, x1, y1 = (int(v) for v in outcome.box)
        cv2.rectangle(image, (x0, y0), (x1 - 1, y1 - 1), (0, 255, 0), max(2, w // 200))
    verdict = (f'-> mark {outcome.mark_id} ({outcome.confidence:.2f})' if outcome.success
               else f'-> {outcome.code}')
    text = f'"{outcome.query if query is None else query}" {verdict}'
    scale = max(0.4, w / 1100)
    thick = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    cv2.rectangle(image, (0, 0), (min(w, tw + 12), th + base + 12), (0, 0, 0), -1)
    cv2.putText(image, text, (6, th + 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                thick, cv2.LINE_AA)
    return image


def answered_frame(frames, outcome):
    """The kept ``FrameRecord`` of ``frames`` (a ``pipeline.FrameBuffer``) that ``outcome``
    was answered on, or None: no frame was used (no_frame, not_active, ...) or it has left
    the buffer since."""
    if frames is None or not outcome.frame_stamp_ns:
        return None
    frame = frames.nearest(outcome.frame_stamp_ns)
    return frame if frame is not None and frame.stamp_ns == outcome.frame_stamp_ns else None
