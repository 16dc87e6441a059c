"""ROS 2 nodes: thin rclpy layers over the core.

Only the ``*_node`` modules and ``ros_common`` import rclpy and the generated interfaces;
``conversions``, ``params`` and ``frame_watch`` are plain Python so they are tested on
machines without ROS 2, and the resolver node's query handling is in the ROS-free
``spatial_llava_ros.queries``. Executables (``ros2 run spatial_llava_ros <node>``) call each
module's ``main()``.
"""
