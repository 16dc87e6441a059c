import sys

from spatial_llava_ros.cli import main

sys.exit(main())
