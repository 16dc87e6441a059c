"""The lines the resolver node logs about a query: one line each, the query cut short.

Plain strings, so the node's log is checked without ROS. The node hands every line to its
rclpy logger through a ``LogFn``: ``log('warning', line)`` calls
``node.get_logger().warning(line)`` at that moment.
"""

from __future__ import annotations

from collections.abc import Callable

from spatial_llava_ros.pipeline import SpatialOutcome

# (level, line); level is a logger method name: 'info', 'warning' or 'error'
LogFn = Callable[[str, str], None]

LOG_QUERY_CHARS = 120


def query_for_log(text: str, limit: int = LOG_QUERY_CHARS) -> str:
    """A query as a log line shows it: repr'd, and cut to ``limit`` characters with its length.

    A 5,000-character query logged whole buries the reason; the result message still
    carries the full text.
    """
    if len(text) <= limit:
        return repr(text)
    return f'{text[:limit]!r}... ({len(text)} characters)'


def outcome_line(outcome: SpatialOutcome) -> tuple[str, str]:
    """(level, line) for a finished query: info with the mark, or a warning with the reason."""
    if outcome.success:
        return 'info', (f'{query_for_log(outcome.query)} -> mark {outcome.mark_id} '
                        f'(p={outcome.confidence:.2f})')
    return 'warning', f'{query_for_log(outcome.query)}: {outcome.reason}'


def crash_line(text: str, exc: BaseException) -> str:
    """The error line for a query whose answer raised (it is answered ``internal_error``)."""
    return f'query {query_for_log(text)} crashed: {type(exc).__name__}: {exc}'


def fallback_lines(events: list[str], already_logged: int) -> list[str]:
    """Warnings for the OOM fallbacks (``OomFallbackResolver.events``) not logged yet."""
    return [f'CUDA OOM fallback: {line}' for line in events[already_logged:]]
