"""What the launch tests share: spinning until a condition holds, and lifecycle states.

Imported by test_launch_*.py only after their rclpy importorskip, so pytest never imports it
where ROS 2 is missing (the name does not start with test_).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import rclpy
from lifecycle_msgs.srv import GetState
from rclpy.node import Node


def spin_until(node: Node, done: Callable[[], bool], timeout: float,
               publish: Callable[[], None] | None = None, every: float = 0.2) -> bool:
    """Spin ``node`` until ``done()``; call ``publish`` every ``every`` s meanwhile."""
    end = time.monotonic() + timeout
    next_publish = 0.0
    while time.monotonic() < end:
        if publish is not None and time.monotonic() >= next_publish:
            publish()
            next_publish = time.monotonic() + every
        rclpy.spin_once(node, timeout_sec=0.05)
        if done():
            return True
    return False


def lifecycle_state(node: Node, target: str = '/resolver_node',
                    timeout: float = 5.0) -> str | None:
    """The lifecycle label of ``target`` ('active', ...), or None when it does not answer."""
    client = node.create_client(GetState, f'{target}/get_state')
    try:
        if not client.wait_for_service(timeout_sec=timeout):
            return None
        future = client.call_async(GetState.Request())
        if not spin_until(node, future.done, timeout):
            return None
        return future.result().current_state.label
    finally:
        node.destroy_client(client)


def wait_for_state(node: Node, label: str = 'active', target: str = '/resolver_node',
                   timeout: float = 120.0) -> bool:
    """Poll ``target`` until it reaches ``label`` (the model loads on activate: slow)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if lifecycle_state(node, target) == label:
            return True
        time.sleep(0.5)
    return False
