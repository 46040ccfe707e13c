"""SAT weights downloads from the panel: ``textseg models pull NAME`` in a child process.

Like inference, the download runs in another process (never a Python thread in
Slicer); :meth:`ModelDownload.poll` reads its last output line without blocking,
:meth:`ModelDownload.cancel` stops it, and a refused network comes back as the
command's own one-line error with the manual steps.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .engine_process import LIB_PARENT


class ModelDownload:
    """One running ``textseg models pull`` (state: running / done / failed / cancelled)."""

    def __init__(self, model: str, dest: str = "", python: str = "") -> None:
        self.model = model
        cmd = [python or sys.executable, "-m", "TextSegLib.cli.main", "models", "pull", model]
        if dest:
            cmd += ["--to", dest]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(LIB_PARENT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        fd, name = tempfile.mkstemp(prefix="textseg-pull-", suffix=".log")
        self.log_path = Path(name)
        with os.fdopen(fd, "w") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=tempfile.gettempdir())
        self.state = "running"

    def lines(self) -> list[str]:
        try:
            return [r.strip() for r in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines() if r.strip()]
        except OSError:
            return []

    def last_line(self) -> str:
        rows = self.lines()
        return rows[-1] if rows else ""

    def poll(self) -> tuple[str, str]:
        """``(state, message)`` now, without waiting."""
        if self.state == "running":
            code = self.proc.poll()
            if code is not None:
                self.state = "done" if code == 0 else "failed"
        line = self.last_line()
        if self.state == "failed":
            errors = [r for r in self.lines() if r.startswith("textseg: error: ")]
            if errors:
                line = errors[-1][len("textseg: error: "):]
        if self.state == "done":
            line = f"{self.model} downloaded. {line}".strip()
        return self.state, line or ("Downloading ..." if self.state == "running" else "")

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.state = "cancelled"
