"""The module's segmentation job: ``TextSegLib``'s :class:`~TextSegLib.engine.jobs.Job`
plus the scene it belongs to, driven from the main thread by short polls.

The job's state, progress, cancel token, error and result are the shared
``Job``'s (the server's queue uses the same class). The module adds the MRML
bookkeeping (:class:`SceneJob`) and two *runners* that ``job.poll()`` calls:

* :class:`ProcessRunner` (the module's default): the engine runs in another process
  (the local engine process or a remote server) reached through ``RemoteEngine``;
  each poll does a bounded piece of work on non-blocking sockets (a few slabs of the
  upload, one status request, a piece of the result), so a run needs no Python thread
  in Slicer, is unaffected by PythonQt holding the GIL between timer ticks, and no
  tick blocks the GUI (docs/slicer-seams-gui.md).
* :class:`InlineRunner`: an engine object in this interpreter (scripts, the console,
  tests); it runs on the first poll (blocking) or, with ``threaded=True``, in a worker
  thread (fine under PySide6 or plain Python, slow inside Slicer).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Sequence

from TextSegLib.engine.base import Engine
from TextSegLib.engine.jobs import CANCELLED, DONE, FAILED, QUEUED, RUNNING, Job
from TextSegLib.errors import CancelledError, RemoteError
from TextSegLib.volume import Volume

class SceneJob(Job):
    """A :class:`Job` of the Slicer logic: which nodes it reads and writes, and what was imported."""

    keep_volume = True  # the logic measures the result on the scan after the run

    def __init__(self, volume: Volume, prompts: Sequence, *, volume_node_id: str,
                 segmentation_node_id: str | None = None, runner: Any = None, roi_ras: Any = None,
                 scene_generation: int = 0) -> None:
        super().__init__(volume, prompts, modality=volume.modality or None, roi_ras=roi_ras, runner=runner)
        self.volume_node_id = volume_node_id
        self.segmentation_node_id = segmentation_node_id
        self.scene_generation = scene_generation
        self.engine_name = ""
        self.imported = False
        self.imported_segment_ids: list[str] = []
        self.not_found: dict[str, str] = {}  # segment name -> reason
        self.uncertain: dict[str, float | None] = {}  # segment name ("Liver ?") -> presence probability
        self.measurements: list = []

    def review_line(self) -> str:
        """The status line's part for uncertain segments: "2 uncertain: review Liver ? (0.55), Spleen ?." or ""."""
        if not self.uncertain:
            return ""
        names = ", ".join(n + ("" if p is None else f" ({p:.2f})") for n, p in self.uncertain.items())
        return f"{len(self.uncertain)} uncertain: review {names}."


class InlineRunner:
    """Run an engine object of this interpreter (see the module docstring)."""

    def __init__(self, engine: Engine | None, factory: Callable[[], Engine] | None = None, threaded: bool = False) -> None:
        self.engine, self.factory, self.threaded = engine, factory, threaded
        self._started = False  # the work runs once, on the first step

    def _work(self, job: SceneJob) -> None:
        if self.engine is None:
            job.progress("loading model", 0, 0)
            try:
                self.engine = self.factory()  # type: ignore[misc]
            except BaseException as exc:
                job.fail(exc)
                return
        job.engine_name = str(getattr(self.engine, "name", "?"))
        job.execute(self.engine)

    def step(self, job: SceneJob) -> None:
        if self._started:
            return
        self._started = True
        if self.threaded:
            threading.Thread(target=self._work, args=(job,), name="TextSegJob", daemon=True).start()
        else:
            self._work(job)


