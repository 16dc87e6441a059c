"""Resident set size of this process, for flood and soak reports (Linux /proc, no psutil)."""

from __future__ import annotations

import os
import resource


def rss_bytes() -> int:
    """Current RSS in bytes: /proc/self/statm on Linux, else the peak from getrusage.

    The peak is only an upper bound (it never falls), so reports say which one was used.
    """
    try:
        with open('/proc/self/statm', encoding='ascii') as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak) * 1024  # KiB on Linux; macOS gives bytes, but /proc exists on Linux


def rss_source() -> str:
    """Which measurement ``rss_bytes`` uses here: 'statm' (current) or 'maxrss' (peak)."""
    return 'statm' if os.path.exists('/proc/self/statm') else 'maxrss'
