"""One segmentation job: the state a server, the Slicer logic and the CLI share.

A :class:`Job` wraps one ``engine.segment(volume, prompts, ...)`` call. It holds
the state (``queued`` → ``running`` → ``done`` / ``failed`` / ``cancelled``), the
current stage and ``done``/``total`` from the engine's progress callback, a
:class:`~TextSegLib.engine.base.CancelToken`, the error (a
:class:`~TextSegLib.errors.TextSegError`, or any exception for a bug), the
:class:`~TextSegLib.engine.base.EngineResult` and wall-clock timings.

``job.run(engine)`` runs it on the calling thread; ``job.start(engine)`` on a new
daemon thread (``job.wait()`` joins it). ``job.snapshot()`` is a JSON-ready dict,
``job.view()`` a small typed copy for a progress bar. Every change bumps
``job.version`` and wakes ``job.wait_change(version)``, so a GUI timer, an HTTP poll
and an event stream all read the same state without callbacks into foreign threads.

A job may instead be driven by a *runner*: an object with ``step(job)`` (and
optionally ``cancel(job)``) that ``job.poll()`` calls once per tick, never blocking
for long. The Slicer module drives its engine process this way from a Qt timer, so
no Python thread has to run while PythonQt holds the GIL. No Qt here.

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
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..errors import CancelledError, TextSegError
from ..volume import Volume
from .base import CancelToken, Engine, EngineResult

log = logging.getLogger("textseg.jobs")

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
#: states after which nothing changes any more
FINAL_STATES = (DONE, FAILED, CANCELLED)


@dataclass(frozen=True)
class JobView:
    """What a progress bar shows: a copy, safe to read on any thread."""

    status: str  # one of QUEUED, RUNNING, DONE, FAILED, CANCELLED
    stage: str = ""
    done: int = 0
    total: int = 0
    elapsed_s: float = 0.0
    message: str = ""


def prompt_key(prompt: Any) -> str:
    """The key of a prompt's mask in an :class:`EngineResult`: its typed text."""
    return str(getattr(prompt, "text", prompt))


class Job:
    """One ``engine.segment`` call with observable state (thread-safe reads)."""

    #: drop the scan when the job ends (a server keeps many jobs); subclasses that
    #: measure the result afterwards keep it
    keep_volume = False

    def __init__(self, volume: Volume | None, prompts: Sequence, *, modality: str | None = None,
                 roi_ras: tuple[Sequence[float], Sequence[float]] | None = None, job_id: str | None = None,
                 owner: str = "", meta: dict[str, Any] | None = None, runner: Any = None) -> None:
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
        #: seconds of named steps, filled by whoever drives the job (upload, import, ...)
        self.stage_s: dict[str, float] = {}
        self.runner = runner
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
        """Ask the job to stop. A job not started yet is cancelled at once (returns True).

        A running job stops at the engine's next check; a runner with ``cancel(job)``
        (an engine in another process) is told as well."""
        self.cancel.cancel()
        with self._cond:
            queued = self.state == QUEUED
            if not queued:
                self.version += 1
                self._cond.notify_all()
        if queued:
            self._finish(CANCELLED, CancelledError("Segmentation cancelled before it started."))
            return True
        if self.runner is not None and hasattr(self.runner, "cancel") and not self.is_final:
            try:
                self.runner.cancel(self)
            except BaseException as exc:  # reported through the state
                self.fail(exc)
        return False

    def succeed(self, result: EngineResult) -> None:
        """Mark the job done with ``result`` (a runner's end); a result missing a prompt fails it."""
        try:
            self._check(result)
        except TextSegError as exc:
            self.fail(exc)
            return
        self._finish(DONE, result=result)

    def fail(self, error: BaseException) -> None:
        """Mark the job failed with ``error`` (cancelled when it is a :class:`CancelledError`)."""
        self._finish(CANCELLED if isinstance(error, CancelledError) else FAILED, error)

    def _check(self, result: EngineResult) -> None:
        missing = [k for k in map(prompt_key, self.prompts) if k not in result.masks]
        if missing:
            engine = result.info.get("engine", "?") if isinstance(result.info, dict) else "?"
            raise TextSegError(f"Engine {engine!r} returned no mask for {missing}.",
                               "Report this as a bug of the engine.")

    def _finish(self, state: str, error: BaseException | None = None, result: EngineResult | None = None) -> None:
        with self._cond:
            if self.is_final:
                return
            self.state, self.stage, self.error, self.result = state, state, error, result
            self.finished = time.time()
            if not self.keep_volume:
                self.volume = None  # the scan is not needed any more
            self.version += 1
            self._cond.notify_all()

    # -- running ------------------------------------------------------------------------
    def run(self, engine: Engine, *, on_result: Callable[["Job", EngineResult], Any] | None = None) -> None:
        """Run ``engine.segment`` on this thread. Never raises: read ``state`` and ``error``.

        ``on_result(job, result)`` (optional) runs on this thread before the job is marked
        done, e.g. to pack the result; its ``TextSegError`` fails the job like the engine's."""
        if self.begin():  # else cancelled while queued, or run twice
            self.execute(engine, on_result=on_result)

    def begin(self) -> bool:
        """``queued`` → ``running``; False when the job was not queued any more."""
        with self._cond:
            if self.state != QUEUED:
                return False
            self.state = self.stage = RUNNING
            self.started = time.time()
            self.version += 1
            self._cond.notify_all()
            return True

    def execute(self, engine: Engine, *, on_result: Callable[["Job", EngineResult], Any] | None = None) -> None:
        """The body of :meth:`run` for a job already running (a runner's worker). Never raises."""
        try:
            self.cancel.check()
            if self.volume is None:
                raise TextSegError(f"Job {self.id} has no volume to segment.")
            res = engine.segment(self.volume, self.prompts, modality=self.modality, roi_ras=self.roi_ras,
                                 progress=self.progress, cancel=self.cancel)
            self.cancel.check()
            self._check(res)
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

    def poll(self) -> JobView:
        """Advance a runner-driven job by one short step (a GUI timer tick); returns :meth:`view`.

        A runner's error is reported through the state, never raised into the timer."""
        if self.runner is not None and not self.is_final:
            self.begin()
            try:
                self.runner.step(self)
            except BaseException as exc:
                self.fail(exc)
        return self.view()

    def wait(self, timeout: float | None = None, poll_s: float = 0.05) -> bool:
        """Block until the job is final (or ``timeout``); True when final.

        A runner-driven job is polled every ``poll_s`` meanwhile (scripts and tests)."""
        if self.runner is None:
            with self._cond:
                return self._cond.wait_for(lambda: self.is_final, timeout)
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll().status not in FINAL_STATES:
            if end is not None and time.monotonic() > end:
                return False
            time.sleep(poll_s)
        return True

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

    @property
    def elapsed_s(self) -> float:
        """Seconds since the job was created, until it ended (or now)."""
        return (self.finished or time.time()) - self.created

    def view(self) -> JobView:
        """A typed copy of the state for a progress bar."""
        with self._cond:
            return JobView(self.state, self.stage, self.done, self.total, self.elapsed_s, self.error_message)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready view: id, state, stage, done, total, error, timings, meta."""
        with self._cond:
            return {"id": self.id, "state": self.state, "stage": self.stage, "done": self.done,
                    "total": self.total, "error": self.error_message or None, "timings": self.timings(),
                    "version": self.version, **self.meta}


__all__ = ["Job", "JobView", "prompt_key", "QUEUED", "RUNNING", "DONE", "FAILED", "CANCELLED", "FINAL_STATES"]
