"""Notices when the camera is silent, so a wrong topic name or QoS is said in the log.

Plain Python (no rclpy): marker_node counts what arrives on each input and asks ``check``
once a second; the first warning comes after ``after_s`` without a synchronised frame, then
at most one every ``every_s``.
"""

from __future__ import annotations


class FrameWatch:
    """Counts messages per input and synchronised frames; says when none have come."""

    def __init__(self, inputs: dict[str, str], after_s: float, every_s: float = 30.0) -> None:
        """``inputs``: role (colour, depth, camera_info) -> resolved topic name."""
        self.inputs = dict(inputs)
        self.after_s = float(after_s)
        self.every_s = float(every_s)
        self.counts = dict.fromkeys(self.inputs, 0)
        self.frames = 0
        self._last_frame_s: float | None = None
        self._started_s: float | None = None
        self._last_warning_s: float | None = None

    def start(self, now_s: float) -> None:
        self._started_s = now_s

    def message(self, role: str) -> None:
        self.counts[role] += 1

    def frame(self, now_s: float) -> None:
        self.frames += 1
        self._last_frame_s = now_s

    def check(self, now_s: float) -> str | None:
        """The warning to log now, or None (watch off, frames flowing, or throttled)."""
        if self.after_s <= 0 or self._started_s is None:
            return None
        since = self._last_frame_s if self._last_frame_s is not None else self._started_s
        quiet = now_s - since
        if quiet < self.after_s:
            return None
        if self._last_warning_s is not None and now_s - self._last_warning_s < self.every_s:
            return None
        self._last_warning_s = now_s
        silent = [f'{self.inputs[r]} ({r})' for r, n in self.counts.items() if n == 0]
        heard = [f'{self.inputs[r]}: {n}' for r, n in self.counts.items() if n > 0]
        what = 'no camera frames' if self.frames == 0 else 'no new camera frames'
        parts = [f'{what} for {quiet:.0f} s']
        if silent:
            parts.append('nothing received on ' + ', '.join(silent))
        if heard:
            parts.append('messages so far: ' + ', '.join(heard))
        if not silent:
            parts.append('they arrive but never pair up: check their stamps and sync_slop')
        else:
            parts.append('check the topic names (remappings) and that the camera publishes')
        return '; '.join(parts)
