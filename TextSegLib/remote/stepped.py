"""``RemoteEngine`` work cut into bounded steps, for a GUI timer tick that must stay short.

Each operation's ``step(budget_s)`` does about ``budget_s`` seconds of work and returns
whether it is over; then ``.result`` holds the outcome or ``.error`` the one-line reason.

* :class:`Call`: one small JSON request (info, vocabulary, job status, delete).
* :class:`Submit`: resolve the prompts, then slab by slab (K planes) check the voxels, hash
  them (the content id) and compress them; ask whether the server holds the scan, send it
  while it is encoded, and queue the job. A full queue (503 / 429 with ``Retry-After``) is a
  state checked again on a later step, never a sleep; an image the server dropped is sent again.
* :class:`Fetch`: download the result into one buffer, then inflate and unpack the masks
  in bounded pieces, and build the :class:`~TextSegLib.engine.base.EngineResult`.

The wire format and the answers are :mod:`.protocol`'s and :mod:`.client`'s; only the
pacing differs.
"""
from __future__ import annotations

import hashlib
import json
import time
import zlib
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import RemoteError, TerminologyError
from ..volume import Volume, normalize_modality
from . import protocol
from .nbhttp import Request
from .streams import StreamEncoder, StreamResultDecoder

SLAB_BYTES = 1 << 20  # voxel bytes hashed / compressed per piece


def _pieces(budget_s: float) -> Iterator[float]:
    """Yield the budget left until ``budget_s`` is spent (at least once)."""
    end = time.perf_counter() + budget_s
    yield max(budget_s, 0.001)
    while (left := end - time.perf_counter()) > 0:
        yield left


class Call:
    """One JSON request; ``.result`` is the decoded answer."""

    def __init__(self, engine: Any, method: str, path: str, *, params: dict | None = None,
                 body: bytes | None = None, content_type: str = "application/json", timeout_s: float | None = None) -> None:
        headers = {k: v for k, v in engine.session.headers.items() if k in ("Authorization", "X-TextSeg-Client")}
        if body is not None:
            headers["Content-Type"] = content_type
        self.engine = engine
        self.request = Request(engine.url, method, path, headers=headers, body=body, params=params,
                               timeout_s=timeout_s or engine.timeout, connect_timeout_s=min(10.0, engine.timeout))
        self.result: Any = None
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.request.done

    def step(self, budget_s: float = 0.01) -> bool:
        if not self.request.step(budget_s):
            return False
        r = self.request
        if r.error is not None:
            self.error = r.error
        elif r.status >= 400:
            self.error = self.engine.error_from(r.status, r.content, r.response_headers)
        else:
            try:
                self.result = json.loads(bytes(r.content)) if r.content else {}
            except ValueError:
                self.error = RemoteError(f"{self.engine.url} answered, but not as a TextSeg server (no JSON).",
                                         "Check the URL and port.")
        return True

    def close(self) -> None:
        self.request.close()


class _ImageBody:
    """The ``PUT /v1/images`` body: message head, then the payload made on demand."""

    def __init__(self, head: bytes, parts: list[bytes] | None, raw_slabs: Any, payload_len: int) -> None:
        self.length = len(head) + payload_len
        self._head, self._parts, self._slabs = head, parts, raw_slabs

    def read(self) -> bytes | memoryview:
        if self._head:
            head, self._head = self._head, b""
            return head
        if self._parts is not None:
            return self._parts.pop(0) if self._parts else b""
        return next(self._slabs, b"")


