"""Ctrl-C (SIGINT) and SIGTERM for the node processes: a request to stop, never a traceback.

Why this exists: a terminal's Ctrl-C goes to the whole process group, so a node gets
SIGINT from the terminal and again from `ros2 launch` when it shuts down, at any moment:
while its Python still starts up (site.py, the imports of torch), inside rclpy.init, in the
executor, or during the clean-up after the first one. Python's default turns each into a
KeyboardInterrupt wherever the main thread happens to be, which no ``except`` can cover
everywhere. So the node executables (CMakeLists.txt: launcher/node_launcher.c) start
Python with SIGINT and SIGTERM *blocked*: a signal sent during the start-up stays pending.
main() then puts these handlers in place, lets rclpy.init install its own on top (rclpy's
handler shuts the context down, which ends the executor's spin, and then calls the handler
it found, this one), and unblocks the signals once the node spins: a pending Ctrl-C is then
delivered, and is a normal shutdown. A second Ctrl-C during the clean-up only sets the flag
again, and once rclpy is shut down they are ignored: Python's own finalization puts SIGINT
back to SIG_DFL (but leaves SIG_IGN alone), and launch's second SIGINT arriving then killed a
node that had already finished its clean-up (exit -2).
"""

from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def catch_stop_signals() -> threading.Event:
    """Make SIGINT and SIGTERM set the returned event instead of raising or killing, and
    hold them blocked (as the launcher does) until ``release_stop_signals()``.

    Call it in the main thread before ``rclpy.init()``, so that rclpy's handlers chain to
    these and no KeyboardInterrupt is ever raised. The handlers stay for the life of the
    process: a signal during the clean-up must not interrupt it.
    """
    stopped = threading.Event()
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

    def _handler(signum, frame) -> None:
        stopped.set()

    for sig in STOP_SIGNALS:
        signal.signal(sig, _handler)
    return stopped


def release_stop_signals() -> None:
    """Unblock SIGINT and SIGTERM in this thread (the launcher blocked them before Python
    started); one sent meanwhile is delivered now. Harmless when nothing blocked them."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def stop_signals_blocked() -> bool:
    """True while SIGINT is blocked in this thread (started by the node launcher)."""
    return signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def ignore_stop_signals() -> None:
    """SIGINT and SIGTERM ignored from now on: call it last in main(), after rclpy is shut
    down (its shutdown puts back the handlers it found), so that the interpreter's exit, which
    resets Python's handlers to SIG_DFL, cannot be killed by a late Ctrl-C."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
