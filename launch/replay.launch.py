"""Run the whole system with no robot: play a recorded (or synthetic) bag as the camera.

    spatial-llava bag --out /tmp/traj.mcap            # a synthetic trajectory, no ROS needed
    ros2 launch spatial_llava_ros replay.launch.py bag:=/tmp/traj.mcap \\
        model_path:=/models/spatial-llava
    ros2 topic pub --once /spatial_query spatial_llava_ros/msg/SpatialQuery \\
        "{text: 'the red chair left of the table', action: 1}"

The bag's time goes out on /clock and every node runs with use_sim_time, so frame ages and
tf lookups use the bag's stamps. The synthetic bag holds /camera/color/image_raw,
/camera/depth/image_raw, /camera/color/camera_info and /tf (map -> base_link -> camera_link)
+ /tf_static (camera_link -> optical frame).

player:=builtin (default) plays with this package's bag_player node (needs nothing else; it
loops with stamps and clock moved on by one bag period per pass, so tf keeps working on every
pass); player:=ros2bag runs `ros2 bag play --clock` (needs rosbag2, and for .mcap on Humble
ros-humble-rosbag2-storage-mcap; its loops restart bag time). If the builtin player fails
(missing or unreadable bag) the launch shuts down with its one-line error.
"""

import math
from pathlib import Path

from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    ExecuteProcess,
    IncludeLaunchDescription,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

HERE = Path(__file__).resolve().parent
PACKAGE = 'spatial_llava_ros'
PLAYERS = ('builtin', 'ros2bag')


def _flag(context, name: str) -> bool:
    value = LaunchConfiguration(name).perform(context).strip().lower()
    if value not in ('true', 'false', '1', '0', 'yes', 'no'):
        raise ValueError(f"launch argument {name} must be true or false, got '{value}'")
    return value in ('true', '1', 'yes')


def _seconds(context, name: str, positive: bool = False) -> float:
    text = LaunchConfiguration(name).perform(context)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"launch argument {name} must be a number {'>' if positive else '>='} "
                         f"0, got '{text}'")
    return value


def _ros2bag(context, bag: str, topics: list[str]):
    if not bag or not Path(bag).exists():
        raise FileNotFoundError(f"bag '{bag}' does not exist; write one with "
                                '`spatial-llava bag --out traj.mcap`')
    cmd = ['ros2', 'bag', 'play', bag, '--clock', '--rate', LaunchConfiguration('rate')
           .perform(context)]
    if _flag(context, 'loop'):
        cmd.append('--loop')
    start_delay = LaunchConfiguration('start_delay').perform(context)
    if float(start_delay) > 0:
        cmd += ['--delay', start_delay]
    if _seconds(context, 'start_offset') > 0:
        cmd += ['--start-offset', LaunchConfiguration('start_offset').perform(context)]
    if topics:
        cmd += ['--topics', *topics]
    return [ExecuteProcess(cmd=cmd, output='screen', name='bag_play')]


def _builtin(context, bag: str, topics: list[str]):
    from launch_ros.actions import Node

    player = Node(package=PACKAGE, executable='bag_player_node', name='bag_player',
                  output='screen', parameters=[{
                      'bag': str(Path(bag).expanduser()) if bag else '',
                      'rate': _seconds(context, 'rate', positive=True),
                      'loop': _flag(context, 'loop'),
                      'start_delay': _seconds(context, 'start_delay'),
                      'start_offset': _seconds(context, 'start_offset'),
                      'clock': True,
                      'topics': ' '.join(topics),
                  }])

    def on_exit(event, _context):
        if event.returncode not in (0, None, -2, -15):  # a bad bag, not Ctrl-C
            return [LogInfo(msg=f'bag_player exited with code {event.returncode}; '
                            'shutting down the replay'),
                    EmitEvent(event=Shutdown(reason='bag_player failed'))]
        return None

    return [player, RegisterEventHandler(OnProcessExit(target_action=player,
                                                       on_exit=on_exit))]


def _play(context):
    player = LaunchConfiguration('player').perform(context).strip()
    if player not in PLAYERS:
        raise ValueError(f"launch argument player must be one of {', '.join(PLAYERS)}, got "
                         f"'{player}'")
    bag = LaunchConfiguration('bag').perform(context)
    topics = LaunchConfiguration('topics').perform(context).replace(',', ' ').split()
    return (_ros2bag if player == 'ros2bag' else _builtin)(context, bag, topics)


def generate_launch_description() -> LaunchDescription:
    args = [
        DeclareLaunchArgument('bag', description='the bag (.mcap file or rosbag2 folder)'),
        DeclareLaunchArgument('player', default_value='builtin',
                              description="builtin (this package's bag_player, no rosbag2 "
                              "needed) or ros2bag (`ros2 bag play --clock`)"),
        DeclareLaunchArgument('rate', default_value='1.0', description='playback rate'),
        DeclareLaunchArgument('loop', default_value='true', description='replay forever'),
        DeclareLaunchArgument('start_delay', default_value='3.0',
                              description='seconds before playing (lets the model load)'),
        DeclareLaunchArgument('start_offset', default_value='0.0',
                              description='bag seconds to skip at the start'),
        DeclareLaunchArgument('topics', default_value='',
                              description="topics to play, space separated ('' = all)"),
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
