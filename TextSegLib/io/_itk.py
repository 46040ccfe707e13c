"""Small helpers around SimpleITK: quiet calls and wrapped error text."""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

import SimpleITK as sitk


class Captured:
    """Text ITK's C++ code wrote to stderr during a :func:`quiet_itk` block."""

    text: str = ""


_lock = threading.Lock()
_state = {"depth": 0, "saved": None, "sink": None}


def _redirect_enter() -> int | None:
    """Point fd 2 at a shared temporary file (reference-counted across threads);
    returns the offset where this caller's text starts, or None if not possible."""
    with _lock:
        if _state["depth"] == 0:
            try:
                sys.stderr.flush()
                saved = os.dup(2)
            except (OSError, ValueError):  # no usable fd 2 (some embedded consoles)
                return None
            sink = tempfile.TemporaryFile()
            os.dup2(sink.fileno(), 2)
            _state.update(saved=saved, sink=sink)
        _state["depth"] += 1
        return os.lseek(_state["sink"].fileno(), 0, os.SEEK_END)


def _read_at(fd: int, offset: int, size: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    end = os.lseek(fd, 0, os.SEEK_CUR)  # Windows: fd 2 shares this offset, so put it back
    os.lseek(fd, offset, os.SEEK_SET)
    try:
        return os.read(fd, size)
    finally:
        os.lseek(fd, end, os.SEEK_SET)


def _redirect_exit(start: int) -> str:
    with _lock:
        sink = _state["sink"]
        end = os.lseek(sink.fileno(), 0, os.SEEK_END)
        text = _read_at(sink.fileno(), start, min(end - start, 4000)) if end > start else b""
        _state["depth"] -= 1
        if _state["depth"] == 0:
            os.dup2(_state["saved"], 2)
            os.close(_state["saved"])
            sink.close()
            _state.update(saved=None, sink=None)
    return text.decode("utf-8", "replace")


@contextlib.contextmanager
def quiet_itk() -> Iterator[Captured]:
    """Silence ITK warnings and capture what its C++ code prints on stderr
    (file descriptor 2) so that it never reaches the user's console raw."""
    before = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    captured = Captured()
    start = _redirect_enter()
    try:
        yield captured
    finally:
        if start is not None:
            captured.text = _redirect_exit(start)
        sitk.ProcessObject.SetGlobalWarningDisplay(before)


def itk_reason(exc: BaseException, captured: Captured | None = None) -> str:
    """The useful part of an ITK exception, without source paths or pointers."""
    text = str(exc)
    if captured is not None and captured.text.strip():
        text = captured.text + "\n" + text
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    keep = []
    for ln in lines:
        ln = re.sub(r"^.*?(ITK ERROR|itk::ERROR|sitk::ERROR):\s*", "", ln)
        ln = re.sub(r"^Exception thrown in SimpleITK \S+:\s*", "", ln)
        ln = re.sub(r"/\S+\.(?:cxx|hxx|h|cpp):\d+:?", "", ln)
        ln = re.sub(r"\w+\(0x[0-9a-f]+\):\s*", "", ln)
        ln = re.sub(r"\[nrrd\]\s*", "", ln)
        ln = re.sub(r"^(WARNING|In)\b.*", "", ln).strip()
        if ln and ln not in keep:
            keep.append(ln)
    reason = " ".join(keep)[:300] or type(exc).__name__
    return reason.rstrip(". ")
