"""A fair, bounded job queue: FIFO, an optional per-client limit, one worker per device.

Jobs wait in one first-in-first-out queue of at most ``max_queued``; each device has one
worker thread with its own engine, so several devices run in parallel and one device never
runs two jobs at once. A job's status carries its queue position and an estimated start
(from the mean run time of recent jobs). Finished results are packed once and kept until
deleted, for ``result_ttl_s``, and within ``result_budget_bytes`` (oldest dropped first);
a dropped or deleted job leaves a small tombstone so its id answers with the reason.
"""
from __future__ import annotations

import asyncio
import heapq
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from typing import Any, Callable, Sequence

from ..engine.base import Engine, EngineResult
from ..engine.jobs import FINAL_STATES, QUEUED, RUNNING, Job
from . import protocol
from .codes import ApiError, from_textseg_error
from .images import ImageStore, StoredImage

log = logging.getLogger("textseg.server")


class _LoopCondition(threading.Condition):
    """A condition whose ``notify_all`` also wakes asyncio waiters (through ``call_soon_threadsafe``)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def notify_all(self) -> None:
        super().notify_all()
        for loop, event in list(self.waiters):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed
                self.waiters.discard((loop, event))


class ServerJob(Job):
    """A :class:`Job` with what the server needs: image, owner, device, packed result.

    :meth:`changed` waits for a change on the event loop without holding a pool thread, so
    any number of event streams and ``/v1/segment`` calls can wait at once."""

    def __init__(self, image: StoredImage, prompts: Sequence, *, probabilities: bool = False, **kw: Any) -> None:
        super().__init__(None, prompts, **kw)
        self._cond = _LoopCondition()
        self.image = image
        self.probabilities = probabilities
        self.device: str | None = None
        self.packed: bytes | None = None

    async def changed(self, version: int, timeout: float | None = None) -> int:
        """Wait (on the running loop) until ``self.version != version`` or ``timeout``; the version now."""
        event = asyncio.Event()
        key = (asyncio.get_running_loop(), event)
        with self._cond:
            if self.version != version:
                return self.version
            self._cond.waiters.add(key)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._cond:
                self._cond.waiters.discard(key)
        return self.version

    async def finished_async(self) -> None:
        """Wait (on the running loop) until the job is final."""
        while not self.is_final:
            await self.changed(self.version, 5.0)


class JobQueue:
    """Queue, workers and the finished-result store of one server."""

    def __init__(self, engine_factories: Sequence[Callable[[], Engine]], devices: Sequence[str], *,
                 images: ImageStore, max_queued: int = 64, per_client: int | None = None,
                 result_budget_bytes: int = 512 << 20, result_ttl_s: float = 600.0) -> None:
        if len(engine_factories) != len(devices) or not devices:
            raise ValueError("one engine factory per device, at least one")
        self.factories = list(engine_factories)
        self.devices = list(devices)
        self.images = images
        self.max_queued = int(max_queued)
        self.per_client = per_client
        self.budget = int(result_budget_bytes)
        self.ttl = float(result_ttl_s)
        self.jobs: dict[str, ServerJob] = {}
        self.tombstones: OrderedDict[str, str] = OrderedDict()
        self.queue: deque[ServerJob] = deque()
        self.running: list[ServerJob | None] = [None] * len(devices)
        self.engines: list[Engine | None] = [None] * len(devices)
        self._engine_locks = [threading.Lock() for _ in devices]
        self.cond = threading.Condition()
        self.mean_run_s: float | None = None
        self.stats = {"submitted": 0, "done": 0, "failed": 0, "cancelled": 0, "expired": 0, "evicted": 0,
                      "rejected_full": 0, "rejected_client": 0}
        self._stop = False
        self._threads = [threading.Thread(target=self._work, args=(i,), name=f"textseg-worker-{d}-{i}", daemon=True)
                         for i, d in enumerate(self.devices)]
        for t in self._threads:
            t.start()

    # -- engines ------------------------------------------------------------------------
    def engine(self, worker: int = 0) -> Engine:
        """The engine of ``worker`` (built on first use); raises ``ApiError('model_unavailable')``."""
        with self._engine_locks[worker]:
            if self.engines[worker] is None:
                try:
                    self.engines[worker] = self.factories[worker]()
                except Exception as exc:
                    raise ApiError("model_unavailable", f"The server's model could not be loaded on "
                                                        f"{self.devices[worker]}: {exc}") from None
            return self.engines[worker]  # type: ignore[return-value]

    # -- submitting ---------------------------------------------------------------------
    def _active(self, owner: str) -> int:
        return sum(1 for j in self.jobs.values() if j.owner == owner and j.state in (QUEUED, RUNNING))

    def submit(self, job: ServerJob) -> None:
        """Queue ``job`` or raise ``queue_full`` (503) / ``client_limit`` (429) with Retry-After."""
        self.sweep()
        with self.cond:
            if self.per_client is not None and self._active(job.owner) >= self.per_client:
                self.stats["rejected_client"] += 1
                wait = self._retry_after()
                raise ApiError("client_limit", f"This client already has {self.per_client} job(s) queued or "
                                               "running, the server's per-client limit. Wait for one to finish.",
                               {"Retry-After": str(wait)})
            if len(self.queue) >= self.max_queued:
                self.stats["rejected_full"] += 1
                wait = self._retry_after()
                raise ApiError("queue_full", f"The job queue is full ({self.max_queued} jobs waiting). "
                                             f"Try again in about {wait} s.", {"Retry-After": str(wait)})
            self.jobs[job.id] = job
            self.queue.append(job)
            self.stats["submitted"] += 1
            self.cond.notify_all()

    def _retry_after(self) -> int:
        mean = self.mean_run_s or 1.0
        return max(1, min(300, math.ceil(mean)))

    # -- workers ------------------------------------------------------------------------
    def _work(self, i: int) -> None:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self._stop or bool(self.queue))
                if self._stop:
                    return
                job = self.queue.popleft()
                self.running[i] = job
                for other in self.queue:  # positions moved: wake their event streams
                    other._update()
            try:
                self._run(i, job)
            finally:
                with self.cond:
                    self.running[i] = None
                    self.cond.notify_all()
                self.sweep()

    def _run(self, i: int, job: ServerJob) -> None:
        if job.is_final:
            return
        job.device = self.devices[i]
        try:
            engine = self.engine(i)
            job.volume = self.images.volume(job.image, job.modality or "")
        except Exception as exc:
            job.error = from_textseg_error(exc)
            job._finish("failed", job.error)
            self.stats["failed"] += 1
            return
        job.run(engine, on_result=self._pack)
        job.result = None  # the packed bytes are the result now; free the masks
        if job.started is not None and job.finished is not None and job.state == "done":
            run = job.finished - job.started
            self.mean_run_s = run if self.mean_run_s is None else 0.7 * self.mean_run_s + 0.3 * run
        self.stats[job.state if job.state in ("done", "failed", "cancelled") else "failed"] += 1

    @staticmethod
    def _pack(job: "ServerJob", res: EngineResult) -> None:
        info = {**res.info, "found": {k: res.is_found(k) for k in res.masks}, "reasons": dict(res.reasons),
                "uncertain": sorted(k for k in res.masks if res.state(k) == "uncertain"),
                "presence": {k: float(v) for k, v in res.presence.items() if k in res.masks},
                "prompts": {k: p.to_json() for k, p in res.prompts.items() if hasattr(p, "to_json")},
                "device": job.device, "queued_s": round((job.started or job.created) - job.created, 3)}
        shape = next(iter(res.masks.values())).shape if res.masks else job.image.geometry["shape"]
        job.packed = protocol.encode_result(shape, res.masks, res.probabilities if job.probabilities else None,
                                            res.timings, info)

    def stop(self) -> None:
        with self.cond:
            self._stop = True
            for job in list(self.queue):
                job.request_cancel()
            self.queue.clear()
            for job in self.running:
                if job is not None:
                    job.cancel.cancel()
            self.cond.notify_all()

    # -- looking up, deleting, expiring -------------------------------------------------
    def get(self, job_id: str) -> ServerJob:
        self.sweep()
        with self.cond:
            job = self.jobs.get(job_id)
            if job is not None:
                return job
            reason = self.tombstones.get(job_id)
        if reason == "deleted":
            raise ApiError("job_unknown", f"Job {job_id} was deleted.")
        if reason is not None:
            raise ApiError("job_expired", f"Job {job_id}'s result is no longer kept: {reason}. Submit it again.")
        raise ApiError("job_unknown", f"Job {job_id!r} is unknown: it never existed on this server, or the "
                                      "server restarted since. Submit it again.")

    def _bury(self, job_id: str, reason: str) -> None:
        self.jobs.pop(job_id, None)
        self.tombstones[job_id] = reason
        while len(self.tombstones) > 10_000:
            self.tombstones.popitem(last=False)

    def delete(self, job_id: str) -> ServerJob:
        """Cancel ``job_id`` (removing it from the queue) and forget it with its result."""
        job = self.get(job_id)
        with self.cond:
            if job in self.queue:
                self.queue.remove(job)
                for other in self.queue:
                    other._update()
            self._bury(job_id, "deleted")
        if not job.is_final:
            job.request_cancel()
        job.packed = None
        return job

    def sweep(self) -> None:
        """Drop finished results past their TTL, then the oldest ones beyond the memory budget."""
        now = time.time()
        with self.cond:
            finished = sorted((j for j in self.jobs.values() if j.is_final), key=lambda j: j.finished or 0)
            for j in finished:
                if now - (j.finished or now) > self.ttl:
                    self._bury(j.id, f"it expired {self.ttl:g} s after finishing")
                    self.stats["expired"] += 1
            finished = [j for j in finished if j.id in self.jobs]
            total = sum(len(j.packed or b"") for j in finished)
            for j in finished[:-1]:  # the newest result is kept even when alone over the budget
                if total <= self.budget:
                    break
                total -= len(j.packed or b"")
                self._bury(j.id, f"the server's result memory budget ({self.budget / 2**20:g} MiB) was full")
                self.stats["evicted"] += 1

    # -- reporting ----------------------------------------------------------------------
    def estimates(self) -> dict[str, tuple[int, float | None]]:
        """job id -> (queue position from 1, estimated seconds until it starts or None)."""
        with self.cond:
            queued = list(self.queue)
            mean = self.mean_run_s
            now = time.time()
            free = [max(0.0, mean - (now - (j.started or now))) if (j is not None and mean is not None) else 0.0
                    for j in self.running]
        out: dict[str, tuple[int, float | None]] = {}
        heap = list(free)
        heapq.heapify(heap)
        for pos, job in enumerate(queued, 1):
            t = heapq.heappop(heap)
            out[job.id] = (pos, None if mean is None else round(t, 2))
            heapq.heappush(heap, t + (mean or 0.0))
        return out

    def status(self, job: ServerJob) -> dict[str, Any]:
        snap = job.snapshot()
        pos, eta = self.estimates().get(job.id, (0, 0.0 if job.state != QUEUED else None))
        snap.update({"queue_position": pos if job.state == QUEUED else 0,
                     "estimated_start_s": eta if job.state == QUEUED else 0.0,
                     "device": job.device, "image": job.image.id, "result_bytes": len(job.packed or b"")})
        if job.state == QUEUED and eta is not None:
            snap["estimated_start"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + eta))
        if job.state in FINAL_STATES and job.error is not None:
            snap["code"] = from_textseg_error(job.error).code
        return snap

    def result_bytes(self) -> int:
        """Bytes of the results kept now (part of the server's memory budget)."""
        with self.cond:
            return sum(len(j.packed or b"") for j in self.jobs.values())

    def busy(self) -> bool:
        with self.cond:
            return bool(self.queue) or any(j is not None for j in self.running)

    def info(self) -> dict[str, Any]:
        self.sweep()
        with self.cond:
            results = sum(len(j.packed or b"") for j in self.jobs.values())
            return {"devices": list(self.devices), "workers": len(self.devices), "queued": len(self.queue),
                    "running": sum(j is not None for j in self.running), "max_queued": self.max_queued,
                    "per_client_limit": self.per_client, "mean_run_s": self.mean_run_s,
                    "results": {"bytes": results, "budget_bytes": self.budget, "ttl_s": self.ttl,
                                "kept": sum(1 for j in self.jobs.values() if j.is_final)},
                    "stats": dict(self.stats)}
