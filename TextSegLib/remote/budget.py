"""One memory budget for a server: uploads being read and decoded, the image cache and the kept results.

An upload reserves its bytes before they exist (the body as it is read, the decoded volume
from what its header declares) and gives them back when it is stored or refused. A
reservation that would pass the budget first makes room in the image cache (least
recently used first); if that is not enough it is refused: ``413 memory_limit`` when one
upload alone is larger than the per-upload cap (it can never fit), else ``503
memory_busy`` with ``Retry-After`` (other uploads hold the memory now).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Callable

from .codes import ApiError

_MB = 2**20
#: the server's memory budget (MB) when none is given (``create_app``, ``textseg serve --memory-budget``)
DEFAULT_BUDGET_MB = 4096.0


def release_memory() -> None:
    """Hand freed heap memory back to the system (glibc keeps it otherwise); a no-op elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


class MemoryBudget:
    """Thread-safe byte accounting of one server (see the module doc)."""

    def __init__(self, total_bytes: int, per_upload_bytes: int | None = None, *,
                 held: Callable[[], int] = lambda: 0, make_room: Callable[[int], None] = lambda n: None) -> None:
        self.total = int(total_bytes)
        self.per_upload = int(per_upload_bytes if per_upload_bytes is not None else total_bytes // 2)
        self.held = held  # bytes of the image cache and kept results
        self.make_room = make_room  # drop cached images until that many bytes are held at most
        self.in_flight = 0
        self._lock = threading.Lock()
        self.refused = {"memory_limit": 0, "memory_busy": 0}

    def reserve(self, nbytes: int, what: str) -> "Reservation":
        r = Reservation(self, what)
        r.grow(nbytes)
        return r

    def _take(self, nbytes: int, mine: int, what: str) -> None:
        if mine + nbytes > self.per_upload:
            self.refused["memory_limit"] += 1
            raise ApiError("memory_limit", f"{what} needs {(mine + nbytes) / _MB:,.0f} MB of memory, more than this "
                                           f"server allows one upload ({self.per_upload / _MB:,.0f} MB). Crop the "
                                           "scan, or ask the server admin to raise --max-decoded.")
        with self._lock:
            room = self.total - self.in_flight - nbytes
            if self.held() > room:
                self.make_room(max(0, room))
            if self.held() + self.in_flight + nbytes > self.total:
                self.refused["memory_busy"] += 1
                raise ApiError("memory_busy", f"The server's memory budget ({self.total / _MB:,.0f} MB) is in use by "
                                              "other uploads and kept results. Try again in a few seconds.",
                               {"Retry-After": "5"})
            self.in_flight += nbytes

    def _give(self, nbytes: int) -> None:
        with self._lock:
            self.in_flight = max(0, self.in_flight - nbytes)

    def info(self) -> dict:
        return {"budget_bytes": self.total, "per_upload_bytes": self.per_upload, "in_flight_bytes": self.in_flight,
                "held_bytes": self.held(), "refused": dict(self.refused)}


class Reservation:
    """Bytes one upload holds; ``grow`` raises the API error, ``close`` (or ``with``) gives them back."""

    def __init__(self, budget: MemoryBudget, what: str) -> None:
        self.budget, self.what, self.nbytes = budget, what, 0

    def grow(self, nbytes: int) -> None:
        if nbytes > 0:
            self.budget._take(nbytes, self.nbytes, self.what)
            self.nbytes += nbytes

    def close(self) -> None:
        n, self.nbytes = self.nbytes, 0
        self.budget._give(n)
        if n >= 32 * _MB:
            release_memory()

    def __enter__(self) -> "Reservation":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
