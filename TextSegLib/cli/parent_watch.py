"""Exit when the parent application ends: what ``textseg serve --parent-pid PID`` runs.

The Slicer module starts the engine through Slicer's CTK launcher (``PythonSlicer``), which
starts the real interpreter as its own child and forwards no signals. When Slicer crashes,
nothing tells that interpreter: the launcher lives on (or dies alone), and a
``PR_SET_PDEATHSIG`` set on the launcher never reaches its child. So the server watches
the PID of the application itself and stops when it is gone.

* Linux: the PID's start time (``/proc/PID/stat``, field 22) is read once, so a PID
  reused by another program later, or a zombie left unreaped, counts as "gone".
* Windows: a handle to the process is held (a PID is not reused while a handle is open)
  and waited on.
* Other POSIX: ``kill(pid, 0)``.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable


def _linux_stat(pid: int) -> tuple[str, str] | None:
    """``(state, start time)`` of a Linux process, or None if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()  # the name may hold spaces and ')'
    return fields[0], fields[19]


def start_token(pid: int) -> str | None:
    """What identifies this process beyond its PID (Linux: its start time), None if unknown."""
    stat = _linux_stat(pid) if sys.platform.startswith("linux") else None
    return stat[1] if stat else None


def alive(pid: int, token: str | None = None) -> bool:
    """True while process ``pid`` runs (and, given a ``token``, is still the same process)."""
    if sys.platform.startswith("linux"):
        stat = _linux_stat(pid)
        return stat is not None and stat[0] not in ("Z", "X") and (token is None or stat[1] == token)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_windows(pid: int) -> None:  # pragma: no cover - Windows only
    import ctypes

    kernel32 = ctypes.windll.kernel32
    handle = kernel32.OpenProcess(0x00100000, False, pid)  # SYNCHRONIZE
    if not handle:
        return  # no such process (any more)
    try:
        kernel32.WaitForSingleObject(handle, 0xFFFFFFFF)  # INFINITE
    finally:
        kernel32.CloseHandle(handle)


def watch(pid: int, on_gone: Callable[[], None], poll_s: float = 0.5) -> threading.Thread:
    """Call ``on_gone()`` from a daemon thread once process ``pid`` has ended."""
    token = start_token(pid)

    def run() -> None:
        if os.name == "nt":  # pragma: no cover - Windows only
            _wait_windows(pid)
        else:
            while alive(pid, token):
                time.sleep(poll_s)
        on_gone()

    thread = threading.Thread(target=run, name=f"textseg-parent-watch-{pid}", daemon=True)
    thread.start()
    return thread
