"""spatial_llava_ros: Set-of-Marks grounding of spatial language for robots.

The core (everything except ``spatial_llava_ros.nodes``) never imports ROS.
"""

__version__ = '0.1.0'
