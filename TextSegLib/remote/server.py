"""The TextSeg inference server: ``create_app(engine_factory, ...)`` returns a FastAPI app.

Endpoints (JSON unless noted; every error is ``{"code": CODE, "error": message}``, see
:mod:`.codes`; the OpenAPI schema is at ``/v1/openapi.json``):

* ``GET /v1/health`` — liveness, no key needed, no details.
* ``GET /v1/info`` — version, API version, model, devices, vocabulary sizes, limits, queue,
  result budget and TTL, image cache.
* ``GET /v1/vocabulary?modality=ct`` — the served model's trained terms for that modality.
* ``GET /v1/resolve?text=lt+kidn&modality=ct`` — how the server resolves prompts (same rule as the CLI).
* ``PUT /v1/images`` — a volume (binary, :mod:`.protocol`) stored under its content hash → ``{"id"}``.
  ``GET /v1/images/{id}`` says whether the server still holds it.
* ``POST /v1/jobs`` — JSON ``{"image", "prompts", "modality", "roi_ras", "probabilities"}`` (or an
  inline binary body) → 202 ``{"id"}``; 503 ``queue_full`` / 429 ``client_limit`` with ``Retry-After``.
* ``GET /v1/jobs/{id}`` — state, stage, done/total, queue position, estimated start.
* ``GET /v1/jobs/{id}/events`` — the same status as NDJSON lines, one per change, until final.
* ``GET /v1/jobs/{id}/result`` — the result message (binary). ``DELETE /v1/jobs/{id}`` cancels the
  job (a queued one leaves the queue) and forgets it and its result.
* ``POST /v1/segment`` — one call: job + wait + result (the job is then forgotten).

Every endpoint but health needs ``Authorization: Bearer KEY`` when a key is set. Scans and
results live in memory only, within the image cache cap and the result budget / TTL, and all
of it with the uploads being decoded within one memory budget (:mod:`.budget`). Clients are
told apart by address (one API key is one identity), never by a header they choose. Waiting
on a job (event streams, ``/v1/segment``) holds no thread; event streams are capped per
client. Connection limits and read timeouts are in :mod:`.connections`.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Annotated, Any, Callable, Literal, Optional, Sequence

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..engine.base import Engine
from ..engine.jobs import FINAL_STATES
from ..errors import RemoteError
from ..volume import MODALITIES
from . import protocol
from .auth import bearer_ok
from .budget import DEFAULT_BUDGET_MB, MemoryBudget
from .codes import CODES, ApiError, from_textseg_error
from .connections import ConnectionLimits
from .images import ImageStore
from .queue import JobQueue, ServerJob

log = logging.getLogger("textseg.server")

ImageId = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 content id from PUT /v1/images")


#: a prompt has one non-space character at least: a blank one is refused by the schema (400), as the schema says
Prompt = Annotated[str, StringConstraints(min_length=1, max_length=protocol.MAX_PROMPT_CHARS, pattern=r"[^ \t\n\r\f\v]")]
Corner = Annotated[list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=3, max_length=3)]


class JobRequest(BaseModel):
    """Body of ``POST /v1/jobs`` (JSON)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    image: str = ImageId
    prompts: list[Prompt] = Field(min_length=1, max_length=protocol.MAX_PROMPTS)
    modality: Literal["ct", "mri", "pet", ""] = ""
    roi_ras: Optional[list[Corner]] = Field(default=None, min_length=2, max_length=2,
                                           description="two opposite corners [R, A, S] in mm")
    probabilities: bool = False


class ErrorBody(BaseModel):
    code: str
    error: str


class JobCreated(BaseModel):
    id: str
    image: str
    status_url: str
    events_url: str
    result_url: str
    prompts: list[dict[str, Any]]


_ERR = {"model": ErrorBody}
_BIN = {"content": {protocol.CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}}, "required": True}


def _errors(*statuses: int) -> dict:
    return {s: {**_ERR, "description": ", ".join(c for c, (st, _) in CODES.items() if st == s)} for s in statuses}


