"""The resolver node's log lines (queries.log_lines), plain strings checked without ROS."""

from spatial_llava_ros.pipeline import SpatialOutcome
from spatial_llava_ros.queries.log_lines import (
    crash_line,
    fallback_lines,
    outcome_line,
    query_for_log,
)


def test_long_queries_are_cut_in_log_lines():
    assert query_for_log('the red mug') == "'the red mug'"
    shown = query_for_log('x' * 5000)
    assert len(shown) < 160 and shown.endswith('... (5000 characters)')
    assert shown.startswith("'" + 'x' * 120 + "'")


def test_outcome_lines_say_the_mark_or_the_reason():
    ok = SpatialOutcome('the mug', 1, True)
    ok.mark_id, ok.confidence = 4, 0.876
    assert outcome_line(ok) == ('info', "'the mug' -> mark 4 (p=0.88)")
    bad = SpatialOutcome('y' * 300, 1, False).fail('no_frame', 'no marked camera frame yet')
    level, line = outcome_line(bad)
    assert level == 'warning' and line.endswith(': no_frame: no marked camera frame yet')
    assert '(300 characters)' in line


def test_crash_and_fallback_lines():
    assert crash_line('q', ValueError('bad')) == "query 'q' crashed: ValueError: bad"
    events = ['split the batch', 'moved to the CPU']
    assert fallback_lines(events, 0) == ['CUDA OOM fallback: split the batch',
                                         'CUDA OOM fallback: moved to the CPU']
    assert fallback_lines(events, 1) == ['CUDA OOM fallback: moved to the CPU']
    assert fallback_lines(events, 2) == []
