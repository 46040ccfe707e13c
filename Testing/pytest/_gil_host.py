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


class TickLog:
    """Wall and thread-CPU seconds of every tick, by phase (what the GUI thread spent per timer tick)."""

    def __init__(self) -> None:
        self.ticks: list[tuple[str, float, float]] = []  # (phase, wall s, cpu s)

    def timed(self, phase: str, fn: Callable[[], object]) -> object:
        w, c = time.perf_counter(), time.thread_time()
        try:
            return fn()
        finally:
            self.ticks.append((phase, time.perf_counter() - w, time.thread_time() - c))

    def phases(self) -> list[str]:
        return list(dict.fromkeys(p for p, _, _ in self.ticks))

    def stats(self, phase: str) -> dict[str, float]:
        """ticks, longest and p99 wall seconds, and the CPU seconds of the longest tick."""
        rows = [(w, c) for p, w, c in self.ticks if p == phase]
        walls = sorted(w for w, _ in rows)
        if not walls:
            return {"ticks": 0, "longest": 0.0, "p99": 0.0, "longest_cpu": 0.0, "total": 0.0}
        p99 = walls[min(len(walls) - 1, max(0, int(round(0.99 * len(walls))) - 1))]
        longest = max(rows)
        return {"ticks": len(walls), "longest": walls[-1], "p99": p99, "longest_cpu": longest[1],
                "total": sum(walls)}


def run_host_logged(tick: Callable[[], None], finished: Callable[[], bool], phase: Callable[[], str],
                    log: TickLog, period_s: float = 0.1, timeout_s: float = 120.0,
                    between: Callable[[], None] | None = None) -> tuple[float, int, bool]:
    """:func:`run_host`, each tick timed into ``log`` under ``phase()`` (read before the tick);
    ``between()`` (optional) runs after each tick, like a Qt event (a button click) between ticks."""
    t0 = time.perf_counter()
    ticks = 0
    while not finished():
        if time.perf_counter() - t0 > timeout_s:
            return time.perf_counter() - t0, ticks, False
        log.timed(phase(), tick)
        ticks += 1
        if between is not None:
            between()
        idle_holding_gil(period_s)
    return time.perf_counter() - t0, ticks, True
