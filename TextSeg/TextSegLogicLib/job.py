"""A segmentation job driven from the main thread by short, non-blocking polls.

:class:`Job` holds the state the panel shows (``running`` → ``done`` / ``failed`` /
``cancelled``, stage, done/total, elapsed seconds) and a *runner* that does the work:

* :class:`ProcessRunner` (the module's default): the engine runs in another process
  (the local engine process or a remote server) reached through ``RemoteEngine``;
  each :meth:`Job.poll` sends at most one short request (status, or the result once
  done), so a run needs no Python thread in Slicer and is unaffected by PythonQt
  holding the GIL between timer ticks.
* :class:`InlineRunner`: an engine object in this interpreter (scripts, the console,
  tests); it runs on the first poll (blocking) or, with ``threaded=True``, in a worker
  thread (fine under PySide6 or plain Python, slow inside Slicer).

The fields mirror ``TextSegLib.engine.jobs.Job`` (state, stage, done, total, cancel
token, error, result, snapshot); the lead merges the two classes.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from TextSegLib.engine.base import CancelToken, Engine, EngineResult
from TextSegLib.errors import CancelledError, RemoteError, TextSegError
from TextSegLib.volume import Volume

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"


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
    """One run of an engine on a volume; created by ``TextSegLogic.start``, advanced by :meth:`poll`."""

    volume: Volume
    prompts: list  # ResolvedPrompt values
    volume_node_id: str
    segmentation_node_id: str | None
    runner: Any = None
    roi_ras: Any = None
    scene_generation: int = 0
    cancel_token: CancelToken = field(default_factory=CancelToken)
    state: str = RUNNING
    stage: str = "queued"
    done_units: int = 0
    total_units: int = 0
    result: EngineResult | None = None
    error: BaseException | None = None
    imported_segment_ids: list[str] = field(default_factory=list)
    not_found: dict[str, str] = field(default_factory=dict)  # segment name -> reason
    measurements: list = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    imported: bool = False
    engine_name: str = ""
    _t0: float = field(default_factory=time.perf_counter)
    _t_end: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.prompts]

    # -- runner side ---------------------------------------------------------------
    def progress(self, stage: str, done: int, total: int) -> None:
        with self._lock:
            self.stage, self.done_units, self.total_units = str(stage), int(done), int(total)

    def succeed(self, result: EngineResult) -> None:
        missing = [t for t in self.texts if t not in result.masks]
        if missing:
            self.fail(TextSegError(f"Engine {self.engine_name!r} returned no mask for {missing}.",
                                   "Report this as a bug of the engine."))
            return
        self.result, self.state = result, DONE
        self._t_end = time.perf_counter()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.state = CANCELLED if isinstance(error, CancelledError) else FAILED
        self._t_end = time.perf_counter()

    # -- main-thread side -------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._t_end is not None

    @property
    def cancelled(self) -> bool:
        return self.state == CANCELLED

    def poll(self) -> JobState:
        """Advance the job by one short step (the panel's timer tick); returns :meth:`snapshot`."""
        if not self.done and self.runner is not None:
            try:
                self.runner.step(self)
            except BaseException as exc:  # reported through the state, never raised into a timer slot
                self.fail(exc)
        return self.snapshot()

    def cancel(self) -> None:
        """Stop at the engine's next tile boundary (a process job is cancelled on the server)."""
        self.cancel_token.cancel()
        if self.runner is not None and hasattr(self.runner, "cancel"):
            try:
                self.runner.cancel(self)
            except BaseException as exc:
                self.fail(exc)

    def wait(self, timeout: float | None = None, poll_s: float = 0.05) -> bool:
        """Poll until the job ends (scripts and tests); True when it did."""
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll().status == RUNNING:
            if end is not None and time.monotonic() > end:
                return False
            time.sleep(poll_s)
        return True

    def snapshot(self) -> JobState:
        with self._lock:
            stage, d, t = self.stage, self.done_units, self.total_units
        elapsed = (self._t_end or time.perf_counter()) - self._t0
        if not self.done:
            return JobState(RUNNING, stage, d, t, elapsed)
        return JobState(self.state, stage, d, t, elapsed, "" if self.error is None else str(self.error))


class InlineRunner:
    """Run an engine object of this interpreter (see the module docstring)."""

    def __init__(self, engine: Engine | None, factory: Callable[[], Engine] | None = None, threaded: bool = False) -> None:
        self.engine, self.factory, self.threaded = engine, factory, threaded
        self._thread: threading.Thread | None = None

    def _work(self, job: Job) -> None:
        try:
            if self.engine is None:
                job.progress("loading model", 0, 0)
                self.engine = self.factory()  # type: ignore[misc]
            job.engine_name = str(getattr(self.engine, "name", "?"))
            result = self.engine.segment(job.volume, job.prompts, modality=job.volume.modality or None,
                                         roi_ras=job.roi_ras, progress=job.progress, cancel=job.cancel_token)
            job.succeed(result)
        except BaseException as exc:
            job.fail(exc)

    def step(self, job: Job) -> None:
        if self._thread is None and not self.threaded:
            self._work(job)
        elif self._thread is None:
            self._thread = threading.Thread(target=self._work, args=(job,), name="TextSegJob", daemon=True)
            self._thread.start()


class ProcessRunner:
    """Drive a job on an engine in another process: wait for it, upload, poll, fetch.

    ``connect()`` returns ``(client, ready)``: the ``RemoteEngine`` and whether it can take a
    job now (the local engine process may still be starting); it raises on a crash."""

    def __init__(self, connect: Callable[[], tuple[Any, bool]], name: str = "",
                 health: Callable[[], Any] | None = None) -> None:
        self.connect = connect
        self.health = health  # raises the one-line crash report when the engine process died
        self.name = name
        self.client: Any = None
        self.remote_job: Any = None
        self._last_status = 0.0
        self.min_status_interval_s = 0.1

    def step(self, job: Job) -> None:
        if job.cancel_token.cancelled:
            raise CancelledError("Segmentation cancelled by the user.")
        if self.remote_job is None:
            client, ready = self.connect()
            if not ready:
                job.progress("starting engine", 0, 0)
                return
            self.client = client
            job.engine_name = self.name or str(getattr(client, "name", "engine"))
            job.progress("upload", 0, 1)
            t = time.perf_counter()
            self.remote_job = client.submit(job.volume, job.prompts, modality=job.volume.modality or None,
                                            roi_ras=job.roi_ras)
            job.timings["submit"] = time.perf_counter() - t
            return
        now = time.perf_counter()
        if now - self._last_status < self.min_status_interval_s:
            return
        self._last_status = now
        try:
            status = self.client.job_status(self.remote_job)
        except RemoteError:
            if self.health is not None:
                self.health()
            raise
        if status.get("total"):
            job.progress(status["stage"], status["done"], status["total"])
        elif status.get("stage"):
            job.progress(status["stage"], 0, 0)
        state = status.get("state")
        if state == "cancelled":
            raise CancelledError("Segmentation cancelled on the server.")
        if state in ("done", "failed"):
            job.progress("download", 0, 1)
            job.succeed(self.client.job_result(self.remote_job))  # a failed job raises its reason here

    def cancel(self, job: Job) -> None:
        if self.client is not None and self.remote_job is not None:
            self.client.cancel_job(self.remote_job)
        if not job.done:
            job.fail(CancelledError("Segmentation cancelled by the user."))
