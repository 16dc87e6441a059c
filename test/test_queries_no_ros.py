"""The resolver node's query handling (spatial_llava_ros.queries) imports no ROS module, so
it runs and is tested on machines without ROS 2 (checked in a fresh interpreter, where a
ROS 2 install could otherwise hide an import)."""

import subprocess
import sys

ROS_ROOTS = ('rclpy', 'rcl_interfaces', 'tf2_ros', 'nav2_msgs', 'geometry_msgs', 'action_msgs',
             'sensor_msgs', 'message_filters', 'rosidl_runtime_py')

CHECK = f"""
import sys
import spatial_llava_ros.queries.answer, spatial_llava_ros.queries.jobs
import spatial_llava_ros.queries.log_lines, spatial_llava_ros.queries.nav2
import spatial_llava_ros.queries.queue
ros = sorted(m for m in sys.modules if m.split('.')[0] in {ROS_ROOTS!r})
print(','.join(ros))
"""


def test_queries_import_no_ros_module():
    out = subprocess.run([sys.executable, '-c', CHECK], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '', f'ROS modules imported: {out.stdout.strip()}'
