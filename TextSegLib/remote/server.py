"""The TextSeg inference server: ``create_app(engine_factory, ...)`` returns a FastAPI app.

Endpoints (JSON unless noted; errors are ``{"error": "what is wrong, what to do"}``):

* ``GET /v1/health`` — liveness, no key needed, no details.
* ``GET /v1/info`` — server version, model, device, vocabulary sizes, limits.
* ``GET /v1/vocabulary?modality=ct`` — the model's trained terms.
* ``POST /v1/jobs`` — body in the :mod:`.protocol` format → 202 ``{"id"}``; 429 while busy.
* ``GET /v1/jobs/{id}`` — state, stage, done/total. ``DELETE`` cancels it.
* ``GET /v1/jobs/{id}/result`` — the result message (binary); the job is then forgotten.
* ``POST /v1/segment`` — one call: job + wait + result.

Every endpoint but health needs ``Authorization: Bearer KEY`` when a key is set.
Scans and results live in memory only; results are dropped after fetch or ``result_ttl_s``.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..engine.base import CancelToken, Engine
from ..errors import CancelledError, RemoteError, TextSegError, VolumeTooLargeError
from ..volume import MODALITIES
from . import protocol
from .auth import bearer_ok

log = logging.getLogger("textseg.server")


class HTTPError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass
class Job:
    id: str
    prompts: list[str]
    state: str = "queued"  # queued, running, done, failed, cancelled
    stage: str = "queued"
    done: int = 0
    total: int = 0
    error: str = ""
    error_status: int = 0
    result: bytes | None = None
    created: float = field(default_factory=time.monotonic)
    finished: float | None = None
    cancel: CancelToken = field(default_factory=CancelToken)
    thread: threading.Thread | None = None

    def status(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "stage": self.stage, "done": self.done, "total": self.total,
                "error": self.error or None, "elapsed_s": round((self.finished or time.monotonic()) - self.created, 3)}


class JobManager:
    """Runs one job at a time on one engine, in a worker thread."""

    def __init__(self, get_engine: Callable[[], Engine], result_ttl_s: float) -> None:
        self.get_engine = get_engine
        self.ttl = result_ttl_s
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()

    def sweep(self) -> None:
        now = time.monotonic()
        with self.lock:
            for jid in [j.id for j in self.jobs.values() if j.finished is not None and now - j.finished > self.ttl]:
                del self.jobs[jid]

    def active(self) -> Job | None:
        return next((j for j in self.jobs.values() if j.finished is None), None)

    def submit(self, volume, prompts: list[str], opts: dict[str, Any]) -> Job:
        self.sweep()
        with self.lock:
            busy = self.active()
            if busy is not None:
                raise HTTPError(429, f"The server is busy with another segmentation (job {busy.id}, {busy.stage}). "
                                     "Try again when it has finished.", {"Retry-After": "2"})
            job = Job(id=uuid.uuid4().hex, prompts=prompts)
            self.jobs[job.id] = job
        job.thread = threading.Thread(target=self._run, args=(job, volume, opts), name=f"textseg-job-{job.id[:8]}",
                                      daemon=True)
        job.thread.start()
        return job

    def _run(self, job: Job, volume, opts: dict[str, Any]) -> None:
        def progress(stage: str, done: int, total: int) -> None:
            job.stage, job.done, job.total = stage, int(done), int(total)

        try:
            job.state = job.stage = "running"
            engine = self.get_engine()
            res = engine.segment(volume, job.prompts, modality=opts["modality"], roi_ras=opts["roi_ras"],
                                 progress=progress, cancel=job.cancel)
            job.cancel.check()
            job.stage = "packing"
            info = {**res.info, "found": {k: res.is_found(k) for k in res.masks}, "reasons": dict(res.reasons),
                    "prompts": {k: p.to_json() for k, p in res.prompts.items()}}
            job.result = protocol.encode_result(volume.shape, res.masks,
                                                res.probabilities if opts["probabilities"] else None,
                                                res.timings, info)
            job.state = job.stage = "done"
        except CancelledError:
            job.state = job.stage = "cancelled"
            job.error, job.error_status = "The job was cancelled.", 410
        except TextSegError as exc:
            job.state, job.error, job.error_status = "failed", str(exc), 422
        except Exception as exc:  # keep the server alive; the client gets a one-line reason
            log.exception("job %s failed", job.id)
            job.state, job.error, job.error_status = "failed", f"Internal server error: {type(exc).__name__}: {exc}", 500
        finally:
            del volume
            job.finished = time.monotonic()

    def get(self, job_id: str) -> Job:
        self.sweep()
        job = self.jobs.get(job_id)
        if job is None:
            raise HTTPError(404, f"Job {job_id!r} is unknown: it never existed, its result was already fetched, "
                                 "or it expired.", )
        return job


def create_app(engine_factory: Callable[[], Engine], *, api_key: str | None = None, max_upload_mb: float = 1024,
               max_voxels: int = 512 * 512 * 2048, result_ttl_s: float = 600.0) -> FastAPI:
    """A FastAPI app serving the engine built (once, lazily) by ``engine_factory``."""
    app = FastAPI(title="TextSeg server", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    max_bytes = int(max_upload_mb * 1024 * 1024)
    holder: dict[str, Engine] = {}
    load_lock = threading.Lock()

    def get_engine() -> Engine:
        with load_lock:
            if "engine" not in holder:
                try:
                    holder["engine"] = engine_factory()
                except TextSegError as exc:
                    raise HTTPError(503, f"The server's model could not be loaded: {exc}") from None
            return holder["engine"]

    jobs = JobManager(get_engine, result_ttl_s)
    app.state.jobs = jobs

    @app.exception_handler(HTTPError)
    async def _http_error(request: Request, exc: HTTPError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if request.url.path != "/v1/health" and not bearer_ok(request.headers.get("authorization"), api_key):
            return JSONResponse({"error": "Missing or wrong API key. Send 'Authorization: Bearer KEY' with the "
                                          "key the server was started with."}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        try:
            return await call_next(request)
        except HTTPError as exc:  # raised from middleware-wrapped dependencies
            return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    async def read_body(request: Request) -> bytearray:
        limit_msg = (f"The upload is larger than this server's limit of {max_upload_mb:g} MB. "
                     "Crop the scan or ask the server admin to raise --max-upload-mb.")
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise HTTPError(400, f"Content-Length {length!r} is not a number.")
            if int(length) > max_bytes:
                raise HTTPError(413, limit_msg)
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > max_bytes:
                raise HTTPError(413, limit_msg)
        return buf

    def decode(body: bytes):
        try:
            return protocol.decode_request(body, max_voxels=max_voxels)
        except protocol.ProtocolError as exc:
            raise HTTPError(400, str(exc)) from None
        except VolumeTooLargeError as exc:
            raise HTTPError(413, str(exc)) from None
        except TextSegError as exc:
            raise HTTPError(422, str(exc)) from None

    @app.get("/v1/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/info")
    async def info() -> dict:
        engine = await run_in_threadpool(get_engine)
        vocab = {m: len(await run_in_threadpool(engine.vocabulary, m)) for m in MODALITIES}
        active = jobs.active()
        return {"server": "TextSeg", "version": __version__, "protocol": protocol.VERSION, "model": engine.name,
                "device": str(getattr(engine, "device", "unknown")), "vocabulary_size": vocab,
                "limits": {"max_upload_mb": max_upload_mb, "max_voxels": max_voxels, "result_ttl_s": result_ttl_s},
                "busy": active is not None, "free_text": bool(getattr(engine, "free_text", True)),
                "modalities": list(getattr(engine, "modalities", None) or [])}

    @app.get("/v1/vocabulary")
    async def vocabulary(modality: str = "ct") -> dict:
        m = modality.strip().lower()
        if m not in MODALITIES:
            raise HTTPError(400, f"Query parameter modality={modality!r} is unknown. Use one of: ct, mri, pet.")
        engine = await run_in_threadpool(get_engine)
        return {"modality": m, "terms": list(await run_in_threadpool(engine.vocabulary, m))}

    async def submit(request: Request) -> Job:
        body = await read_body(request)
        volume, prompts, opts = await run_in_threadpool(decode, body)
        del body
        await run_in_threadpool(get_engine)  # a model that cannot load is a 503 now, not a failed job
        return jobs.submit(volume, prompts, opts)

    @app.post("/v1/jobs", status_code=202)
    async def create_job(request: Request) -> dict:
        job = await submit(request)
        return {"id": job.id, "status_url": f"/v1/jobs/{job.id}", "result_url": f"/v1/jobs/{job.id}/result"}

    @app.get("/v1/jobs/{job_id}")
    async def job_status(job_id: str) -> dict:
        return jobs.get(job_id).status()

    @app.delete("/v1/jobs/{job_id}")
    async def cancel_job(job_id: str) -> dict:
        job = jobs.get(job_id)
        job.cancel.cancel()
        if job.finished is not None and job.state != "cancelled":
            with jobs.lock:  # finished already: forget it and its result
                jobs.jobs.pop(job_id, None)
        return job.status()

    def take_result(job: Job) -> Response:
        if job.finished is None:
            raise HTTPError(409, f"Job {job.id} is still {job.state} ({job.stage}). Poll /v1/jobs/{job.id} until done.")
        with jobs.lock:
            jobs.jobs.pop(job.id, None)
        if job.state != "done" or job.result is None:
            raise HTTPError(job.error_status or 500, job.error or "The job has no result.")
        return Response(job.result, media_type=protocol.CONTENT_TYPE)

    @app.get("/v1/jobs/{job_id}/result")
    async def job_result(job_id: str) -> Response:
        return take_result(jobs.get(job_id))

    @app.post("/v1/segment")
    async def segment(request: Request) -> Response:
        job = await submit(request)
        await run_in_threadpool(job.thread.join)  # type: ignore[union-attr]
        return take_result(job)

    return app


__all__ = ["create_app", "HTTPError", "JobManager", "RemoteError"]
