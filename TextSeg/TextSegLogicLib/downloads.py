"""SAT weights downloads from the panel: ``textseg models pull NAME`` in a child process.

Like inference, the download runs in another process (never a Python thread in
Slicer); :meth:`ModelDownload.poll` reads its last output line without blocking,
:meth:`ModelDownload.cancel` stops it and everything it started (inside Slicer the
command runs through CTK's launcher, which forwards no signal: see :mod:`.proctree`),
and a refused network comes back as the command's own one-line error with the manual
steps. The environment and window follow :mod:`.child_env`. The log in the temp folder
is deleted once the download is done or cancelled, and kept when it failed.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from .child_env import child_environment, popen_options
from .engine_process import LIB_PARENT, STOPPED
from .proctree import kill_tree


class ModelDownload:
    """One running ``textseg models pull`` (state: running / done / failed / cancelled)."""

    def __init__(self, model: str, dest: str = "", python: str = "") -> None:
        self.model = model
        cmd = [python or sys.executable, "-m", "TextSegLib.cli.main", "models", "pull", model]
        if dest:
            cmd += ["--to", dest]
        env = child_environment(python, LIB_PARENT)
        fd, name = tempfile.mkstemp(prefix="textseg-pull-", suffix=".log")
        self.log_path = Path(name)
        self._final: list[str] | None = None  # the log's lines once it is deleted
        with open(fd, "w") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=tempfile.gettempdir(), **popen_options())
        self.state = "running"

    def _finish(self, state: str) -> None:
        self.state = state
        if state != "failed":  # done or cancelled: nothing to look into later
            self._final = self.lines()
            self.log_path.unlink(missing_ok=True)

    def lines(self) -> list[str]:
        if self._final is not None:
            return list(self._final)
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
                self._finish("done" if code == 0 else "failed")
        line = self.last_line()
        if self.state == "failed":
            errors = [r for r in self.lines() if r.startswith("textseg: error: ")]
            if errors:
                line = errors[-1][len("textseg: error: "):]
        if self.state == "done":
            line = f"{self.model} downloaded. {line}".strip()
        return self.state, line or ("Downloading ..." if self.state == "running" else "")

    def cancel(self) -> None:
        """Stop the download and everything it started (SIGTERM to its group, SIGKILL after 5 s)."""
        if self.state != "running":
            return
        STOPPED.append((kill_tree(self.proc, grace_s=5.0), 0))
        self._finish("cancelled")
