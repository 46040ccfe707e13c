"""One segmentation job: the state a server, the Slicer logic and the CLI share.

A :class:`Job` wraps one ``engine.segment(volume, prompts, ...)`` call. It holds
the state (``queued`` → ``running`` → ``done`` / ``failed`` / ``cancelled``), the
current stage and ``done``/``total`` from the engine's progress callback, a
:class:`~TextSegLib.engine.base.CancelToken`, the error (a
:class:`~TextSegLib.errors.TextSegError`, or any exception for a bug), the
:class:`~TextSegLib.engine.base.EngineResult` and wall-clock timings.

``job.run(engine)`` runs it on the calling thread; ``job.start(engine)`` on a new
daemon thread (``job.wait()`` joins it). ``job.snapshot()`` is a JSON-ready dict.
Every change bumps ``job.version`` and wakes ``job.wait_change(version)``, so a
GUI timer, an HTTP poll and an event stream all read the same state without
callbacks into foreign threads. No Qt here: the Slicer module maps its own
timer onto ``snapshot()``.

Example::

    job = Job(volume, ["liver"], modality="ct")
    job.start(engine)
    while not job.wait(0.2):
        print(job.snapshot()["stage"], job.done, job.total)
    if job.state == "done":
        masks = job.result.masks
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Callable, Sequence

from ..errors import CancelledError, TextSegError
from ..volume import Volume
from .base import CancelToken, Engine, EngineResult

log = logging.getLogger("textseg.jobs")

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
#: states after which nothing changes any more
FINAL_STATES = (DONE, FAILED, CANCELLED)


class Job:
    """One ``engine.segment`` call with observable state (thread-safe reads)."""

    def __init__(self, volume: Volume | None, prompts: Sequence, *, modality: str | None = None,
                 roi_ras: tuple[Sequence[float], Sequence[float]] | None = None, job_id: str | None = None,
                 owner: str = "", meta: dict[str, Any] | None = None) -> None:
        self.id = job_id or uuid.uuid4().hex
        self.volume = volume
        self.prompts = list(prompts)
        self.modality = modality
        self.roi_ras = roi_ras
        self.owner = owner
        self.meta: dict[str, Any] = dict(meta or {})
        self.state = QUEUED
        self.stage = QUEUED
        self.done = 0
        self.total = 0
        self.error: BaseException | None = None
        self.result: EngineResult | None = None
        self.cancel = CancelToken()
        self.created = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self.version = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    # -- state --------------------------------------------------------------------------
    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    def _update(self, **fields: Any) -> None:
        with self._cond:
            for k, v in fields.items():
                setattr(self, k, v)
            self.version += 1
            self._cond.notify_all()

    def progress(self, stage: str, done: int, total: int) -> None:
        """The engine's ``progress(stage, done, total)`` callback."""
        self._update(stage=str(stage), done=int(done), total=int(total))

    def wait_change(self, version: int, timeout: float | None = None) -> int:
        """Block until ``self.version != version`` (or ``timeout``); return the current version."""
        with self._cond:
            self._cond.wait_for(lambda: self.version != version, timeout)
            return self.version

    def request_cancel(self) -> bool:
        """Ask the job to stop. A job not started yet is cancelled at once (returns True)."""
        self.cancel.cancel()
        with self._cond:
            if self.state != QUEUED:
                self.version += 1
                self._cond.notify_all()
                return False
        self._finish(CANCELLED, CancelledError("Segmentation cancelled before it started."))
        return True

    def _finish(self, state: str, error: BaseException | None = None, result: EngineResult | None = None) -> None:
        with self._cond:
            if self.is_final:
                return
            self.state, self.stage, self.error, self.result = state, state, error, result
            self.finished = time.time()
            self.volume = None  # the scan is not needed any more
            self.version += 1
            self._cond.notify_all()

    # -- running ------------------------------------------------------------------------
    def run(self, engine: Engine, *, on_result: Callable[["Job", EngineResult], Any] | None = None) -> None:
        """Run ``engine.segment`` on this thread. Never raises: read ``state`` and ``error``.

        ``on_result(job, result)`` (optional) runs on this thread before the job is marked
        done, e.g. to pack the result; its ``TextSegError`` fails the job like the engine's."""
        with self._cond:
            if self.state != QUEUED:
                return  # cancelled while queued, or run twice
            self.state = self.stage = RUNNING
            self.started = time.time()
            self.version += 1
            self._cond.notify_all()
        try:
            self.cancel.check()
            if self.volume is None:
                raise TextSegError(f"Job {self.id} has no volume to segment.")
            res = engine.segment(self.volume, self.prompts, modality=self.modality, roi_ras=self.roi_ras,
                                 progress=self.progress, cancel=self.cancel)
            self.cancel.check()
            if on_result is not None:
                self._update(stage="packing")
                on_result(self, res)
            self._finish(DONE, result=res)
        except CancelledError as exc:
            self._finish(CANCELLED, exc)
        except TextSegError as exc:
            self._finish(FAILED, exc)
        except Exception as exc:  # a bug: keep the caller alive, keep the reason
            log.exception("job %s failed", self.id)
            self._finish(FAILED, exc)

    def start(self, engine: Engine, **kw: Any) -> threading.Thread:
        """Run on a new daemon thread; returns it."""
        self._thread = threading.Thread(target=self.run, args=(engine,), kwargs=kw,
                                        name=f"textseg-job-{self.id[:8]}", daemon=True)
        self._thread.start()
        return self._thread

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is final (or ``timeout``); True when final."""
        with self._cond:
            return self._cond.wait_for(lambda: self.is_final, timeout)

    # -- reporting ----------------------------------------------------------------------
    @property
    def error_message(self) -> str:
        if self.error is None:
            return ""
        if isinstance(self.error, TextSegError):
            return str(self.error)
        return f"Internal error: {type(self.error).__name__}: {self.error}"

    def timings(self) -> dict[str, float]:
        """Seconds waiting in a queue, running, and in all (so far)."""
        now = time.time()
        start = self.started or (self.finished if self.finished else now)
        out = {"queued_s": max(0.0, start - self.created)}
        if self.started is not None:
            out["run_s"] = (self.finished or now) - self.started
        out["total_s"] = (self.finished or now) - self.created
        return {k: round(v, 3) for k, v in out.items()}

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready view: id, state, stage, done, total, error, timings, meta."""
        with self._cond:
            return {"id": self.id, "state": self.state, "stage": self.stage, "done": self.done,
                    "total": self.total, "error": self.error_message or None, "timings": self.timings(),
                    "version": self.version, **self.meta}


__all__ = ["Job", "QUEUED", "RUNNING", "DONE", "FAILED", "CANCELLED", "FINAL_STATES"]
