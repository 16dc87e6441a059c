"""What happens to a spatial query after it arrives, with no ROS import.

The resolver node's logic that needs no rclpy lives here, so it is tested on machines
without ROS 2: the bounded queue (``queue``), the jobs and their one-answer-each worker
(``jobs``), answering a job on the newest frame (``answer``), the hand-off of a goal to a
NavigateToPose client (``nav2``) and the lines the node logs (``log_lines``).
``nodes/resolver_node.py`` maps messages to these calls and back.
"""