class Submit:
    """Resolve, check, hash, compress, upload (once per scan) and queue a job, in bounded steps.

    ``.phase``: resolve, hash, check, upload, queue (waiting out a full queue), done.
    ``.result``: the :class:`~.client.RemoteJob`."""

    def __init__(self, engine: Any, volume: Volume, prompts: Sequence, *, modality: str | None = None,
                 roi_ras: tuple[Sequence[float], Sequence[float]] | None = None) -> None:
        if not [p for p in prompts if (p if isinstance(p, str) else getattr(p, "text", "")).strip()]:
            raise TerminologyError("No prompt given.", "Name at least one structure, e.g. liver.")
        volume.validate(check_values=False)  # the cheap checks now; the voxel values slab by slab
        self.engine, self.volume, self.prompts, self.roi_ras = engine, volume, list(prompts), roi_ras
        self.modality = normalize_modality(modality) if modality else volume.modality
        self.t0 = time.perf_counter()
        self.phase = "resolve"
        self.result: Any = None
        self.error: BaseException | None = None
        self.call: Call | None = None
        self.put: Request | None = None
        self.retry_at = 0.0
        self.queue_deadline = 0.0
        self.reuploaded = False
        self.resolved: list = []
        self.texts: list[str] = []
        a = volume.array
        self.wire_name = protocol.wire_array_dtype(a)
        self.wire = np.dtype(self.wire_name).newbyteorder("<")
        plane = a.shape[0] * a.shape[1] * self.wire.itemsize
        self.per_piece = max(1, SLAB_BYTES // max(1, plane))
        self.nk = a.shape[2]
        self.k = 0
        self.geo = protocol.geometry_header(volume.shape, self.wire_name, volume.ijk_to_ras)
        self.raw_bytes = a.size * self.wire.itemsize
        self.hash = hashlib.sha256(json.dumps({k: self.geo[k] for k in ("shape", "dtype", "ijk_to_ras")},
                                              separators=(",", ":"), sort_keys=True).encode("utf-8"))
        self.codec = engine.codec
        self.encoder = StreamEncoder(self.codec, self.raw_bytes, self.wire.itemsize)
        self.image_id = ""
        self.sent = 0
        self.upload_s = 0.0
        self._left = 0.01

    # -- progress -------------------------------------------------------------------------
    @property
    def progress(self) -> tuple[str, int, int]:
        """(stage, done, total) for a progress bar."""
        if self.phase == "hash":
            return "preparing upload", self.k, self.nk
        if self.phase == "upload" and self.put is not None:
            return "upload", self.put.sent, self.put.total
        if self.phase == "queue":
            return "queued", 0, 0
        return self.phase, 0, 0

    def slab(self, k: int, n: int) -> bytes:
        return np.asarray(self.volume.array[:, :, k:k + n], dtype=self.wire).tobytes(order="F")

    def _raw_slabs(self) -> Iterator[bytes]:
        for k in range(0, self.nk, self.per_piece):
            yield self.slab(k, self.per_piece)

    # -- stepping -------------------------------------------------------------------------
    def step(self, budget_s: float = 0.012) -> bool:
        if self.phase == "done":
            return True
        try:
            for left in _pieces(budget_s):
                self._left = left
                if not self._advance(left) or self.phase == "done":
                    break
        except BaseException as exc:
            self.error, self.phase = exc, "done"
            self.close()
        return self.phase == "done"

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        """Start (or step) the one JSON call of this phase; its answer, or None while it runs."""
        if self.call is None:
            self.call = Call(self.engine, method, path, **kw)
        if not self.call.step(min(self._left, 0.01)):
            return None
        call, self.call = self.call, None
        if call.error is not None:
            raise call.error
        return call.result

    def _advance(self, budget_s: float) -> bool:
        """One bounded piece of work; False when waiting on the network or the server."""
        e = self.engine
        if self.phase == "resolve":
            if e._info is None:
                info = self._json("GET", "/v1/info")
                if info is None:
                    return False
                from .client import check_api_version

                check_api_version(e.url, info)
                e._info = info
            m = normalize_modality(self.modality) or "ct"
            if m not in e._vocab:
                got = self._json("GET", "/v1/vocabulary", params={"modality": m})
                if got is None:
                    return False
                e._vocab[m] = list(got["terms"])
            from ..knowledge.resolved import engine_prompts

            self.resolved = engine_prompts(e, self.prompts, self.modality)  # the vocabulary is cached now
            by_term: dict[str, str] = {}
            for p in self.resolved:
                by_term.setdefault(p.term, p.text)
            self.texts = list(by_term)
            self.phase = "hash"
            return True
        if self.phase == "hash":
            if self.k >= self.nk:
                self.image_id = self.hash.hexdigest()
                self.phase = "check"
                return True
            a = self.volume.array[:, :, self.k:self.k + self.per_piece]
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                self.volume.validate(check_values=True)  # raises the one-line NaN/Inf message
            raw = np.asarray(a, dtype=self.wire).tobytes(order="F")
            self.hash.update(raw)
            if self.codec != "none":
                self.encoder.feed(raw)
            self.k += self.per_piece
            return True
        if self.phase == "check":
            if self.call is None:
                self.call = Call(e, "GET", f"/v1/images/{self.image_id}")
            if not self.call.step(min(budget_s, 0.01)):
                return False
            call, self.call = self.call, None
            if call.error is None:
                self.encoder = None  # the server holds this scan: nothing to send
                self._start_post()
                return True
            if getattr(call.error, "code", "") != "image_unknown":
                raise call.error
            self._start_put()
            return True
        if self.phase == "upload":
            if not self.put.step(min(budget_s, 0.01)):
                return False
            put, self.put = self.put, None
            self.sent += put.sent
            self.upload_s = time.perf_counter() - self._put_t
            if put.error is not None:
                raise put.error
            if put.status >= 400:
                raise e.error_from(put.status, put.content, put.response_headers)
            got = json.loads(bytes(put.content))
            if got.get("id") != self.image_id:
                raise RemoteError(f"Server {e.url} stored the scan under id {got.get('id')!r}, expected "
                                  f"{self.image_id}.", "Client and server disagree on the image format; update both.")
            self._start_post()
            return True
        if self.phase == "queue":
            if self.call is None and time.monotonic() < self.retry_at:
                return False  # a full queue: asked again on a later step
            body = json.dumps(self.request, separators=(",", ":")).encode("utf-8")
            if self.call is None:
                self.sent += len(body)
            try:
                job = self._json("POST", "/v1/jobs", body=body)
            except RemoteError as exc:
                code = getattr(exc, "code", "")
                if code == "image_unknown" and not self.reuploaded:
                    self.reuploaded = True
                    self.encoder = StreamEncoder(self.codec, self.raw_bytes, self.wire.itemsize)
                    self.k = 0
                    self.phase = "reencode"
                    return True
                if code in ("queue_full", "client_limit") and time.monotonic() < self.queue_deadline:
                    wait = float(getattr(exc, "retry_after", None) or 1)
                    self.retry_at = time.monotonic() + min(wait, max(0.0, self.queue_deadline - time.monotonic()))
                    self.waited_full = True
                    return False
                raise
            if job is None:
                return False
            from .client import RemoteJob

            e.last_sent_bytes = self.sent
            self.result = RemoteJob(job["id"], self.resolved, self.texts, tuple(self.volume.shape), self.t0,
                                    self.image_id, {"upload": self.upload_s}, self.sent)
            self.phase = "done"
            return True
        if self.phase == "reencode":  # the server dropped the scan after our check: encode and send again
            if self.k >= self.nk or self.codec == "none":
                self._start_put()
                return True
            self.encoder.feed(self.slab(self.k, self.per_piece))
            self.k += self.per_piece
            return True
        return False

    def _start_put(self) -> None:
        header = {"version": protocol.VERSION, **self.geo, "compression": self.codec}
        head_json = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
        head = protocol.MAGIC + len(head_json).to_bytes(4, "little") + head_json
        if self.codec == "none":
            body = _ImageBody(head, None, self._raw_slabs(), self.raw_bytes)
        else:
            parts = self.encoder.finish()
            body = _ImageBody(head, parts, None, sum(len(p) for p in parts))
        self.encoder = None
        headers = {k: v for k, v in self.engine.session.headers.items() if k in ("Authorization", "X-TextSeg-Client")}
        headers["Content-Type"] = protocol.CONTENT_TYPE
        self.put = Request(self.engine.url, "PUT", "/v1/images", headers=headers, body=body,
                           timeout_s=self.engine.timeout, connect_timeout_s=min(10.0, self.engine.timeout))
        self._put_t = time.perf_counter()
        self.phase = "upload"

    def _start_post(self) -> None:
        roi = self.roi_ras
        self.request = {"image": self.image_id, "prompts": self.texts, "modality": self.modality or "",
                        "probabilities": bool(self.engine.probabilities),
                        "roi_ras": None if roi is None else [[float(x) for x in roi[0]], [float(x) for x in roi[1]]]}
        self.queue_deadline = time.monotonic() + self.engine.queue_wait_s
        self.phase = "queue"

    def close(self) -> None:
        """Stop: drop the connection of the request in flight."""
        for r in (self.call, self.put):
            if r is not None:
                r.close()
        self.encoder = None
        if self.phase != "done":
            self.phase = "done"
            self.error = self.error or RemoteError("The upload was stopped.")


class Fetch:
    """Download a finished job's result and decode it in bounded pieces; ``.result`` is the EngineResult.

    The server forgets the job afterwards (its DELETE is sent without waiting for the answer)."""

    def __init__(self, engine: Any, job: Any) -> None:
        self.engine, self.job = engine, job
        headers = {k: v for k, v in engine.session.headers.items() if k in ("Authorization", "X-TextSeg-Client")}
        self.request = Request(engine.url, "GET", f"/v1/jobs/{job.id}/result", headers=headers,
                               timeout_s=engine.timeout, connect_timeout_s=min(10.0, engine.timeout))
        self.phase = "download"
        self.t = time.perf_counter()
        self.result: Any = None
        self.error: BaseException | None = None
        self.decoder: StreamResultDecoder | None = None

    @property
    def progress(self) -> tuple[str, int, int]:
        if self.phase == "download":
            return "download", self.request.received, self.request.expected or 0
        if self.decoder is not None:
            return "decoding result", self.decoder.done_bytes, self.decoder.total_bytes
        return self.phase, 0, 0

    def step(self, budget_s: float = 0.012) -> bool:
        if self.phase == "done":
            return True
        try:
            self._advance(budget_s)
        except BaseException as exc:
            self.error, self.phase = exc, "done"
            self.close()
        return self.phase == "done"

    def _advance(self, budget_s: float) -> None:
        if self.phase == "download":
            if not self.request.step(budget_s):
                return
            r = self.request
            self.forget()
            if r.error is not None:
                raise RemoteError(f"Lost job {self.job.id[:8]} on {self.engine.url}: the server stopped or restarted "
                                  f"while it ran ({getattr(r.error, 'reason', r.error)}).",
                                  "Run it again; the scan is uploaded again if the server needs it.")
            if r.status >= 400:
                raise self.engine.error_from(r.status, r.content, r.response_headers)
            self.decoder = StreamResultDecoder(r.content)
            self.phase = "decode"
            return
        if self.phase == "decode":
            for _left in _pieces(budget_s):
                if self.decoder.step():
                    d = self.decoder
                    self.result = self.engine.result_of(self.job, d.masks, d.probabilities, d.timings, d.info,
                                                        len(self.request.content), time.perf_counter() - self.t)
                    self.phase = "done"
                    return

    def forget(self) -> None:
        """Tell the server to drop the job (and its result); the answer is not awaited."""
        if getattr(self, "_forgotten", False):
            return
        self._forgotten = True
        delete = Call(self.engine, "DELETE", f"/v1/jobs/{self.job.id}", timeout_s=10.0)
        delete.step(0.002)
        delete.request.detach()

    def close(self) -> None:
        self.request.close()
        self.decoder = None
        if self.phase != "done":
            self.phase = "done"
            self.error = self.error or RemoteError("The download was stopped.")


__all__ = ["Call", "Submit", "Fetch", "SLAB_BYTES"]
