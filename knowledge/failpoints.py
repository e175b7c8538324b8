"""Named fault-injection points for the fault tests (off unless ``KB_FAILPOINTS`` is set).

``KB_FAILPOINTS="index.write=enospc,adapter.publish=kill"`` makes :func:`hit` act at those
points: ``kill`` (SIGKILL this process, as ``kill -9`` would), ``error`` (raise KBError),
``enospc`` (raise the OSError a full disk gives), ``sleep:SECONDS``. Unset, :func:`hit` is
one environment lookup.

>>> import os; os.environ.pop("KB_FAILPOINTS", None); hit("index.write")
>>> os.environ["KB_FAILPOINTS"] = "index.write=error"
>>> hit("index.write")
Traceback (most recent call last):
knowledge.core.errors.KBError: failpoint index.write
>>> del os.environ["KB_FAILPOINTS"]
"""

from __future__ import annotations

import errno
import os
import signal
import time

from knowledge.core.errors import KBError

ENV = "KB_FAILPOINTS"


def hit(name: str) -> None:
    """Act on ``name`` if ``KB_FAILPOINTS`` names it (see the module docstring)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    for item in spec.split(","):
        point, _, action = item.strip().partition("=")
        if point != name:
            continue
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "enospc":
            raise OSError(errno.ENOSPC, f"No space left on device (failpoint {name})")
        elif action.startswith("sleep:"):
            time.sleep(float(action[6:]))
        else:
            raise KBError(f"failpoint {name}")
