"""A host that behaves like PythonQt inside Slicer: the main thread holds the GIL all the time
and runs Python only in a timer tick every 100 ms.

PythonQt takes the GIL at start-up and keeps it while Qt's event loop idles (its release
mechanism is off unless ``setEnableThreadSupport`` is called, and Slicer does not call it).
Here the idle event loop is ``usleep`` called through ``ctypes.PyDLL``, which, unlike
``ctypes.CDLL``, does not release the GIL around the call. A Python worker thread can then
only run while a tick executes Python code, exactly the situation the module must survive.
"""
from __future__ import annotations

import ctypes
import time
from typing import Callable

_libc = ctypes.PyDLL(None)  # PyDLL: the GIL stays held during the call
_usleep = _libc.usleep
_usleep.argtypes = [ctypes.c_uint]


def idle_holding_gil(seconds: float) -> None:
    """Sleep in C without releasing the GIL (Qt's event loop idling under PythonQt)."""
    _usleep(int(seconds * 1e6))


def run_host(tick: Callable[[], None], finished: Callable[[], bool], period_s: float = 0.1,
             timeout_s: float = 120.0) -> tuple[float, int, bool]:
    """Call ``tick`` every ``period_s`` until ``finished()``; returns (seconds, ticks, finished)."""
    t0 = time.perf_counter()
    ticks = 0
    while not finished():
        if time.perf_counter() - t0 > timeout_s:
            return time.perf_counter() - t0, ticks, False
        tick()
        ticks += 1
        idle_holding_gil(period_s)
    return time.perf_counter() - t0, ticks, True
