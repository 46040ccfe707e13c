"""The module's segmentation job: ``TextSegLib``'s :class:`~TextSegLib.engine.jobs.Job`
plus the scene it belongs to, driven from the main thread by short polls.

The job's state, progress, cancel token, error and result are the shared
``Job``'s (the server's queue uses the same class). The module adds the MRML
bookkeeping (:class:`SceneJob`) and two *runners* that ``job.poll()`` calls:

* :class:`ProcessRunner` (the module's default): the engine runs in another process
  (the local engine process or a remote server) reached through ``RemoteEngine``;
  each poll sends at most one short request (status, or the result once done), so a
  run needs no Python thread in Slicer and is unaffected by PythonQt holding the
  GIL between timer ticks.
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
        self.measurements: list = []


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

    def step(self, job: SceneJob) -> None:
        if job.cancel.cancelled:
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
            self.remote_job = client.submit(job.volume, job.prompts, modality=job.modality, roi_ras=job.roi_ras)
            job.stage_s["submit"] = time.perf_counter() - t
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

    def cancel(self, job: SceneJob) -> None:
        if self.client is not None and self.remote_job is not None:
            self.client.cancel_job(self.remote_job)
        job.fail(CancelledError("Segmentation cancelled by the user."))


__all__ = ["SceneJob", "InlineRunner", "ProcessRunner",
           "QUEUED", "RUNNING", "DONE", "FAILED", "CANCELLED"]
