"""spatial_llava_ros: Set-of-Marks grounding of spatial language for robots.

The core (everything except ``spatial_llava_ros.nodes``) never imports ROS.
"""

from pkgutil import extend_path

# A colcon-built install holds the generated interfaces (spatial_llava_ros.msg / .action and
# their typesupport libraries) inside its copy of this package. When a source checkout comes
# first on sys.path (pytest or `python -m` run from the source tree), extending the package
# path to the other copies on sys.path lets the checkout's modules find those generated ones
# instead of reporting them missing. For a plain pip install there is only one copy.
__path__ = extend_path(__path__, __name__)

__version__ = '0.1.0'
