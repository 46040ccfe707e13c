"""The run manifest: ``manifest.jsonl`` in the run folder, the single source of truth.

One JSON object per line, appended and fsynced by the coordinator only (workers return their
records to it). ``{"kind": "run", ...}`` lines record each invocation's settings;
``{"kind": "case", "case_id": ..., "state": ...}`` lines record a case starting
(``running``) and ending (``done`` / ``failed``). The last line of a case wins. A line cut
short by a crash is ignored (and the next record starts on a fresh line).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..errors import OutputPathError

MANIFEST_NAME = "manifest.jsonl"
DONE, FAILED, RUNNING = "done", "failed", "running"


@dataclass
class ManifestState:
    """What the manifest says: the latest record per case and every run record."""

    cases: dict[str, dict] = field(default_factory=dict)
    runs: list[dict] = field(default_factory=list)
    bad_lines: int = 0

    def state(self, case_id: str) -> str:
        return self.cases.get(case_id, {}).get("state", "")

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.cases.values():
            out[r.get("state", "")] = out.get(r.get("state", ""), 0) + 1
        return out


def read_manifest(run_dir: str | Path) -> ManifestState:
    """Parse ``manifest.jsonl`` (missing file: empty state)."""
    st = ManifestState()
    p = Path(run_dir) / MANIFEST_NAME
    if not p.is_file():
        return st
    with p.open("rb") as fh:
        data = fh.read()
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            st.bad_lines += 1
            continue
        if not isinstance(rec, dict):
            st.bad_lines += 1
        elif rec.get("kind") == "case" and rec.get("case_id"):
            st.cases[rec["case_id"]] = rec
        elif rec.get("kind") == "run":
            st.runs.append(rec)
    return st


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ManifestWriter:
    """Appends records to the manifest; holds the run folder's lock while open."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / MANIFEST_NAME
        self._lock_fd = os.open(str(self.run_dir / ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise OutputPathError(f"{self.run_dir}: another `textseg batch` is running on this run folder.",
                                      "Wait for it to finish, or stop it first.") from None
            raise
        os.ftruncate(self._lock_fd, 0)
        os.write(self._lock_fd, f"{os.getpid()}\n".encode())
        self._fh = open(self.path, "ab")
        if self._fh.tell() > 0:  # a crash may have cut the last line short: start a fresh one
            with open(self.path, "rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    self._fh.write(b"\n")
        fsync_dir(self.run_dir)

    def append(self, record: dict) -> None:
        rec = {"t": round(time.time(), 3), **record}
        self._fh.write(json.dumps(rec, separators=(",", ":"), default=str).encode() + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def append_many(self, records: Iterable[dict]) -> None:
        for r in records:
            rec = {"t": round(time.time(), 3), **r}
            self._fh.write(json.dumps(rec, separators=(",", ":"), default=str).encode() + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None  # type: ignore[assignment]
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)

    def __enter__(self) -> "ManifestWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
