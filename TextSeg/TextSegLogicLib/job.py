"""A segmentation job: the engine runs in a worker thread; the main thread polls.

The worker never touches MRML or Qt. It records progress (stage, done,
total) under a lock; the main thread reads :meth:`Job.snapshot` from a timer
and, once :attr:`done`, imports the result into the scene.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from TextSegLib.engine.base import CancelToken, Engine, EngineResult
from TextSegLib.errors import CancelledError, TextSegError
from TextSegLib.volume import Volume

from .terms import SegmentSpec


@dataclass
class JobState:
    """What the UI shows: a copy, safe to read on the main thread."""

    status: str  # "running" | "done" | "cancelled" | "failed"
    stage: str = ""
    done: int = 0
    total: int = 0
    elapsed_s: float = 0.0
    message: str = ""


@dataclass
class Job:
    """One run of an engine on a volume; created by ``TextSegLogic.start``."""

    engine: Engine | None  # None: built by ``engine_factory`` in the worker (model loading off the GUI thread)
    volume: Volume
    specs: list[SegmentSpec]
    volume_node_id: str
    segmentation_node_id: str | None
    roi_ras: Any = None
    engine_factory: Callable[[], Engine] | None = None
    cancel_token: CancelToken = field(default_factory=CancelToken)
    result: EngineResult | None = None
    error: BaseException | None = None
    imported_segment_ids: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stage: tuple[str, int, int] = ("queued", 0, 0)
    _thread: threading.Thread | None = None
    _t0: float = 0.0
    _t_end: float | None = None
    imported: bool = False

    @property
    def prompts(self) -> list[str]:
        return [s.prompt for s in self.specs]

    # -- worker side ------------------------------------------------------------
    def _progress(self, stage: str, done: int, total: int) -> None:
        with self._lock:
            self._stage = (stage, int(done), int(total))

    def _work(self) -> None:
        try:
            if self.engine is None:
                self._progress("loading model", 0, 0)
                self.engine = self.engine_factory()  # type: ignore[misc]
            self.result = self.engine.segment(
                self.volume,
                self.prompts,
                modality=self.volume.modality or None,
                roi_ras=self.roi_ras,
                progress=self._progress,
                cancel=self.cancel_token,
            )
            missing = [p for p in self.prompts if p not in self.result.masks]
            if missing:
                raise TextSegError(
                    f"Engine {self.engine.name!r} returned no mask for {missing}.",
                    "Report this as a bug of the engine.",
                )
        except BaseException as exc:  # reported on the main thread
            self.error = exc
        finally:
            self._t_end = time.perf_counter()

    # -- main-thread side -------------------------------------------------------
    def start(self, threaded: bool = True) -> "Job":
        self._t0 = time.perf_counter()
        if threaded:
            self._thread = threading.Thread(target=self._work, name="TextSegJob", daemon=True)
            self._thread.start()
        else:
            self._work()
        return self

    def cancel(self) -> None:
        """Ask the engine to stop; it does so at its next tile boundary."""
        self.cancel_token.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker ends (tests and scripts); True when it did."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def done(self) -> bool:
        return self._t_end is not None

    @property
    def cancelled(self) -> bool:
        return isinstance(self.error, CancelledError)

    def snapshot(self) -> JobState:
        with self._lock:
            stage, d, t = self._stage
        end = self._t_end or time.perf_counter()
        elapsed = end - self._t0 if self._t0 else 0.0
        if not self.done:
            return JobState("running", stage, d, t, elapsed)
        if self.error is None:
            return JobState("done", stage, d, t, elapsed)
        status = "cancelled" if self.cancelled else "failed"
        return JobState(status, stage, d, t, elapsed, str(self.error))

