"""Which process is this, and is another one still alive: ``host:pid`` owners.

Job leases (:mod:`api.jobs`) and the per-worker metrics files (:mod:`api.metrics`) are both
named after the process that wrote them, and both ignore what a dead process left behind.
"""

from __future__ import annotations

import os
import socket


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
