"""Bring up spatial_llava_ros: marker node, resolver (lifecycle, driven to active), speech.

    ros2 launch spatial_llava_ros bringup.launch.py model_path:=/models/spatial-llava \\
        color_topic:=/camera/color/image_raw depth_topic:=/camera/depth/image_raw \\
        camera_info_topic:=/camera/color/camera_info navigate:=true

The resolver is a lifecycle node started with `autostart: true`: it configures, then
activates, itself as soon as it spins. (Not launch_ros ChangeState events: their service
wait in the launch process raises "cannot use Destroyable because destruction was
requested" when Ctrl-C comes while the node still starts up.) model_path '' (the default)
loads the model shipped in the package; a model_path that is not a directory, or '' when no model
is shipped, fails the configure transition (the node logs why and stays `unconfigured`; the
rest keeps running).
Launch arguments that are left empty do not override params_file.
"""

from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

PACKAGE = 'spatial_llava_ros'
# On shutdown launch sends SIGINT, SIGTERM sigterm_timeout s later, SIGKILL sigkill_timeout s
# after that. The nodes take SIGINT and SIGTERM alike as "stop" (nodes/stop_signals.py), but a
# node stopped during its start-up first finishes its imports (torch: tens of seconds on a
# loaded machine) and one that is loading the model finishes loading; 5 + 5 s (the
# defaults) would SIGKILL them on a busy machine.
STOP_TIMEOUTS = {'sigterm_timeout': '60', 'sigkill_timeout': '30'}

ARGUMENTS = (
    ('namespace', '', 'namespace of all nodes (topics stay relative to it)'),
    ('color_topic', '/camera/color/image_raw', 'colour image topic'),
    ('depth_topic', '/camera/depth/image_raw', 'depth image topic, registered to colour'),
    ('camera_info_topic', '/camera/color/camera_info', 'camera info of the colour image'),
    ('detections_topic', '', 'optional vision_msgs/Detection2DArray topic (enables detections)'),
    ('model_path', '', "local Spatial-LLaVA checkpoint directory (overrides params_file; "
     "'' = params_file, whose default '' is the model shipped in the package)"),
    ('device', '', "torch device, e.g. cuda:0 or cpu ('' = params_file / auto)"),
    ('use_depth', 'true', 'pair colour with depth; false = colour-only marks (no 3D goals)'),
    ('use_speech', 'false', 'also start speech_node (voice queries to spatial_query)'),
    ('navigate', 'false', 'send NAVIGATE queries to Nav2 NavigateToPose'),
    ('base_frame', '', "robot base frame ('' = params_file, default base_link)"),
    ('target_frame', '', "fixed frame for goals ('' = params_file, default map)"),
    ('use_sim_time', 'false', 'use /clock (bag replay, simulation)'),
    ('params_file', '', 'parameters YAML (default: the installed config/params.yaml)'),
    ('log_level', 'info', 'ROS log level of the nodes'),
)


def _flag(context, name: str) -> bool:
    value = LaunchConfiguration(name).perform(context).strip().lower()
    if value not in ('true', 'false', '1', '0', 'yes', 'no'):
        raise ValueError(f"launch argument {name} must be true or false, got '{value}'")
    return value in ('true', '1', 'yes')


def _params_file(context) -> str:
    given = LaunchConfiguration('params_file').perform(context)
    if given:
        if not Path(given).is_file():
            raise FileNotFoundError(f'params_file {given} does not exist')
        return given
    from ament_index_python.packages import get_package_share_directory

    return str(Path(get_package_share_directory(PACKAGE)) / 'config' / 'params.yaml')


def _setup(context):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    namespace = arg('namespace')
    params_file = _params_file(context)
    common = {'use_sim_time': _flag(context, 'use_sim_time')}
    log_args = ['--ros-args', '--log-level', arg('log_level')]

    marker_overrides = dict(common, use_depth=_flag(context, 'use_depth'))
    remaps = [('image', arg('color_topic')), ('depth', arg('depth_topic')),
              ('camera_info', arg('camera_info_topic'))]
    if arg('detections_topic'):
        marker_overrides['use_detections'] = True
        remaps.append(('detections', arg('detections_topic')))
    marker = Node(package=PACKAGE, executable='marker_node', name='marker_node',
                  namespace=namespace, output='screen', arguments=log_args,
                  parameters=[params_file, marker_overrides], remappings=remaps,
                  **STOP_TIMEOUTS)

    resolver_overrides = dict(common, navigate=_flag(context, 'navigate'), autostart=True)
    for name in ('model_path', 'device', 'base_frame', 'target_frame'):
        if arg(name):
            resolver_overrides[name] = arg(name)
    resolver = LifecycleNode(package=PACKAGE, executable='resolver_node', name='resolver_node',
                             namespace=namespace, output='screen', arguments=log_args,
                             parameters=[params_file, resolver_overrides], **STOP_TIMEOUTS)
    actions = [marker, resolver]
    if _flag(context, 'use_speech'):
        actions.append(Node(package=PACKAGE, executable='speech_node', name='speech_node',
                            namespace=namespace, output='screen', arguments=log_args,
                            parameters=[params_file, common], **STOP_TIMEOUTS))
    return actions


def generate_launch_description() -> LaunchDescription:
    args = [DeclareLaunchArgument(name, default_value=default, description=desc)
            for name, default, desc in ARGUMENTS]
    return LaunchDescription(args + [OpaqueFunction(function=_setup)])
