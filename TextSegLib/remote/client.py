"""``RemoteEngine``: the Engine protocol over HTTP to a ``textseg serve`` server.

The volume is validated here, uploaded once as a job, progress is polled
(``progress(stage, done, total)`` as a local engine reports it), a cancel
token deletes the job, and the bit-packed masks come back on the source grid.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence
from urllib.parse import urlparse

import requests

from ..engine.base import CancelToken, EngineResult, ProgressCallback
from ..errors import CancelledError, RemoteError, TerminologyError
from ..volume import Volume, normalize_modality
from . import protocol

_HINT = "Check the URL and that `textseg serve` is running."


def _check_url(url: str) -> str:
    u = (url or "").strip().rstrip("/")
    parsed = urlparse(u)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise RemoteError(f"Server URL {url!r} is not an http:// or https:// address.",
                          "Write it like http://127.0.0.1:8000.")
    return u


def _reason(exc: requests.RequestException) -> str:
    text = str(exc).lower()
    if isinstance(exc, requests.Timeout):
        return "the request timed out"
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return "unknown host name"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS/SSL error (certificate?)"
    return type(exc).__name__


@dataclass
class RemoteJob:
    """A job submitted with :meth:`RemoteEngine.submit` (what :meth:`RemoteEngine.job_result` needs)."""

    id: str
    prompts: list
    texts: list[str]
    shape: tuple[int, ...]
    t0: float
    timings: dict[str, float] = field(default_factory=dict)
    upload_bytes: int = 0


class RemoteEngine:
    """An Engine whose inference runs on a TextSeg server (see :mod:`.server`)."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0, *,
                 poll_interval: float = 0.25, probabilities: bool = False, compress: bool = True) -> None:
        self.url = _check_url(url)
        self.api_key = api_key or None
        self.timeout = float(timeout)
        self.poll_interval = float(poll_interval)
        self.probabilities = probabilities
        self.compress = compress
        self.session = requests.Session()
        if self.api_key:
            self.session.headers["Authorization"] = f"Bearer {self.api_key}"
        self._info: dict[str, Any] | None = None
        self._vocab: dict[str, list[str]] = {}

    # -- HTTP -------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, timeout: float | None = None, **kw: Any) -> requests.Response:
        try:
            r = self.session.request(method, self.url + path, timeout=timeout or self.timeout, **kw)
        except requests.RequestException as exc:
            raise RemoteError(f"Could not reach {self.url}: {_reason(exc)}.", _HINT) from None
        if r.status_code >= 400:
            raise self._error(r)
        return r

    def _error(self, r: requests.Response) -> RemoteError:
        try:
            message = r.json().get("error") or r.text
        except ValueError:
            message = r.text[:300] or r.reason
        if r.status_code == 401:
            err = RemoteError(f"The server at {self.url} refused the API key: {message}",
                              "Enter the key the server was started with.")
        else:
            err = RemoteError(f"Server {self.url} answered {r.status_code}: {message}")
        err.status = r.status_code  # type: ignore[attr-defined]
        return err

    def info(self, refresh: bool = False) -> dict[str, Any]:
        """The server's ``/v1/info`` (version, model, device, limits)."""
        if self._info is None or refresh:
            self._info = self._request("GET", "/v1/info").json()
        return self._info

    @property
    def name(self) -> str:
        model = (self._info or {}).get("model")
        return f"{model} @ {self.url}" if model else f"remote {self.url}"

    # -- Engine protocol -----------------------------------------------------------------
    def vocabulary(self, modality: str) -> list[str]:
        m = normalize_modality(modality) or "ct"
        if m not in self._vocab:
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

    def segment(self, volume: Volume, prompts: Sequence, *, modality: str | None = None,
                roi_ras: tuple[Sequence[float], Sequence[float]] | None = None,
                progress: ProgressCallback | None = None, cancel: CancelToken | None = None) -> EngineResult:
        """Upload, poll with progress, fetch the masks (on ``volume``'s grid).

        Prompts are resolved here against the server's vocabulary (the same rule as a local
        engine); the server is sent each prompt's term, and the result is keyed by its text.
        The same steps without blocking: :meth:`submit`, :meth:`job_status`, :meth:`job_result`."""
        if cancel is not None:
            cancel.check()
        if progress:
            progress("upload", 0, 1)
        job = self.submit(volume, prompts, modality=modality, roi_ras=roi_ras)
        if progress:
            progress("upload", 1, 1)
        try:
            status = self._wait(job.id, progress, cancel)
        except BaseException:
            self._delete(job.id)
            raise
        if status["state"] == "cancelled":
            raise CancelledError("Segmentation cancelled on the server.")
        return self.job_result(job)

    def submit(self, volume: Volume, prompts: Sequence, *, modality: str | None = None,
               roi_ras: tuple[Sequence[float], Sequence[float]] | None = None) -> "RemoteJob":
        """Resolve, upload and start a job; returns at once (poll :meth:`job_status`)."""
        from ..knowledge.resolved import engine_prompts

        t0 = time.perf_counter()
        if not [p for p in prompts if (p if isinstance(p, str) else getattr(p, "text", "")).strip()]:
            raise TerminologyError("No prompt given.", "Name at least one structure, e.g. liver.")
        volume.validate(check_values=True)
        mod = normalize_modality(modality) if modality else volume.modality
        resolved = engine_prompts(self, prompts, mod)
        by_term: dict[str, str] = {}
        for p in resolved:
            by_term.setdefault(p.term, p.text)
        texts = list(by_term)
        body = protocol.encode_request(volume, texts, modality=mod, roi_ras=roi_ras,
                                       probabilities=self.probabilities, compress=self.compress)
        t = time.perf_counter()
        job = self._request("POST", "/v1/jobs", data=body,
                            headers={"Content-Type": protocol.CONTENT_TYPE}).json()
        return RemoteJob(job["id"], resolved, texts, tuple(volume.shape), t0,
                         {"upload": time.perf_counter() - t}, len(body))

    def job_status(self, job: "RemoteJob | str") -> dict[str, Any]:
        """The server's status of a job: state, stage, done, total, error (one short request)."""
        return self._request("GET", f"/v1/jobs/{getattr(job, 'id', job)}").json()

    def cancel_job(self, job: "RemoteJob | str") -> None:
        """Ask the server to stop the job (best effort)."""
        self._delete(getattr(job, "id", job))

    def job_result(self, job: "RemoteJob") -> EngineResult:
        """Fetch a finished job's masks as an :class:`EngineResult` keyed by prompt text.

        A failed job raises :class:`RemoteError` with the server's one-line reason."""
        t = time.perf_counter()
        r = self._request("GET", f"/v1/jobs/{job.id}/result")
        masks, probs, server_timings, info = protocol.decode_result(r.content)
        timings = dict(job.timings, download=time.perf_counter() - t)
        if any(tuple(m.shape) != job.shape for m in masks.values()) or set(masks) != set(job.texts):
            raise RemoteError(f"Server {self.url} returned masks that do not match the request "
                              f"(prompts {sorted(masks)}, expected {sorted(job.texts)}).", "Update the server.")
        timings.update({f"server_{k}": float(v) for k, v in server_timings.items()})
        timings["total"] = time.perf_counter() - job.t0
        info = {**info, "server": self.url, "upload_bytes": job.upload_bytes, "result_bytes": len(r.content)}
        res = EngineResult(masks={}, probabilities={}, timings=timings, info=info)
        found, reasons = info.pop("found", None) or {}, info.pop("reasons", None) or {}
        info.pop("prompts", None)
        for p in job.prompts:
            term = p.term
            res.masks[p.text] = masks[term]
            if term in probs:
                res.probabilities[p.text] = probs[term]
            res.found[p.text] = bool(found.get(term, masks[term].any()))
            res.reasons[p.text] = str(reasons.get(term, ""))
            res.prompts[p.text] = p
        return res

    def _wait(self, jid: str, progress: ProgressCallback | None, cancel: CancelToken | None) -> dict[str, Any]:
        last = None
        while True:
            if cancel is not None and cancel.cancelled:
                self._delete(jid)
                raise CancelledError("Segmentation cancelled by the user.")
            status = self._request("GET", f"/v1/jobs/{jid}").json()
            key = (status["stage"], status["done"], status["total"])
            if progress and key != last and status["total"]:
                progress(*key)
            last = key
            if status["state"] in ("done", "failed", "cancelled"):
                if status["state"] == "failed":  # the result endpoint carries the error and status code
                    self._request("GET", f"/v1/jobs/{jid}/result")
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


def test_connection(url: str, api_key: str | None = None, timeout: float = 10.0) -> tuple[bool, str]:
    """(ok, user-facing message) for the Slicer panel's "Test connection" button."""
    try:
        engine = RemoteEngine(url, api_key, timeout=timeout)
        info = engine.info()
    except RemoteError as exc:
        if getattr(exc, "status", None) == 401:
            return False, "The server refused the API key."
        return False, str(exc)
    except ValueError:
        return False, f"{url} answered, but not as a TextSeg server (no JSON). Check the URL and port."
    if info.get("server") != "TextSeg":
        return False, f"{url} is not a TextSeg server. Check the URL and port."
    return True, (f"Connected to TextSeg server {info.get('version', '?')} at {engine.url}, "
                  f"model {info.get('model', '?')} on {info.get('device', '?')}")


test_connection.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
