"""Start a cohort run as a detached process and watch it (for the Slicer module or any GUI).

The run is an ordinary ``textseg batch`` in its own session, so closing the caller (or Slicer)
does not stop it; its progress is read from the run folder (``status.json``, the manifest and
the folder lock), so a restarted caller finds it again.

>>> pid = start_batch("scans/", "run1", ["liver", "spleen"])
>>> read_progress("run1")["state"]          # 'running', 'finished', 'interrupted', ...
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from .manifest import read_manifest

LOG_NAME = "batch.log"


def start_batch(source: str | os.PathLike, run_dir: str | os.PathLike, prompts: Sequence[str],
                extra_args: Sequence[str] = (), python: str | None = None) -> int:
    """Start ``textseg batch SOURCE -o RUN_DIR -p ...`` detached; returns its process id.
    Output goes to ``RUN_DIR/batch.log``."""
    run = Path(run_dir).expanduser()
    run.mkdir(parents=True, exist_ok=True)
    args = [python or sys.executable, "-m", "TextSegLib.cli.main", "batch", str(source), "-o", str(run)]
    for p in prompts:
        args += ["-p", p]
    args += list(extra_args)
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(run / LOG_NAME, "ab") as log:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, close_fds=True)
    return proc.pid


def running_pid(run_dir: str | os.PathLike) -> int | None:
    """The pid of the ``textseg batch`` holding the run folder's lock, or ``None``."""
    lock = Path(run_dir) / ".lock"
    if not lock.is_file():
        return None
    fd = os.open(str(lock), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except OSError:
        text = lock.read_text().strip()
        return int(text) if text.isdigit() else -1
    finally:
        os.close(fd)


def read_progress(run_dir: str | os.PathLike) -> dict:
    """``state`` ('starting', 'running', 'finished', 'interrupted', 'stopped'), counts from the
    manifest (``done``, ``failed``, ``running``), ``total`` and ``eta_s`` when known, ``pid``."""
    run = Path(run_dir)
    status = {}
    try:
        status = json.loads((run / "status.json").read_text())
    except (OSError, ValueError):
        pass
    counts = read_manifest(run).counts()
    pid = running_pid(run)
    state = status.get("state", "starting" if pid else "stopped")
    if pid is None and state == "running":
        state = "stopped"  # killed without a chance to say so
    return {"state": state, "pid": pid, "done": counts.get("done", 0), "failed": counts.get("failed", 0),
            "running": counts.get("running", 0), "total": status.get("total"), "eta_s": status.get("eta_s"),
            "report": str(run / "report.html") if (run / "report.html").is_file() else None}


def stop_batch(run_dir: str | os.PathLike, now: bool = False) -> bool:
    """Ask a running batch to stop after its current case(s) (``now``: abort them too)."""
    pid = running_pid(run_dir)
    if not pid or pid < 0:
        return False
    os.kill(pid, signal.SIGINT)
    if now:
        import time

        time.sleep(0.2)
        os.kill(pid, signal.SIGINT)
    return True
