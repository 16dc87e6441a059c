"""Run the whole system with no robot: play a recorded (or synthetic) bag as the camera.

    spatial-llava bag --out /tmp/traj.mcap            # a synthetic trajectory, no ROS needed
    ros2 launch spatial_llava_ros replay.launch.py bag:=/tmp/traj.mcap \\
        model_path:=/models/spatial-llava
    ros2 topic pub --once /spatial_query spatial_llava_ros/msg/SpatialQuery \\
        "{text: 'the red chair left of the table', action: 1}"

`ros2 bag play --clock` publishes the bag's time on /clock and every node runs with
use_sim_time, so frame ages and tf lookups use the bag's stamps. The synthetic bag holds
/camera/color/image_raw, /camera/depth/image_raw, /camera/color/camera_info and
/tf (map -> base_link -> camera_link) + /tf_static (camera_link -> optical frame).
"""

from pathlib import Path

from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    OpaqueFunction,
)
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

HERE = Path(__file__).resolve().parent


def _play(context):
    bag = LaunchConfiguration('bag').perform(context)
    if not bag or not Path(bag).exists():
        raise FileNotFoundError(f"bag '{bag}' does not exist; write one with "
                                '`spatial-llava bag --out traj.mcap`')
    cmd = ['ros2', 'bag', 'play', bag, '--clock', '--rate', LaunchConfiguration('rate')
           .perform(context)]
    if LaunchConfiguration('loop').perform(context).lower() in ('true', '1', 'yes'):
        cmd.append('--loop')
    start_delay = LaunchConfiguration('start_delay').perform(context)
    if float(start_delay) > 0:
        cmd += ['--delay', start_delay]
    return [ExecuteProcess(cmd=cmd, output='screen', name='bag_play')]


def generate_launch_description() -> LaunchDescription:
    args = [
        DeclareLaunchArgument('bag', description='the bag (.mcap file or rosbag2 folder)'),
        DeclareLaunchArgument('rate', default_value='1.0', description='playback rate'),
        DeclareLaunchArgument('loop', default_value='true', description='replay forever'),
        DeclareLaunchArgument('start_delay', default_value='3.0',
                              description='seconds before playing (lets the model load)'),
        DeclareLaunchArgument('model_path', default_value=''),
        DeclareLaunchArgument('device', default_value=''),
        DeclareLaunchArgument('navigate', default_value='false'),
        DeclareLaunchArgument('namespace', default_value=''),
        DeclareLaunchArgument('params_file', default_value=''),
        DeclareLaunchArgument('color_topic', default_value='/camera/color/image_raw'),
        DeclareLaunchArgument('depth_topic', default_value='/camera/depth/image_raw'),
        DeclareLaunchArgument('camera_info_topic', default_value='/camera/color/camera_info'),
    ]
    bringup = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(HERE / 'bringup.launch.py')),
        launch_arguments={
            'use_sim_time': 'true',
            'model_path': LaunchConfiguration('model_path'),
            'device': LaunchConfiguration('device'),
            'navigate': LaunchConfiguration('navigate'),
            'namespace': LaunchConfiguration('namespace'),
            'params_file': LaunchConfiguration('params_file'),
            'color_topic': LaunchConfiguration('color_topic'),
            'depth_topic': LaunchConfiguration('depth_topic'),
            'camera_info_topic': LaunchConfiguration('camera_info_topic'),
        }.items())
    return LaunchDescription(args + [bringup, OpaqueFunction(function=_play)])
