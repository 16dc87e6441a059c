"""ROS 2 nodes: thin rclpy layers over the core.

Only the ``*_node`` modules import rclpy and the generated interfaces; ``conversions``,
``params`` and ``query_queue`` are plain Python so they are tested on machines without
ROS 2. Executables (``ros2 run spatial_llava_ros <node>``) call each module's ``main()``.
"""
