"""marker_node's camera watch (plain Python): silent inputs are named after a few seconds,
the warning is throttled, and frames that flow keep it quiet."""

from spatial_llava_ros.nodes.frame_watch import FrameWatch

TOPICS = {'colour': '/camera/color/image_raw', 'camera_info': '/camera/color/camera_info',
          'depth': '/camera/depth/image_raw'}


def test_no_frames_warns_after_the_delay_naming_the_silent_topics():
    watch = FrameWatch(TOPICS, after_s=5.0, every_s=30.0)
    watch.start(100.0)
    assert watch.check(104.9) is None
    watch.message('camera_info')
    text = watch.check(105.0)
    assert text.startswith('no camera frames for 5 s')
    assert '/camera/color/image_raw (colour)' in text and '/camera/depth/image_raw (depth)' in text
    assert '/camera/color/camera_info: 1' in text
    assert watch.check(120.0) is None  # throttled
    assert watch.check(135.0).startswith('no camera frames for 35 s')


def test_frames_keep_it_quiet_and_a_stall_is_reported_as_such():
    watch = FrameWatch(TOPICS, after_s=5.0, every_s=30.0)
    watch.start(0.0)
    for t in range(20):
        for role in TOPICS:
            watch.message(role)
        watch.frame(float(t))
        assert watch.check(t + 0.5) is None
    text = watch.check(25.0)
    assert text.startswith('no new camera frames for 6 s')
    assert 'never pair up' in text  # every input had messages: stamps/slop, not topics


def test_zero_turns_it_off():
    watch = FrameWatch(TOPICS, after_s=0.0)
    watch.start(0.0)
    assert watch.check(1e6) is None
