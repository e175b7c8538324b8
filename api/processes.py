"""Which process is this, and is another one still alive: ``host:pid`` owners.

Job leases (:mod:`api.jobs`) and the per-worker metrics files (:mod:`api.metrics`) are both
named after the process that wrote them, and both ignore what a dead process left behind.
"""

from __future__ import annotations

import os
import signal
import socket
import time


def owner_id() -> str:
    """``host:pid`` of this process (who holds a lease, whose metrics file it is)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str | None) -> bool | None:
    """Whether the owner's process exists: True/False on this host, None elsewhere.

    >>> owner_alive(owner_id()), owner_alive("elsewhere:1"), owner_alive(None)
    (True, None, None)
    """
    if not owner or ":" not in owner:
        return None
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (a killed child its parent has not waited for)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def stop_process(worker: str | None, marker: str = "", timeout: float = 5.0) -> bool | None:
    """Kill (SIGKILL) the process ``host:pid`` when it runs on this host; True once it is gone.

    ``marker`` must occur in its command line (Linux ``/proc``), so a pid the system gave to
    another process since is never killed. ``None``: the process runs on another host (it
    stops itself, see :func:`api.jobs.run_job_process`); False: it would not die in ``timeout``.

    >>> stop_process(None), stop_process("elsewhere:1")
    (None, None)
    """
    if owner_alive(worker) is None:
        return None
    pid = int(str(worker).rpartition(":")[2])
    if pid == os.getpid() or not _running(pid):
        return pid != os.getpid()
    if marker:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if marker.encode() not in fh.read():
                    return True  # the pid is another process now: ours is gone
        except FileNotFoundError:
            return True
        except OSError:
            pass
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while _running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
