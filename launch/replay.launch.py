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
ros-humble-rosbag2-storage-mcap; its loops restart bag time). A missing bag, or ros2bag
without rosbag2, stops the launch with one error line before any node starts; a player
that fails later (unreadable bag) shuts the launch down with its one-line error.
"""

import importlib.util
import math
import shutil
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
    if shutil.which('ros2') is None or importlib.util.find_spec('ros2bag') is None:
        raise RuntimeError('player:=ros2bag needs rosbag2 (`ros2 bag`), which is not installed '
                           '(apt install ros-$ROS_DISTRO-rosbag2 '
                           'ros-$ROS_DISTRO-rosbag2-storage-mcap); player:=builtin needs '
                           'nothing more')
    cmd = ['ros2', 'bag', 'play', bag, '--clock', '--rate', LaunchConfiguration('rate')
           .perform(context)]
    if _flag(context, 'loop'):
        cmd.append('--loop')
    start_delay = LaunchConfiguration('start_delay').perform(context)
    if _seconds(context, 'start_delay') > 0:
        cmd += ['--delay', start_delay]
    if _seconds(context, 'start_offset') > 0:
        cmd += ['--start-offset', LaunchConfiguration('start_offset').perform(context)]
    if topics:
        cmd += ['--topics', *topics]
    player = ExecuteProcess(cmd=cmd, output='screen', name='bag_play')
    return [player, _shutdown_when_it_fails(player, 'ros2 bag play')]


def _shutdown_when_it_fails(player, what: str):
    """A player that fails (bad bag, missing storage plugin) ends the replay: no camera."""
    def on_exit(event, _context):
        if event.returncode not in (0, None, -2, -15):  # a bad bag, not Ctrl-C
            return [LogInfo(msg=f'{what} exited with code {event.returncode}; '
                            'shutting down the replay'),
                    EmitEvent(event=Shutdown(reason=f'{what} failed'))]
        return None

    return RegisterEventHandler(OnProcessExit(target_action=player, on_exit=on_exit))


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
                  }],
                  # as bringup's nodes: Ctrl-C during its start-up waits for its imports
                  sigterm_timeout='60', sigkill_timeout='30')

    return [player, _shutdown_when_it_fails(player, 'bag_player')]


def _play(context):
    player = LaunchConfiguration('player').perform(context).strip()
    if player not in PLAYERS:
        raise ValueError(f"launch argument player must be one of {', '.join(PLAYERS)}, got "
                         f"'{player}'")
    bag = LaunchConfiguration('bag').perform(context)
    if not bag or not Path(bag).expanduser().exists():
        # checked before anything starts, so the one error line is all the launch prints
        raise FileNotFoundError(f"bag '{bag}' does not exist; write one with "
                                '`spatial-llava bag --out traj.mcap`')
    topics = LaunchConfiguration('topics').perform(context).replace(',', ' ').split()
    return (_ros2bag if player == 'ros2bag' else _builtin)(context, bag, topics)


# replay's own arguments: (name, default or None = required, description)
ARGUMENTS = (
    ('bag', None, 'the bag to play as the camera (.mcap file or rosbag2 folder)'),
    ('player', 'builtin', "builtin (this package's bag_player, no rosbag2 needed) or ros2bag "
     '(`ros2 bag play --clock`)'),
    ('rate', '1.0', 'playback rate'),
    ('loop', 'true', 'replay forever (builtin: stamps and clock move on each pass)'),
    ('start_delay', '3.0', 'seconds before playing (lets the model load)'),
    ('start_offset', '0.0', 'bag seconds to skip at the start'),
    ('topics', '', "topics to play, space separated ('' = all)"),
    ('use_sim_time', 'true', 'always true in a replay: the nodes run on the bag time that the '
     'player publishes on /clock (setting it has no effect)'),
)
# passed on to bringup.launch.py, declared with bringup's defaults and descriptions
PASSED = ('model_path', 'device', 'navigate', 'namespace', 'params_file', 'color_topic',
          'depth_topic', 'camera_info_topic')


def _bringup_arguments() -> dict[str, tuple[str, str]]:
    """bringup.launch.py's ARGUMENTS table: name -> (default, description)."""
    spec = importlib.util.spec_from_file_location('spatial_llava_bringup_launch',
                                                  HERE / 'bringup.launch.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {name: (default, desc) for name, default, desc in module.ARGUMENTS}


def generate_launch_description() -> LaunchDescription:
    args = []
    for name, default, desc in ARGUMENTS:
        kwargs = {} if default is None else {'default_value': default}
        args.append(DeclareLaunchArgument(name, description=desc, **kwargs))
    bringup_args = _bringup_arguments()
    for name in PASSED:
        default, desc = bringup_args[name]
        args.append(DeclareLaunchArgument(name, default_value=default, description=desc))
    bringup = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(HERE / 'bringup.launch.py')),
        launch_arguments=dict({'use_sim_time': 'true'},
                              **{name: LaunchConfiguration(name) for name in PASSED}).items())
    # the player's checks (bag exists, player installed) run before any node starts
    return LaunchDescription(args + [OpaqueFunction(function=_play), bringup])
