"""Stable machine-readable error codes of the TextSeg server.

Every error body is ``{"code": CODE, "error": "what is wrong. What to do."}`` (plus
``"choices"`` where the user must pick, e.g. an ambiguous prompt). Codes never change
meaning; clients branch on ``code``, people read ``error``.
"""
from __future__ import annotations

from typing import Any

from ..errors import (CancelledError, DicomSeriesError, GeometryError, InputFileError, ModalityError, ModelError,
                      TerminologyError, TextSegError, VolumeTooLargeError)

#: code -> (HTTP status, meaning)
CODES: dict[str, tuple[int, str]] = {
    "bad_request": (400, "the body or a field does not follow the API (see the message)"),
    "api_version": (400, "the client speaks another API version than the server"),
    "unauthorized": (401, "missing or wrong API key"),
    "job_unknown": (404, "no such job (never created, or deleted)"),
    "image_unknown": (404, "the server does not hold this image (upload it with PUT /v1/images)"),
    "not_found": (404, "no such endpoint"),
    "method_not_allowed": (405, "the endpoint does not take this method"),
    "job_not_finished": (409, "the job has no result yet"),
    "job_cancelled": (410, "the job was cancelled"),
    "job_expired": (410, "the job's result was dropped (time to live or memory budget)"),
    "upload_too_large": (413, "the body exceeds --max-upload-mb"),
    "volume_too_large": (413, "the volume exceeds --max-voxels"),
    "memory_limit": (413, "the decoded upload alone exceeds --max-decoded (it can never fit)"),
    "unsupported_media_type": (415, "the Content-Type is not one the endpoint takes"),
    "prompt_ambiguous": (422, "a prompt fits several structures; pick one of 'choices'"),
    "prompt_unknown": (422, "a prompt names nothing the served model can segment"),
    "prompt_invalid": (422, "a prompt cannot be resolved"),
    "modality_unsupported": (422, "the served model was not trained on this modality"),
    "invalid_input": (422, "the volume is not a valid scan (geometry or values)"),
    "segmentation_failed": (422, "the engine refused the job (see the message)"),
    "client_limit": (429, "this client already has its maximum number of jobs queued or running"),
    "too_many_streams": (429, "this client already follows its maximum number of event streams"),
    "internal": (500, "a bug in the server; the message names it"),
    "model_unavailable": (503, "the server's model could not be loaded"),
    "queue_full": (503, "the job queue is full; retry after Retry-After seconds"),
    "memory_busy": (503, "other uploads and kept results hold the memory budget now; retry after Retry-After"),
    "too_many_connections": (503, "the server or this address has its maximum of open connections"),
}


class ApiError(TextSegError):
    """An error the server answers as JSON ``{"code", "error", ...}`` with the code's status."""

    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None,
                 status: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.status = status or CODES[code][0]
        self.message = message
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "error": self.message, **self.extra}


def from_textseg_error(exc: BaseException) -> ApiError:
    """The API error for an exception raised by the engine, resolution or decoding."""
    from ..knowledge.resolved import AmbiguousPromptError, UnknownTermError
    from .protocol import ProtocolError

    msg = str(exc)
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ProtocolError):
        return ApiError("api_version" if "API version" in msg else "bad_request", msg)
    if isinstance(exc, VolumeTooLargeError):
        return ApiError("volume_too_large", msg)
    if isinstance(exc, AmbiguousPromptError):
        return ApiError("prompt_ambiguous", msg, prompt=exc.text,
                        choices=[{"name": c.name, "code": c.code} for c in exc.candidates])
    if isinstance(exc, UnknownTermError):
        return ApiError("prompt_unknown", msg)
    if isinstance(exc, ModalityError):
        return ApiError("modality_unsupported", msg)
    if isinstance(exc, TerminologyError):
        return ApiError("prompt_invalid", msg)
    if isinstance(exc, CancelledError):
        return ApiError("job_cancelled", msg)
    if isinstance(exc, ModelError):
        return ApiError("model_unavailable", f"The server's model could not be loaded: {msg}")
    if isinstance(exc, (InputFileError, DicomSeriesError, GeometryError)):
        return ApiError("invalid_input", msg)
    if isinstance(exc, TextSegError):
        return ApiError("segmentation_failed", msg)
    return ApiError("internal", f"Internal server error: {type(exc).__name__}: {exc}")