def create_app(engine_factory: Callable[..., Engine], *, api_key: str | None = None, max_upload_mb: float = 1024,
               max_voxels: int = 512 * 512 * 2048, result_ttl_s: float = 600.0, devices: Sequence[str] | None = None,
               max_queued: int = 64, per_client: int | None = None, result_budget_mb: float = 512,
               image_cache_mb: float = 2048, event_heartbeat_s: float = 1.0,
               memory_budget_mb: float = DEFAULT_BUDGET_MB, max_decoded_mb: float | None = None,
               streams_per_client: int = 16,
               connection_limits: ConnectionLimits | None = None) -> FastAPI:
    """A FastAPI app serving the engine built (lazily, once per worker) by ``engine_factory``.

    ``devices``: one worker per entry, each with ``engine_factory(device)``; ``None`` means one
    worker with ``engine_factory()`` (the engine picks its device). ``memory_budget_mb`` bounds
    uploads in flight + image cache + results; ``max_decoded_mb`` (default half of it) one upload.
    ``connection_limits`` are applied by :func:`.connections.uvicorn_config` (shown in /v1/info)."""
    app = FastAPI(title="TextSeg server", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url="/v1/openapi.json")
    max_bytes = int(max_upload_mb * 1024 * 1024)
    if devices:
        factories = [(lambda d=d: engine_factory(d)) for d in devices]
        names = list(devices)
    else:
        factories, names = [engine_factory], ["default"]
    images = ImageStore(int(image_cache_mb * 2**20))
    jobs = JobQueue(factories, names, images=images, max_queued=max_queued, per_client=per_client,
                    result_budget_bytes=int(result_budget_mb * 2**20), result_ttl_s=result_ttl_s)
    app.state.jobs, app.state.images = jobs, images
    memory = MemoryBudget(int(memory_budget_mb * 2**20),
                          None if max_decoded_mb is None else int(max_decoded_mb * 2**20),
                          held=lambda: images.nbytes + jobs.result_bytes(), make_room=lambda n: images.trim(n - jobs.result_bytes()))
    app.state.memory = memory
    app.state.connection_limits = connection_limits or ConnectionLimits()
    streams: Counter[str] = Counter()

    def fail(exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return fail(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ())) or "request"
        got = f" (got {first['input']!r:.60})" if isinstance(first.get("input"), (str, int, float)) else ""
        return fail(ApiError("bad_request", f"{where}{got}: {first.get('msg', 'invalid')}.", status=400))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of every route on this path, not only the first route's
            from starlette.routing import Match

            allowed = sorted({m for r in app.router.routes if r.matches(request.scope)[0] != Match.NONE
                              for m in (getattr(r, "methods", None) or ())})
            headers["Allow"] = ", ".join(allowed)
        return fail(ApiError(code, f"{request.method} {request.url.path}: {exc.detail}.", status=exc.status_code,
                             headers=headers))

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if request.url.path != "/v1/health" and not bearer_ok(request.headers.get("authorization"), api_key):
            return fail(ApiError("unauthorized", "Missing or wrong API key. Send 'Authorization: Bearer KEY' with "
                                                 "the key the server was started with.",
                                 {"WWW-Authenticate": "Bearer"}))
        try:
            return await call_next(request)
        except ApiError as exc:
            return fail(exc)

    async def read_body(request: Request, budget) -> bytearray:
        """The body, within --max-upload-mb; its bytes are reserved in ``budget`` as they arrive."""
        limit = ApiError("upload_too_large", f"The upload is larger than this server's limit of {max_upload_mb:g} MB. "
                                             "Crop the scan or ask the server admin to raise --max-upload-mb.")
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise ApiError("bad_request", f"Content-Length {length!r} is not a number.")
            if int(length) > max_bytes:
                raise limit
        buf = bytearray()
        async for chunk in request.stream():
            budget.grow(len(chunk))
            buf += chunk
            if len(buf) > max_bytes:
                raise limit
        return buf

    def owner_of(request: Request) -> str:
        """Who a request is, for fairness: the client address (the API key is shared, the headers are
        the client's choice)."""
        return request.client.host if request.client else "?"

    async def engine0() -> Engine:
        return await run_in_threadpool(jobs.engine, 0)

    # -- about ----------------------------------------------------------------------------
    @app.get("/v1/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/info", responses=_errors(401, 503))
    async def info() -> dict:
        engine = await engine0()
        vocab = {m: len(await run_in_threadpool(engine.vocabulary, m)) for m in MODALITIES}
        return {"server": "TextSeg", "version": __version__, "api_version": protocol.VERSION,
                "protocol": protocol.VERSION, "model": engine.name,
                "device": str(getattr(engine, "device", names[0])), "vocabulary_size": vocab,
                "limits": {"max_upload_mb": max_upload_mb, "max_voxels": max_voxels, "result_ttl_s": result_ttl_s,
                           "result_budget_mb": result_budget_mb, "image_cache_mb": image_cache_mb,
                           "max_queued": max_queued, "per_client": per_client,
                           "memory_budget_mb": memory.total / 2**20, "max_decoded_mb": memory.per_upload / 2**20,
                           "streams_per_client": streams_per_client, **app.state.connection_limits.info()},
                "memory": memory.info(),
                "connections": app.state.connections.info() if hasattr(app.state, "connections") else None,
                "queue": jobs.info(), "images": images.stats(), "codecs": list(protocol.CODECS),
                "busy": jobs.busy(), "free_text": bool(getattr(engine, "free_text", True)),
                "modalities": list(getattr(engine, "modalities", None) or [])}

    @app.get("/v1/vocabulary", responses=_errors(400, 401, 503))
    async def vocabulary(modality: Literal["ct", "mri", "pet"] = "ct") -> dict:
        engine = await engine0()
        known = list(getattr(engine, "modalities", None) or [])
        trained = not known or modality in known
        terms = list(await run_in_threadpool(engine.vocabulary, modality)) if trained else []
        return {"modality": modality, "model": engine.name, "trained_on_modality": trained,
                "free_text": bool(getattr(engine, "free_text", True)), "terms": terms,
                "concepts": await run_in_threadpool(coded_terms, modality, tuple(terms))}

    coded: dict[tuple, dict] = {}

    def coded_terms(modality: str, terms: tuple[str, ...]) -> dict[str, Any]:
        """Each served term -> its concept ``{"id", "name", "code"}`` (None: a model term with no code)."""
        key = (modality, terms)
        if key not in coded:
            from ..knowledge.tree import default_tree

            tree = default_tree()
            out: dict[str, Any] = {}
            for term, cid in tree.map_vocabulary(terms).items():
                c = tree.get(cid) if cid else None
                out[term] = {"id": c.id, "name": c.name, "code": c.code} if c else None
            coded[key] = out
        return coded[key]

    def resolve(engine: Engine, prompts: list[str], modality: str) -> list:
        from ..knowledge.resolved import engine_prompts

        try:
            return engine_prompts(engine, prompts, modality)
        except Exception as exc:
            raise from_textseg_error(exc) from None

    def resolve_answer(engine: Engine, text: str, modality: str) -> dict:
        try:
            out = resolve(engine, [text], modality)
        except ApiError as exc:
            if exc.status != 422:
                raise
            return {"text": text, "modality": modality, "resolved": False, "prompts": [], **exc.body()}
        return {"text": text, "modality": modality, "resolved": True, "prompts": [p.to_json() for p in out]}

    @app.get("/v1/resolve", responses=_errors(400, 401, 503))
    async def resolve_text(text: str = Query(min_length=1, max_length=protocol.MAX_PROMPT_CHARS, pattern=r"[^ \t\n\r\f\v]",
                                             description="a prompt: one non-space character at least"),
                           modality: Literal["ct", "mri", "pet", ""] = "") -> dict:
        """How the server resolves ``text``: ``resolved: false`` with the ``code`` and ``error`` a job would
        get (``prompt_unknown``, ``prompt_ambiguous`` with ``choices``, ...) when it resolves to nothing."""
        engine = await engine0()
        return await run_in_threadpool(resolve_answer, engine, text, modality)

    # -- images ---------------------------------------------------------------------------
    def decode(body: bytearray, budget, decoder):
        """``decoder(body)`` once the decoded size the header declares (+ checks) is reserved in ``budget``."""
        try:
            declared = protocol.declared_bytes(body, max_voxels=max_voxels)
            budget.grow(declared + declared // 4)  # the volume and the value check's mask
            return decoder(memoryview(body), max_voxels=max_voxels)
        except ApiError:
            raise
        except Exception as exc:
            raise from_textseg_error(exc) from None

    def store_image(body: bytearray, budget) -> tuple[Any, bool]:
        iid, geo, raw = decode(body, budget, protocol.decode_image)
        header, payload = protocol.unpack_message(body)
        codec = header.get("compression", "none")
        return images.put(iid, geo, raw, codec, None if codec == "none" else bytes(payload))

    image_links = {"links": {"GetImage": {"operationId": "get_image", "parameters": {"image_id": "$response.body#/id"}}}}

    @app.put("/v1/images", status_code=201, openapi_extra={"requestBody": _BIN}, operation_id="put_image",
             responses={200: {"description": "already stored", **image_links}, 201: image_links,
                        **_errors(400, 401, 413, 422, 503)})
    async def put_image(request: Request) -> JSONResponse:
        with memory.reserve(0, "This upload") as budget:
            body = await read_body(request, budget)
            item, new = await run_in_threadpool(store_image, body, budget)
            del body
        return JSONResponse({**item.info(), "existed": not new}, status_code=201 if new else 200)

    @app.get("/v1/images/{image_id}", responses=_errors(400, 401, 404), operation_id="get_image")
    async def get_image(image_id: str) -> dict:
        item = images.get(image_id)
        if item is None:
            raise ApiError("image_unknown", f"Image {image_id[:80]} is not on this server (never uploaded, dropped "
                                            "from the cache, or the server restarted). Upload it with PUT /v1/images.")
        return item.info()

    # -- jobs -----------------------------------------------------------------------------
    def make_job(fields: dict[str, Any], image_id: str, owner: str) -> ServerJob:
        blank = [i for i, p in enumerate(fields["prompts"]) if not p.strip()]
        if blank:
            raise ApiError("prompt_invalid", f"Prompt {blank[0] + 1} is empty. Name a structure, e.g. liver.")
        item = images.get(image_id)
        if item is None:
            raise ApiError("image_unknown", f"Image {image_id} is not on this server (never uploaded, dropped from "
                                            "the cache, or the server restarted). Upload it with PUT /v1/images.")
        if fields.get("roi_ras") is not None:
            roi = fields["roi_ras"]
            if any(len(c) != 3 for c in roi):
                raise ApiError("bad_request", "body.roi_ras: must be [[R,A,S],[R,A,S]].")
            fields["roi_ras"] = (list(roi[0]), list(roi[1]))
        engine = jobs.engine(0)
        resolved = resolve(engine, [p.strip() for p in fields["prompts"]], fields.get("modality") or "")
        return ServerJob(item, resolved, probabilities=bool(fields.get("probabilities")),
                         modality=fields.get("modality") or None, roi_ras=fields.get("roi_ras"), owner=owner)

    def inline_job(body: bytearray, owner: str, budget) -> ServerJob:
        iid, geo, raw, opts = decode(body, budget, protocol.decode_inline)
        header, payload = protocol.unpack_message(body)
        codec = header.get("compression", "none")
        images.put(iid, geo, raw, codec, None if codec == "none" else bytes(payload))
        return make_job(opts, iid, owner)

    async def submit(request: Request) -> ServerJob:
        ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        with memory.reserve(0, "This request") as budget:
            return await submit_within(request, ctype, budget)

    async def submit_within(request: Request, ctype: str, budget) -> ServerJob:
        body = await read_body(request, budget)
        owner = owner_of(request)
        if ctype == "application/json":
            try:
                req = JobRequest.model_validate_json(bytes(body))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(x) for x in first.get("loc", ())) or "body"
                raise ApiError("bad_request", f"body.{where}: {first.get('msg', 'invalid')}.") from None
            job = await run_in_threadpool(make_job, req.model_dump(), req.image, owner)
        elif ctype in (protocol.CONTENT_TYPE, "application/octet-stream", ""):
            job = await run_in_threadpool(inline_job, body, owner, budget)
        else:
            raise ApiError("unsupported_media_type", f"Content-Type {ctype!r} is not accepted here. Send "
                                                     f"application/json or {protocol.CONTENT_TYPE}.")
        del body
        jobs.submit(job)
        return job

    # the schema documents the JSON form; the inline binary form (protocol.encode_request) is accepted too
    job_body = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": JobRequest.model_json_schema()}}}}

    job_links = {"links": {
        "GetJob": {"operationId": "get_job", "parameters": {"job_id": "$response.body#/id"}},
        "GetJobEvents": {"operationId": "get_job_events", "parameters": {"job_id": "$response.body#/id"}},
        "GetJobResult": {"operationId": "get_job_result", "parameters": {"job_id": "$response.body#/id"}},
        "DeleteJob": {"operationId": "delete_job", "parameters": {"job_id": "$response.body#/id"}}}}

    @app.post("/v1/jobs", status_code=202, response_model=JobCreated, openapi_extra=job_body, operation_id="create_job",
              responses={202: job_links, **_errors(400, 401, 404, 413, 415, 422, 429, 503)})
    async def create_job(request: Request) -> dict:
        job = await submit(request)
        base = f"/v1/jobs/{job.id}"
        return {"id": job.id, "image": job.image.id, "status_url": base, "events_url": f"{base}/events",
                "result_url": f"{base}/result", "prompts": [p.to_json() for p in job.prompts]}

    @app.get("/v1/jobs/{job_id}", responses=_errors(400, 401, 404, 410), operation_id="get_job")
    async def job_status(job_id: str) -> dict:
        return jobs.status(jobs.get(job_id))

    @app.get("/v1/jobs/{job_id}/events", operation_id="get_job_events",
             responses={200: {"content": {"application/x-ndjson": {}}}, **_errors(400, 401, 404, 410, 429)})
    async def job_events(request: Request, job_id: str, heartbeat: Optional[float] = Query(default=None, ge=0.05, le=30)) -> StreamingResponse:
        job = jobs.get(job_id)
        beat = heartbeat or event_heartbeat_s
        owner = owner_of(request)
        if streams[owner] >= streams_per_client:
            raise ApiError("too_many_streams", f"This client already follows {streams_per_client} event streams, the "
                                               "server's limit per client. Close one, or poll GET /v1/jobs/{id}.",
                           {"Retry-After": "1"})
        streams[owner] += 1

        async def lines():
            version = -1
            while True:
                snap = jobs.status(job)
                yield (json.dumps(snap, separators=(",", ":")) + "\n").encode("utf-8")
                if snap["state"] in FINAL_STATES:  # the line just sent was the last one
                    return
                version = snap["version"]
                await job.changed(version, beat)  # on the loop: no pool thread is held while waiting

        def done() -> None:
            streams[owner] -= 1
            if streams[owner] <= 0:
                del streams[owner]

        return _CountedStream(lines(), done, media_type="application/x-ndjson",
                              headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.delete("/v1/jobs/{job_id}", responses=_errors(400, 401, 404, 410), operation_id="delete_job")
    async def cancel_job(job_id: str) -> dict:
        job = jobs.delete(job_id)
        snap = job.snapshot()
        snap["deleted"] = True
        return snap

    def result_of(job: ServerJob) -> Response:
        if not job.is_final:
            raise ApiError("job_not_finished", f"Job {job.id} is still {job.state} ({job.stage}). Follow "
                                               f"/v1/jobs/{job.id}/events or poll /v1/jobs/{job.id} until done.")
        if job.state != "done" or job.packed is None:
            raise from_textseg_error(job.error or RemoteError("The job has no result."))
        return Response(job.packed, media_type=protocol.CONTENT_TYPE)

    @app.get("/v1/jobs/{job_id}/result", operation_id="get_job_result", responses={
        200: {"content": {protocol.CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
        **_errors(401, 404, 409, 410, 422, 500, 503)})
    async def job_result(job_id: str) -> Response:
        return result_of(jobs.get(job_id))

    @app.post("/v1/segment", openapi_extra=job_body, responses={
        200: {"content": {protocol.CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
        **_errors(400, 401, 404, 410, 413, 415, 422, 429, 500, 503)})
    async def segment(request: Request) -> Response:
        job = await submit(request)
        try:
            await job.finished_async()  # on the loop: no pool thread is held while waiting
            return result_of(job)
        finally:
            if job.id in jobs.jobs:
                jobs.delete(job.id)

    return app


class _CountedStream(StreamingResponse):
    """A streaming response that calls ``done()`` once it ends, however it ends (sent, cancelled, lost)."""

    def __init__(self, content, done: Callable[[], None], **kw: Any) -> None:
        super().__init__(content, **kw)
        self._done = done

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            done, self._done = self._done, None
            if done is not None:
                done()


__all__ = ["create_app", "ApiError", "JobRequest"]
