"""The answer picture (demo's answer.png, the resolver node's answer_image): the chosen
mark boxed in green, the query and verdict in a banner, on the frame the answer used."""

import numpy as np

from spatial_llava_ros.marks.engine import mark_frame
from spatial_llava_ros.pipeline import FrameBuffer, FrameRecord, SpatialOutcome
from spatial_llava_ros.queries.answer_image import answer_image, answered_frame
from spatial_llava_ros.scene import generate_scene


def _frame():
    scene = generate_scene(7000, 320, 240)
    marked = mark_frame(scene.frame.rgb, scene.frame.depth, scene.frame.intrinsics)
    return FrameRecord.from_marked_frame(marked, 'camera', stamp_ns=5_000_000_000), marked


def test_the_chosen_mark_is_boxed_and_the_answer_written():
    record, marked = _frame()
    m = marked.marks[0]
    out = SpatialOutcome('the chair', 0, True, mark_id=m.mark_id, confidence=0.8, box=m.box,
                         frame_stamp_ns=record.stamp_ns)
    img = answer_image(record.image, out)
    assert img.shape == record.image.shape and img is not record.image
    x0, y0, x1, y1 = m.box
    assert tuple(img[(y0 + y1) // 2, x0]) == (0, 255, 0)
    assert np.array_equal(img[-1, -1], record.image[-1, -1])  # the rest left as it was
    assert (img[2:10, 2:40] != record.image[2:10, 2:40]).any()  # the banner


def test_a_failure_has_no_box_but_says_why():
    record, marked = _frame()
    out = SpatialOutcome('the piano', 0, False).fail('no_match', 'nothing like it')
    img = answer_image(record.image, out)
    x0, y0, x1, y1 = marked.marks[0].box
    assert np.array_equal(img[(y0 + y1) // 2, x0], record.image[(y0 + y1) // 2, x0])
    assert (img[2:10, 2:40] != record.image[2:10, 2:40]).any()


def test_the_picture_uses_the_frame_the_answer_was_given_on():
    record, _ = _frame()
    frames = FrameBuffer(2)
    frames.add(record)
    later = FrameRecord(record.stamp_ns + 10**8, 'camera', record.image, record.marks)
    frames.add(later)
    used = SpatialOutcome('q', 0, True, frame_stamp_ns=record.stamp_ns)
    assert answered_frame(frames, used) is record
    assert answered_frame(frames, SpatialOutcome('q', 0, False)) is None  # no frame used
    gone = SpatialOutcome('q', 0, True, frame_stamp_ns=record.stamp_ns - 10**9)
    assert answered_frame(frames, gone) is None  # left the buffer since
    assert answered_frame(None, used) is None
