/* Node executable: start `python3 <this file's path>.py` with SIGINT and SIGTERM blocked.
 *
 * Why C and not a `#!/usr/bin/env python3` script: Ctrl-C in a terminal reaches every node
 * of a `ros2 launch` at once, often while its Python is still starting up (site.py and its
 * .pth files, then the imports of rclpy and torch: seconds on a loaded machine). No Python
 * code can catch a KeyboardInterrupt raised inside site.py ("Fatal Python error:
 * init_import_site", exit 1), and before Python has a handler SIGINT simply kills the
 * process (exit -2). A blocked signal is not lost: it stays pending across execvp(), and
 * spatial_llava_ros.nodes.stop_signals unblocks it once the node spins, where it is a
 * clean shutdown (exit 0). Only the few microseconds between this program's start and
 * sigprocmask() below remain unprotected.
 *
 * The script is the one CMakeLists.txt installs next to this executable, found through
 * /proc/self/exe (argv[0] where /proc is missing), so `ros2 run`, launch files and a
 * symlink install all find it. `python3` is looked up on PATH, as `env python3` would.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  if (sigprocmask(SIG_BLOCK, &stop, NULL) != 0) {
    perror("spatial_llava_ros node launcher: sigprocmask");
    return 1;
  }

  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 4);
  if (n <= 0) {
    if (realpath(argv[0], self) == NULL) {
      fprintf(stderr, "spatial_llava_ros node launcher: cannot find myself (%s): %s\n",
              argv[0], strerror(errno));
      return 1;
    }
    n = (ssize_t)strlen(self);
    if (n > PATH_MAX - 4) {
      fprintf(stderr, "spatial_llava_ros node launcher: path too long: %s\n", self);
      return 1;
    }
  }
  memcpy(self + n, ".py", 4);

  char **args = calloc((size_t)argc + 2, sizeof(char *));
  if (args == NULL) {
    perror("spatial_llava_ros node launcher");
    return 1;
  }
  args[0] = "python3";
  args[1] = self;
  for (int i = 1; i < argc; ++i) {
    args[i + 1] = argv[i];
  }
  execvp("python3", args);
  fprintf(stderr, "spatial_llava_ros node launcher: cannot run python3 %s: %s\n", self,
          strerror(errno));
  return 127;
}
