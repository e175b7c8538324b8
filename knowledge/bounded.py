"""Read a document in a child process with CPU-time, memory and wall-clock limits.

A hostile file (a spreadsheet that pads to billions of cells, an XML bomb, a page of
metres) must never hold the serving process. The API reads uploads through
:func:`call_bounded`: it runs a reading function (``"module:function"``) in
``python -m knowledge.bounded``, which applies ``resource.setrlimit`` to itself (RLIMIT_CPU,
RLIMIT_AS) before importing anything that parses, runs niced, and dies with its parent. The
parent kills it when the wall clock runs out. Keyword arguments and the result travel as
JSON over stdin/stdout; an error the function raises on purpose (:class:`IngestError`,
:class:`GlossaryError`, any :class:`KBError`) comes back as the same class, and a limit that
was hit comes back as an :class:`IngestError` naming the setting.

>>> limits = Limits(cpu_s=30, memory_mb=1024, timeout_s=30)
>>> call_bounded("knowledge.bounded:echo", "x.txt", {"value": [1, "二"]}, limits)   # doctest: +SKIP
[1, '二']
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knowledge.core.errors import GlossaryError, IngestError, KBError

__all__ = ["Limits", "call_bounded", "apply_limits", "echo"]

_ROOT = Path(__file__).resolve().parents[1]   # the code base the child imports
_NICE = 10                                     # reading yields the CPU to answering
_GRACE_S = 5                                   # hard CPU limit above the soft one (SIGKILL then)


@dataclass(frozen=True)
class Limits:
    """What one child may use: CPU seconds, address space (MB), wall-clock seconds."""

    cpu_s: int
    memory_mb: int
    timeout_s: float
    concurrency: int = 2   # children of this process reading at once; a caller waits for a slot

    @classmethod
    def from_ingest(cls, ingest: Any) -> "Limits":
        """The ``ingest.parse_cpu_s`` / ``parse_memory_mb`` / ``parse_timeout_s`` /
        ``parse_concurrency`` settings."""
        return cls(int(ingest.parse_cpu_s), int(ingest.parse_memory_mb), float(ingest.parse_timeout_s),
                   int(ingest.parse_concurrency))


_SLOTS: dict[int, threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()


def _slots(n: int) -> threading.BoundedSemaphore:
    """The process-wide semaphore for ``n`` concurrent children."""
    with _SLOTS_LOCK:
        return _SLOTS.setdefault(n, threading.BoundedSemaphore(max(1, n)))


def apply_limits(cpu_s: int, memory_mb: int) -> None:
    """Limit this process: ``cpu_s`` CPU seconds (SIGXCPU, then SIGKILL ``_GRACE_S`` later) and
    ``memory_mb`` MB of address space (allocations past it fail with MemoryError)."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + _GRACE_S))
    limit = memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def call_bounded(target: str, path: Path | str, kwargs: dict[str, Any], limits: Limits) -> Any:
    """Run ``target(**kwargs)`` (``"package.module:function"``) in a limited child process and
    return its JSON result. ``path`` names the file in error messages.

    Raises what the function raised on purpose (same class), or :class:`IngestError` when the
    child ran past a limit or died.
    """
    slots = _slots(limits.concurrency)
    if not slots.acquire(timeout=limits.timeout_s):
        raise IngestError(path, f"not read: {limits.concurrency} other file(s) were being read for "
                                f"{limits.timeout_s:g} s (settings ingest.parse_concurrency, ingest.parse_timeout_s)")
    try:
        return _call(target, path, kwargs, limits)
    finally:
        slots.release()


def _call(target: str, path: Path | str, kwargs: dict[str, Any], limits: Limits) -> Any:
    request = json.dumps({"target": target, "kwargs": kwargs, "cpu_s": limits.cpu_s,
                          "memory_mb": limits.memory_mb}, ensure_ascii=False)
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    try:
        proc = subprocess.run([sys.executable, "-m", "knowledge.bounded"], input=request.encode("utf-8"),
                              capture_output=True, env=env, timeout=limits.timeout_s, check=False)
    except subprocess.TimeoutExpired:  # subprocess.run has killed and reaped the child
        raise IngestError(path, f"reading stopped after {limits.timeout_s:g} s "
                                f"(setting ingest.parse_timeout_s)") from None
    if proc.returncode == -signal.SIGXCPU:
        raise IngestError(path, f"reading used more than {limits.cpu_s} s of CPU (setting ingest.parse_cpu_s)")
    if proc.returncode == -signal.SIGKILL:   # the hard CPU limit, or the kernel out of memory
        raise IngestError(path, f"the reading process was killed (more than {limits.cpu_s} s of CPU, setting "
                                f"ingest.parse_cpu_s, or out of memory, ingest.parse_memory_mb)")
    try:
        reply = json.loads(proc.stdout.decode("utf-8"))
    except ValueError:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        if "MemoryError" in tail[0] or "bad_alloc" in tail[0]:
            raise IngestError(path, _memory_reason(limits)) from None
        raise IngestError(path, f"the reading process died (exit {proc.returncode}) {tail[0][:200]}".strip()) from None
    if "result" in reply:
        return reply["result"]
    kind, message = reply.get("type"), str(reply.get("message", ""))
    if kind == "MemoryError":
        raise IngestError(path, _memory_reason(limits))
    if kind == "IngestError":
        raise IngestError(path, str(reply.get("reason") or message))
    if kind == "GlossaryError":
        raise GlossaryError(message)
    if reply.get("kb"):
        raise KBError(message)
    raise IngestError(path, f"unreadable ({kind}: {message})")


def _memory_reason(limits: Limits) -> str:
    return f"reading needed more than {limits.memory_mb} MB of memory (setting ingest.parse_memory_mb)"


def echo(value: Any) -> Any:
    """A target that returns its argument (the protocol's smallest check)."""
    return value


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (a server killed mid-upload)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child() -> int:
    """``python -m knowledge.bounded``: read the request on stdin, answer on stdout."""
    request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    apply_limits(int(request["cpu_s"]), int(request["memory_mb"]))
    _die_with_parent()
    try:
        os.nice(_NICE)
    except OSError:
        pass
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)   # whatever a library prints goes to stderr, never into the reply
    try:
        module, _, name = str(request["target"]).partition(":")
        reply: dict[str, Any] = {"result": getattr(importlib.import_module(module), name)(**request["kwargs"])}
    except MemoryError:
        reply = {"type": "MemoryError", "message": "out of memory"}
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent, typed
        reply = {"type": type(exc).__name__, "message": str(exc), "reason": getattr(exc, "reason", None),
                 "kb": isinstance(exc, KBError)}
    out.write(json.dumps(reply, ensure_ascii=False, default=str))
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_child())
