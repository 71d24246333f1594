"""Which process runs a run, and whether it still does: how a run killed mid-way is told from one still running.

A run records :func:`this_process` (pid, host, a start marker) in its spec; :func:`process_alive`
reads that record back on this machine. The store marks a "running" run whose process has ended
as interrupted (:meth:`engine.store.runs.Runs.runs`), and refuses to resume one still running.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any


def this_process() -> dict[str, Any]:
    """Who runs a run: pid, host and a start marker that tells this process from a later one with the same pid."""
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "started": _process_start_marker(pid)}


def _process_start_marker(pid: int) -> str | None:
    """Linux: the process's start time in clock ticks since boot (field 22 of /proc/PID/stat); else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: the other fields follow the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def process_alive(process: Any) -> bool | None:
    """Whether the process a run recorded (see :func:`this_process`) still runs.

    None when this machine cannot tell: no record (an older run), or another host.
    """
    if not isinstance(process, dict) or process.get("host") != socket.gethostname():
        return None
    pid = process.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return None
    if Path("/proc/self/stat").is_file():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        if stat[stat.rindex(")") + 2:].startswith("Z"):
            return False  # a zombie: dead, only not yet reaped by its parent
        recorded = process.get("started")
        return recorded is None or recorded == _process_start_marker(pid)  # else the pid was reused
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return kernel32.GetLastError() == 5  # access denied: it exists
        try:
            code = ctypes.c_ulong()
            kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
