"""Peak resident memory of this process, for the benchmark children."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's own high-water RSS in MB: ``VmHWM`` of ``/proc/self/status``.

    Not ``getrusage().ru_maxrss``: Linux carries that across fork and exec, so a child started by a driver
    that had grown to 1 GB (generating 10M rows in-process) reported 962 MB whatever it did itself.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # elsewhere: the best there is
