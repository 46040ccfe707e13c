"""``RemoteEngine``: the Engine protocol over HTTP to a ``textseg serve`` server.

The volume is validated here and uploaded once per scan (content-hashed), the job
names it, progress arrives on the job's event stream (``progress(stage, done, total)``
as a local engine reports it; ``("queued", 0, position)`` while it waits), a cancel
token deletes the job, and the bit-packed masks come back on the source grid. The
server's API version is checked on connect.
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Sequence
from urllib.parse import urlparse

import requests

from .. import __version__
from ..engine.base import CancelToken, EngineResult, ProgressCallback
from ..errors import CancelledError, RemoteError, TerminologyError
from ..volume import Volume, normalize_modality
from . import protocol

_HINT = "Check the URL and that `textseg serve` is running."


def printable_url(url: str) -> str:
    """``url`` without any ``user:password@`` part, for messages and logs."""
    parsed = urlparse((url or "").strip())
    if "@" not in parsed.netloc:
        return (url or "").strip()
    return parsed._replace(netloc=parsed.netloc.rsplit("@", 1)[1]).geturl()


def _check_url(url: str) -> str:
    u = (url or "").strip().rstrip("/")
    parsed = urlparse(u)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise RemoteError(f"Server URL {printable_url(url)!r} is not an http:// or https:// address.",
                          "Write it like http://127.0.0.1:8000.")
    if "@" in parsed.netloc:  # never sent, never echoed: a TextSeg server takes a key, not a URL password
        raise RemoteError(f"Server URL {printable_url(u)} carries a user name or password.",
                          "TextSeg servers take an API key: remove it from the URL and pass --api-key "
                          "(or set TEXTSEG_API_KEY).")
    return u


def _reason(exc: requests.RequestException) -> str:
    text = str(exc).lower()
    if isinstance(exc, requests.Timeout):
        return "the request timed out"
    if "refused" in text:
        return "connection refused"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError) or "aborted" in text or "reset" in text \
            or "remotedisconnected" in text:
        return "connection lost"
    if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return "unknown host name"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS/SSL error (certificate?)"
    return type(exc).__name__


@dataclass
class RemoteJob:
    """A job started with :meth:`RemoteEngine.submit` (what :meth:`RemoteEngine.job_result` needs)."""

    id: str
    prompts: list
    texts: list[str]
    shape: tuple[int, ...]
    t0: float
    image: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    upload_bytes: int = 0


class RemoteEngine:
    """An Engine whose inference runs on a TextSeg server (see :mod:`.server`).

    Each scan is uploaded once (``PUT /v1/images``, blosc2-compressed) and jobs name it by its
    content hash; when the server no longer holds it (cache eviction, restart) it is uploaded
    again transparently. Progress is followed on the job's NDJSON event stream (``stream=False``
    polls instead). A full queue (503) or the per-client limit (429) is waited out, honouring
    ``Retry-After``, for up to ``queue_wait_s``."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0, *,
                 poll_interval: float = 0.25, probabilities: bool = False, compress: bool | str = True,
                 stream: bool = True, queue_wait_s: float = 600.0, client_name: str | None = None) -> None:
        self.url = _check_url(url)
        self.api_key = api_key or None
        self.timeout = float(timeout)
        self.poll_interval = float(poll_interval)
        self.probabilities = probabilities
        self.codec = compress if isinstance(compress, str) else (protocol.best_codec() if compress else "none")
        self.stream = stream
        self.queue_wait_s = float(queue_wait_s)
        self.session = requests.Session()
        if self.api_key:
            self.session.headers["Authorization"] = f"Bearer {self.api_key}"
        self.session.headers["X-TextSeg-Client"] = client_name or f"{socket.gethostname()}/{os.getpid()}"
        self._info: dict[str, Any] | None = None
        self._vocab: dict[str, list[str]] = {}
        #: bytes sent by the last ``segment`` call (image upload + job request)
        self.last_sent_bytes = 0

    # -- HTTP -------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, timeout: float | None = None, **kw: Any) -> requests.Response:
        try:
            r = self.session.request(method, self.url + path, timeout=timeout or self.timeout, **kw)
        except requests.RequestException as exc:
            err = RemoteError(f"Could not reach {self.url}: {_reason(exc)}.", _HINT)
            err.reason = _reason(exc)  # type: ignore[attr-defined]
            raise err from None
        if r.status_code >= 400:
            raise self._error(r)
        return r

    def _error(self, r: requests.Response) -> RemoteError:
        return self.error_from(r.status_code, r.content, r.headers, r.reason)

    def error_from(self, status: int, content: bytes | bytearray, headers: Any, reason: str = "") -> RemoteError:
        """The one-line :class:`RemoteError` of an HTTP error answer (``.status``, ``.code``, ``.retry_after``)."""
        code = ""
        text = bytes(content).decode("utf-8", "replace")
        try:
            body = json.loads(text)
            message, code = body.get("error") or text, str(body.get("code") or "")
        except (ValueError, AttributeError):
            message = text[:300] or reason
        if status == 401:
            err = RemoteError(f"The server at {self.url} refused the API key: {message}",
                              "Enter the key the server was started with.")
        else:
            err = RemoteError(f"Server {self.url} answered {status}: {message}")
        err.status = status  # type: ignore[attr-defined]
        err.code = code  # type: ignore[attr-defined]
        err.retry_after = headers.get("retry-after")  # type: ignore[attr-defined]
        return err

    def info(self, refresh: bool = False) -> dict[str, Any]:
        """The server's ``/v1/info`` (version, model, device, limits); checks the API version."""
        if self._info is None or refresh:
            info = self._request("GET", "/v1/info").json()
            check_api_version(self.url, info)
            self._info = info
        return self._info

    connect = info

    @property
    def name(self) -> str:
        model = (self._info or {}).get("model")
        return f"{model} @ {self.url}" if model else f"remote {self.url}"

    # -- Engine protocol -----------------------------------------------------------------
    def vocabulary(self, modality: str) -> list[str]:
        m = normalize_modality(modality) or "ct"
        if m not in self._vocab:
            self.info()
            self._vocab[m] = list(self._request("GET", "/v1/vocabulary", params={"modality": m}).json()["terms"])
        return list(self._vocab[m])

    @property
    def free_text(self) -> bool:
        """Whether the served model encodes free text (from ``/v1/info``; assumed yes if unsaid)."""
        return bool(self.info().get("free_text", True))

    @property
    def modalities(self) -> tuple[str, ...] | None:
        mods = self.info().get("modalities")
        return tuple(mods) if mods else None

    def upload(self, volume: Volume) -> tuple[str, int]:
        """Store ``volume`` on the server; (image id, bytes sent). A repeat is one small GET."""
        name, raw = protocol.wire_array(volume)
        geo = protocol.geometry_header(volume.shape, name, volume.ijk_to_ras)
        iid = protocol.image_id(geo, raw)
        try:
            self._request("GET", f"/v1/images/{iid}")
            return iid, 0
        except RemoteError as exc:
            if getattr(exc, "code", "") != "image_unknown":
                raise
        return iid, self._put_image(geo, raw, iid)

    def _put_image(self, geo: dict, raw: bytes, iid: str) -> int:
        import numpy as np

        body = protocol.pack_message({"version": protocol.VERSION, **geo, "compression": self.codec},
                                     protocol.compress_bytes(raw, self.codec, np.dtype(geo["dtype"]).itemsize))
        got = self._request("PUT", "/v1/images", data=body, headers={"Content-Type": protocol.CONTENT_TYPE}).json()
        if got.get("id") != iid:
            raise RemoteError(f"Server {self.url} stored the scan under id {got.get('id')!r}, expected {iid}.",
                              "Client and server disagree on the image format; update both.")
        return len(body)

    def segment(self, volume: Volume, prompts: Sequence, *, modality: str | None = None,
                roi_ras: tuple[Sequence[float], Sequence[float]] | None = None,
                progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> EngineResult:
        """Upload (once), follow progress, fetch the masks (on ``volume``'s grid).

        Prompts are resolved here against the server's vocabulary (the same rule as a local
        engine); the server is sent each prompt's term, and the result is keyed by its text."""
        if progress:
            progress("upload", 0, 1)
        job = self.submit(volume, prompts, modality=modality, roi_ras=roi_ras, cancel=cancel)
        if progress:
            progress("upload", 1, 1)
        try:
            status = self._wait(job.id, progress, cancel)
            if status["state"] == "cancelled":
                raise CancelledError("Segmentation cancelled on the server.")
            return self.job_result(job)
        except BaseException:
            self._delete(job.id)
            raise

    def submit(self, volume: Volume, prompts: Sequence, *, modality: str | None = None,
               roi_ras: tuple[Sequence[float], Sequence[float]] | None = None,
               cancel: CancelToken | None = None) -> RemoteJob:
        """Resolve, upload (once) and queue a job; returns without waiting for it (then poll
        :meth:`job_status` and fetch :meth:`job_result`, as the Slicer module does)."""
        from ..knowledge.resolved import engine_prompts

        t0 = time.perf_counter()
        if not [p for p in prompts if (p if isinstance(p, str) else getattr(p, "text", "")).strip()]:
            raise TerminologyError("No prompt given.", "Name at least one structure, e.g. liver.")
        volume.validate(check_values=True)
        self.info()
        mod = normalize_modality(modality) if modality else volume.modality
        resolved = engine_prompts(self, prompts, mod)
        by_term: dict[str, str] = {}
        for p in resolved:
            by_term.setdefault(p.term, p.text)
        texts = list(by_term)
        if cancel is not None:
            cancel.check()
        t = time.perf_counter()
        iid, sent = self.upload(volume)
        request = {"image": iid, "prompts": texts, "modality": mod or "", "probabilities": bool(self.probabilities),
                   "roi_ras": None if roi_ras is None else [[float(x) for x in roi_ras[0]], [float(x) for x in roi_ras[1]]]}
        job, n = self._submit(request, volume, cancel)
        sent += n
        self.last_sent_bytes = sent
        return RemoteJob(job["id"], resolved, texts, tuple(volume.shape), t0, iid,
                         {"upload": time.perf_counter() - t}, sent)

    # -- the same work in bounded steps (the Slicer module's timer tick, TextSegLib.remote.stepped) --
    def start_submit(self, volume: Volume, prompts: Sequence, *, modality: str | None = None,
                     roi_ras: tuple[Sequence[float], Sequence[float]] | None = None) -> Any:
        """:meth:`submit` as a :class:`~.stepped.Submit`: call ``step(budget_s)`` until True, then read
        ``.result`` (the :class:`RemoteJob`) or ``.error``; no call blocks or sleeps."""
        from .stepped import Submit

        return Submit(self, volume, prompts, modality=modality, roi_ras=roi_ras)

    def start_status(self, job: "RemoteJob | str") -> Any:
        """:meth:`job_status` as a stepped :class:`~.stepped.Call` (``.result`` is the status dict)."""
        from .stepped import Call

        return Call(self, "GET", f"/v1/jobs/{getattr(job, 'id', job)}")

    def start_result(self, job: RemoteJob) -> Any:
        """:meth:`job_result` as a stepped :class:`~.stepped.Fetch` (``.result`` is the EngineResult)."""
        from .stepped import Fetch

        return Fetch(self, job)

    def start_cancel(self, job: "RemoteJob | str", wait_s: float = 0.02) -> None:
        """Send the job's DELETE without waiting for the answer (at most ``wait_s`` spent here)."""
        from .stepped import Call

        call = Call(self, "DELETE", f"/v1/jobs/{getattr(job, 'id', job)}", timeout_s=10.0)
        call.step(wait_s)
        call.request.detach()

    def job_status(self, job: "RemoteJob | str") -> dict[str, Any]:
        """The server's status of a job: state, stage, done/total, queue position (one short request)."""
        jid = getattr(job, "id", job)
        return self._during_job(jid, "GET", f"/v1/jobs/{jid}").json()

    def cancel_job(self, job: "RemoteJob | str") -> None:
        """Ask the server to stop (or forget) the job; best effort."""
        self._delete(getattr(job, "id", job))

    def job_result(self, job: RemoteJob) -> EngineResult:
        """A finished job's masks as an :class:`EngineResult` keyed by prompt text; the server then
        forgets the job. A failed job raises :class:`RemoteError` with its one-line reason."""
        t = time.perf_counter()
        try:
            r = self._during_job(job.id, "GET", f"/v1/jobs/{job.id}/result")
        finally:
            self._delete(job.id)  # frees the server's result memory at once (also for a failed job)
        masks, probs, server_timings, info = protocol.decode_result(r.content)
        return self.result_of(job, masks, probs, server_timings, info, len(r.content), time.perf_counter() - t)

    def result_of(self, job: RemoteJob, masks: dict, probs: dict, server_timings: dict, info: dict,
                  nbytes: int, download_s: float) -> EngineResult:
        """The :class:`EngineResult` of a decoded result message (keyed by prompt text, checked)."""
        timings = dict(job.timings, download=download_s)
        if any(tuple(m.shape) != job.shape for m in masks.values()) or set(masks) != set(job.texts):
            raise RemoteError(f"Server {self.url} returned masks that do not match the request "
                              f"(prompts {sorted(masks)}, expected {sorted(job.texts)}).", "Update the server.")
        timings.update({f"server_{k}": float(v) for k, v in server_timings.items()})
        timings["total"] = time.perf_counter() - job.t0
        info = {**info, "server": self.url, "image": job.image, "upload_bytes": job.upload_bytes,
                "result_bytes": nbytes}
        res = EngineResult(masks={}, probabilities={}, timings=timings, info=info)
        found, reasons = info.pop("found", None) or {}, info.pop("reasons", None) or {}
        uncertain, presence = info.pop("uncertain", None) or [], info.pop("presence", None) or {}  # absent: older server
        info.pop("prompts", None)
        for p in job.prompts:
            term = p.term
            res.masks[p.text] = masks[term]
            if term in probs:
                res.probabilities[p.text] = probs[term]
            res.found[p.text] = bool(found.get(term, masks[term].any()))
            res.reasons[p.text] = str(reasons.get(term, ""))
            res.prompts[p.text] = p
            if term in uncertain and res.found[p.text]:
                res.uncertain.add(p.text)
            if isinstance(presence.get(term), (int, float)):
                res.presence[p.text] = float(presence[term])
        return res

    def _submit(self, request: dict, volume: Volume, cancel: CancelToken | None) -> tuple[dict, int]:
        """POST the job; re-upload once if the image is gone; wait out a full queue. (job, bytes sent)."""
        body = json.dumps(request, separators=(",", ":")).encode("utf-8")
        sent, reuploaded = 0, False
        deadline = time.monotonic() + self.queue_wait_s
        while True:
            try:
                sent += len(body)
                return self._request("POST", "/v1/jobs", data=body,
                                     headers={"Content-Type": "application/json"}).json(), sent
            except RemoteError as exc:
                code = getattr(exc, "code", "")
                if code == "image_unknown" and not reuploaded:
                    name, raw = protocol.wire_array(volume)
                    geo = protocol.geometry_header(volume.shape, name, volume.ijk_to_ras)
                    sent += self._put_image(geo, raw, request["image"])
                    reuploaded = True
                    continue
                if code in ("queue_full", "client_limit") and time.monotonic() < deadline:
                    wait = min(float(getattr(exc, "retry_after", None) or 1), max(0.0, deadline - time.monotonic()))
                    if cancel is not None:
                        if cancel._event.wait(wait):
                            cancel.check()
                    else:
                        time.sleep(wait)
                    continue
                raise

    def _during_job(self, jid: str, method: str, path: str, **kw: Any) -> requests.Response:
        """A request about a running job; a lost server becomes one clear line."""
        try:
            return self._request(method, path, **kw)
        except RemoteError as exc:
            if getattr(exc, "status", None) is None or getattr(exc, "code", "") == "job_unknown":
                why = getattr(exc, "reason", None) or "it no longer knows the job"
                raise RemoteError(f"Lost job {jid[:8]} on {self.url}: the server stopped or restarted while it ran "
                                  f"({why}).", "Run it again; the scan is uploaded again if the server needs it.") from None
            raise

    def _report(self, status: dict, progress: ProgressCallback | None, last: Any) -> Any:
        if status["state"] == "queued":
            key = ("queued", 0, int(status.get("queue_position") or 0))
        else:
            key = (status["stage"], status["done"], status["total"])
        if progress and key != last and key[2]:
            progress(*key)
        return key

    def _wait(self, jid: str, progress: ProgressCallback | None, cancel: CancelToken | None) -> dict[str, Any]:
        if self.stream:
            status = self._follow(jid, progress, cancel)
        else:
            status = self._poll(jid, progress, cancel)
        if status["state"] == "failed":  # the result endpoint carries the error and its code
            self._during_job(jid, "GET", f"/v1/jobs/{jid}/result")
        return status

    def _follow(self, jid: str, progress: ProgressCallback | None, cancel: CancelToken | None) -> dict[str, Any]:
        last, status = None, None
        beat = max(0.05, min(self.poll_interval, 5.0))
        r = self._during_job(jid, "GET", f"/v1/jobs/{jid}/events", params={"heartbeat": beat}, stream=True,
                             timeout=(self.timeout, max(10.0, 20 * beat)))
        try:
            for line in r.iter_lines():
                if cancel is not None and cancel.cancelled:
                    self._delete(jid)
                    raise CancelledError("Segmentation cancelled by the user.")
                if not line:
                    continue
                status = json.loads(line)
                last = self._report(status, progress, last)
                if status["state"] in ("done", "failed", "cancelled"):
                    return status
        except (requests.RequestException, ValueError) as exc:
            reason = _reason(exc) if isinstance(exc, requests.RequestException) else "broken event stream"
            raise RemoteError(f"Lost job {jid[:8]} on {self.url}: the server stopped or restarted while it ran "
                              f"({reason}).", "Run it again; the scan is uploaded again if the server needs it.") from None
        finally:
            r.close()
        raise RemoteError(f"Lost job {jid[:8]} on {self.url}: the event stream ended before the job finished "
                          "(the server stopped or restarted).", "Run it again; the scan is uploaded again "
                          "if the server needs it.")

    def _poll(self, jid: str, progress: ProgressCallback | None, cancel: CancelToken | None) -> dict[str, Any]:
        last = None
        while True:
            if cancel is not None and cancel.cancelled:
                self._delete(jid)
                raise CancelledError("Segmentation cancelled by the user.")
            status = self._during_job(jid, "GET", f"/v1/jobs/{jid}").json()
            last = self._report(status, progress, last)
            if status["state"] in ("done", "failed", "cancelled"):
                return status
            if cancel is not None:
                cancel._event.wait(self.poll_interval)  # wakes at once on cancel
            else:
                time.sleep(self.poll_interval)

    def _delete(self, jid: str) -> None:
        try:
            self.session.delete(f"{self.url}/v1/jobs/{jid}", timeout=min(self.timeout, 10.0))
        except requests.RequestException:
            pass  # best effort: the server forgets the job after its TTL anyway


def check_api_version(url: str, info: dict[str, Any]) -> None:
    """Raise a one-line :class:`RemoteError` when the server speaks another API version."""
    if not isinstance(info, dict) or info.get("server") != "TextSeg":
        raise RemoteError(f"{url} is not a TextSeg server. Check the URL and port.")
    theirs = info.get("api_version", info.get("protocol"))
    if theirs != protocol.VERSION:
        raise RemoteError(f"Server {url} speaks TextSeg API {theirs} (textseg {info.get('version', '?')}), this "
                          f"client speaks API {protocol.VERSION} (textseg {__version__}).",
                          "Install the same textseg version on both sides.")


class ConnectionTest:
    """The "Test connection" button's probe in bounded steps: ``step()`` returns None while it runs,
    then ``(ok, user-facing message)``. One ``GET /v1/info``; no thread, no blocking call."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 10.0) -> None:
        self.outcome: tuple[bool, str] | None = None
        try:
            self.engine = RemoteEngine(url, api_key, timeout=timeout)
        except RemoteError as exc:
            self.outcome = (False, str(exc))
            return
        from .stepped import Call

        self.call = Call(self.engine, "GET", "/v1/info", timeout_s=timeout)

    def step(self, budget_s: float = 0.01) -> tuple[bool, str] | None:
        if self.outcome is not None or not self.call.step(budget_s):
            return self.outcome
        exc, info = self.call.error, self.call.result
        if exc is None:
            try:
                check_api_version(self.engine.url, info)
            except RemoteError as bad:
                exc = bad
        if exc is not None:
            if getattr(exc, "status", None) == 401:
                self.outcome = (False, "The server refused the API key.")
            else:
                self.outcome = (False, str(exc))
        else:
            self.outcome = (True, f"Connected to TextSeg server {info.get('version', '?')} at {self.engine.url}, "
                                  f"model {info.get('model', '?')} on {info.get('device', '?')}")
        return self.outcome

    def close(self) -> None:
        if self.outcome is None:
            self.call.close()
            self.outcome = (False, "Connection test stopped.")


def test_connection(url: str, api_key: str | None = None, timeout: float = 10.0) -> tuple[bool, str]:
    """(ok, user-facing message) for the Slicer panel's "Test connection" button (blocking;
    the panel steps :class:`ConnectionTest` from its timer instead, see ``test_connection.stepped``)."""
    probe = ConnectionTest(url, api_key, timeout)
    end = time.monotonic() + timeout + 1.0
    while (out := probe.step(0.05)) is None:
        if time.monotonic() > end:
            probe.close()
            return False, f"Could not reach {url}: the request timed out."
    return out


test_connection.stepped = ConnectionTest  # type: ignore[attr-defined]  # what a GUI timer steps
test_connection.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
