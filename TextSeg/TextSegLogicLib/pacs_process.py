"""Test connection and Send to PACS as a child process polled from the panel's timer tick.

``python -m TextSegLib.pacs.job FOLDER`` (:mod:`TextSegLib.pacs.job`) does the network and the
DICOM SEG writing; the GUI thread only writes the job (masks as packed bits), starts the process
and, each tick, checks ``poll()`` and one small result file, so no tick waits on the network.
Like the engine, it starts from Slicer's startup environment where that applies and in its own
session, and :meth:`PacsProcess.cancel` ends its whole tree (Slicer's launcher forwards no signals). The secret travels in the child's environment only.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from TextSegLib.pacs import job as pacs_job

from .child_env import child_environment, popen_options
from .engine_process import LIB_PARENT
from .proctree import kill_tree

AUTH_VARS = ("TEXTSEG_DICOMWEB_TOKEN", "TEXTSEG_DICOMWEB_USER")


def child_env(user: str = "", secret: str = "", python: str = "") -> dict[str, str]:
    """The engine's child environment (:func:`~.child_env.child_environment`) plus the credentials
    of the fields (if any): ``user`` + ``secret`` is HTTP Basic, ``secret`` alone a bearer token,
    neither: the library's own sources (environment, ``~/.textseg/dicomweb.json``)."""
    env = child_environment(python, LIB_PARENT)
    user, secret = user.strip(), secret.strip()
    if user:
        env.pop("TEXTSEG_DICOMWEB_TOKEN", None)
        env["TEXTSEG_DICOMWEB_USER"] = f"{user}:{secret}" if secret else user
    elif secret:
        env.pop("TEXTSEG_DICOMWEB_USER", None)
        env["TEXTSEG_DICOMWEB_TOKEN"] = secret
    return env


class PacsProcess:
    """One running PACS job (``test`` or ``send``); :meth:`poll` never blocks."""

    def __init__(self, what: str, folder: Path, user: str = "", secret: str = "", python: str = "") -> None:
        self.what = what
        self.folder = folder
        self.secret = secret
        self.log_path = folder / "job.log"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [python or sys.executable, "-m", "TextSegLib.pacs.job", str(folder)],
                env=child_env(user, secret, python), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=tempfile.gettempdir(), **popen_options())

    @classmethod
    def test(cls, url: str, user: str = "", secret: str = "", python: str = "") -> "PacsProcess":
        folder = Path(tempfile.mkdtemp(prefix="textseg-pacs-"))
        pacs_job.write_test_job(folder, url)
        return cls("test", folder, user, secret, python)

    @classmethod
    def send(cls, segmentation: Any, source_files: list[str], url: str, user: str = "", secret: str = "",
             python: str = "") -> "PacsProcess":
        folder = Path(tempfile.mkdtemp(prefix="textseg-pacs-"))
        pacs_job.write_send_job(folder, segmentation, source_files, url)
        return cls("send", folder, user, secret, python)

    def poll(self) -> dict | None:
        """None while it runs; then its result (``ok``, ``message``, ``seg_path`` for a send)."""
        code = self.proc.poll()
        if code is None:
            return None
        result = pacs_job.read_result(self.folder)
        if result is None:
            tail = ""
            try:
                rows = [r.strip() for r in self.log_path.read_text(errors="replace").splitlines() if r.strip()]
                tail = rows[-1] if rows else ""
            except OSError:
                pass
            result = {"ok": False, "message": f"The PACS {self.what} process stopped (exit code {code})"
                                              f"{': ' + tail if tail else ''}."}
        result["message"] = pacs_job.one_line(result.get("message", ""), self.secret)
        return result

    def cancel(self) -> None:
        """Stop the child and anything it started, at once (no grace: nothing of it needs saving)."""
        if self.proc.poll() is None:
            kill_tree(self.proc, grace_s=0.0)

    def cleanup(self) -> None:
        """Remove the job folder (the SEG is in the DICOM database by then)."""
        shutil.rmtree(self.folder, ignore_errors=True)