class ProcessRunner:
    """Drive a job on an engine in another process: wait for it, upload, poll, fetch.

    ``connect()`` returns ``(client, ready)``: the ``RemoteEngine`` and whether it can take a
    job now (the local engine process may still be starting); it raises on a crash.

    Every step is bounded (``budget_s`` of work, about 12 ms): the scan is checked, hashed,
    compressed and sent a few slabs per tick, the result downloaded and unpacked a piece per
    tick (``RemoteEngine.start_submit`` / ``start_result``, non-blocking sockets), a full server
    queue is asked again on a later tick, and a lost connection is checked against the engine
    process on the following ticks. ``phase`` says where the run is: start, upload, queue,
    progress, download, done."""

    budget_s = 0.012
    lost_grace_s = 2.0  # after a failed request: how long to watch the engine process die

    def __init__(self, connect: Callable[[], tuple[Any, bool]], name: str = "",
                 health: Callable[[], Any] | None = None) -> None:
        self.connect = connect
        self.health = health  # raises the one-line crash report when the engine process died
        self.name = name
        self.client: Any = None
        self.remote_job: Any = None
        self.phase = "start"
        self._op: Any = None  # the stepped submit, status call or result fetch in flight
        self._last_status = 0.0
        self._lost: tuple[float, BaseException] | None = None
        self.server_state = ""  # the job's state on the server at the last status
        self.min_status_interval_s = 0.1

    def step(self, job: SceneJob) -> None:
        if job.cancel.cancelled:
            raise CancelledError("Segmentation cancelled by the user.")
        if self._lost is not None:
            return self._watch_lost()
        if self.client is None:
            client, ready = self.connect()
            if not ready:
                job.progress("starting engine", 0, 0)
                return
            self.client = client
            job.engine_name = self.name or str(getattr(client, "name", "engine"))
            self._op = client.start_submit(job.volume, job.prompts, modality=job.modality, roi_ras=job.roi_ras)
            self.phase = "upload"
            self._t_submit = time.perf_counter()
        if self.phase in ("upload", "queue"):
            return self._submit_step(job)
        if self.phase == "progress":
            return self._status_step(job)
        if self.phase == "download":
            op = self._op
            if not op.step(self.budget_s):
                job.progress(*op.progress)
                return
            self._op, self.phase = None, "done"
            if op.error is not None:
                raise op.error  # a failed job raises its reason here
            job.succeed(op.result)

    def _submit_step(self, job: SceneJob) -> None:
        op = self._op
        finished = op.step(self.budget_s)
        self.phase = "queue" if op.phase == "queue" else "upload"
        if not finished:
            stage, done, total = op.progress
            job.progress(stage, done, total)
            return
        job.stage_s["submit"] = time.perf_counter() - self._t_submit
        self._op = None
        if op.error is not None:
            if self._defer(op.error):
                return
            raise op.error
        self.remote_job = op.result
        self.phase = "progress"

    def _status_step(self, job: SceneJob) -> None:
        if self._op is None:
            now = time.perf_counter()
            if now - self._last_status < self.min_status_interval_s:
                return
            self._last_status = now
            self._op = self.client.start_status(self.remote_job)
        op = self._op
        if not op.step(self.budget_s):
            return
        self._op = None
        if op.error is not None:
            exc = op.error
            if getattr(exc, "status", None) is None or getattr(exc, "code", "") == "job_unknown":
                why = getattr(exc, "reason", None) or "it no longer knows the job"
                exc = RemoteError(f"Lost job {self.remote_job.id[:8]} on {self.client.url}: the server stopped or "
                                  f"restarted while it ran ({why}).",
                                  "Run it again; the scan is uploaded again if the server needs it.")
            if self._defer(exc):
                return
            raise exc
        status = op.result
        state = status.get("state")
        if state == "queued":
            job.progress("queued", 0, int(status.get("queue_position") or 0))
            self.phase = "progress"
        elif status.get("total"):
            job.progress(status["stage"], status["done"], status["total"])
        elif status.get("stage"):
            job.progress(status["stage"], 0, 0)
        self.server_state = state
        if state == "cancelled":
            raise CancelledError("Segmentation cancelled on the server.")
        if state in ("done", "failed"):
            job.progress("download", 0, 1)
            self._op = self.client.start_result(self.remote_job)
            self.phase = "download"

    def _defer(self, exc: BaseException) -> bool:
        """A request could not reach the engine: True when its process is watched on the next ticks
        (it may be dying: its one-line crash report beats "connection lost")."""
        if self.health is None or not isinstance(exc, RemoteError) or getattr(exc, "status", None) is not None:
            return False
        self.health()  # raises at once when the process is gone
        self._lost = (time.monotonic() + self.lost_grace_s, exc)
        return True

    def _watch_lost(self) -> None:
        end, exc = self._lost  # type: ignore[misc]
        self.health()  # type: ignore[misc]  # the crash report, once the process has exited
        if time.monotonic() > end:
            raise exc

    def cancel(self, job: SceneJob) -> None:
        """Stop at once: drop the transfer in flight, send the server's DELETE without waiting."""
        if self._op is not None:
            self._op.close()
            self._op = None
        if self.client is not None and self.remote_job is not None:
            self.client.start_cancel(self.remote_job)
        self.phase = "done"
        job.fail(CancelledError("Segmentation cancelled by the user."))


__all__ = ["SceneJob", "InlineRunner", "ProcessRunner",
           "QUEUED", "RUNNING", "DONE", "FAILED", "CANCELLED"]
