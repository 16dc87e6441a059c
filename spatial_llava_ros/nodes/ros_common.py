"""rclpy helpers shared by the nodes: parameter declaration from specs, QoS, main()."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import rclpy
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

from spatial_llava_ros.nodes.params import ParamSpec
from spatial_llava_ros.nodes.stop_signals import (
    catch_stop_signals,
    ignore_stop_signals,
    release_stop_signals,
)

_PARAM_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
                float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}

# Camera streams: newest frame only, never queue up; BEST_EFFORT also matches RELIABLE
# publishers (drivers, `ros2 bag play`).
IMAGE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                       reliability=ReliabilityPolicy.BEST_EFFORT,
                       durability=DurabilityPolicy.VOLATILE)
# Marked frames between our own nodes: reliable so image and marks pair up, still shallow.
MARKED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2,
                        reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)
# Commands and results: every one matters.
COMMAND_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
# Goals: the latest only, volatile so a restarted Nav2 never gets an old goal.
GOAL_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """A ParameterDescriptor with the spec's type, description, range and read-only flag."""
    desc = ParameterDescriptor(name=spec.name, type=_PARAM_TYPES[spec.type],
                               description=spec.description, read_only=spec.read_only)
    if spec.choices:
        desc.additional_constraints = 'one of: ' + ', '.join(spec.choices)
    if spec.type is float and spec.min is not None and spec.max is not None:
        desc.floating_point_range = [FloatingPointRange(
            from_value=float(spec.min), to_value=float(spec.max), step=0.0)]
    elif spec.type is int and spec.min is not None and spec.max is not None:
        desc.integer_range = [IntegerRange(from_value=int(spec.min), to_value=int(spec.max),
                                           step=1)]
    return desc


def declare_specs(node: Node, specs: tuple[ParamSpec, ...]) -> None:
    """Declare every spec on ``node`` and validate later changes with ``ParamSpec.check``."""
    by_name = {s.name: s for s in specs}
    for s in specs:
        node.declare_parameter(s.name, s.default, descriptor(s))
    # values given at start-up (params file, launch) are checked now, with one clear message
    problems = [by_name[n].check(node.get_parameter(n).value) for n in by_name]
    problems = [p for p in problems if p]
    if problems:
        raise ValueError('bad parameters: ' + '; '.join(problems))

    def on_set(params) -> SetParametersResult:
        for p in params:
            s = by_name.get(p.name)
            problem = s.check(p.value) if s is not None else None
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)


def param(node: Node, name: str):
    """The current value of a declared parameter."""
    return node.get_parameter(name).value


def spin(make_node: Callable[[], Node], num_threads: int = 4, args=None) -> int:
    """rclpy.init, spin ``make_node()`` on a MultiThreadedExecutor; 0 after Ctrl-C/SIGTERM.

    SIGINT and SIGTERM only request the stop (``stop_signals``): rclpy's handler shuts the
    context down, which ends ``spin()`` with ExternalShutdownException, or with ``RCLError:
    failed to initialize wait set: the given context is not valid`` when it lands between
    the executor's "context ok?" check and its next wait set (a shutdown too when the
    context is no longer ok; any other error still raises). Signals sent while the launcher
    held them blocked (Python's start-up, the imports, rclpy.init, building the node) are
    delivered when the node starts spinning. On the way out ``node.close()`` (when the node
    has one) stops the node's own work; it returns False when a callback of the node is
    still running and would not end soon (the resolver: an activate loading the model on a
    busy machine). Then, once rclpy is shut down, the process leaves with ``os._exit(0)``:
    the interpreter's normal exit would wait for that executor thread, and the load, still
    running during interpreter shutdown, fails there with an ERROR line ("cannot schedule
    new futures after interpreter shutdown"). (This rclpy's ``Executor.shutdown()`` does not
    wait for callbacks in flight.)
    """
    stopped = catch_stop_signals()
    node = executor = None
    try:
        rclpy.init(args=args)
        node = make_node()
        executor = MultiThreadedExecutor(num_threads=num_threads)
        executor.add_node(node)
        release_stop_signals()
        if not stopped.is_set():  # a signal before rclpy's handler existed (no launcher)
            executor.spin()
    except ExternalShutdownException:
        pass
    except _rclpy.RCLError:
        if rclpy.ok():
            raise
    finally:
        close = getattr(node, 'close', None)
        busy = close is not None and close() is False
        if executor is not None:
            executor.shutdown(timeout_sec=0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        ignore_stop_signals()
    if busy:  # see the docstring: nothing is left to save, and a normal exit would hang
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
