"""The engine process: ``textseg serve`` on 127.0.0.1, started lazily, talked to by ``RemoteEngine``.

Inference never runs in Slicer's own interpreter: inside Slicer the main thread holds
Python's GIL while Qt's event loop idles (PythonQt), so a Python worker thread there
crawls. The engine process has its own interpreter; the module only sends short HTTP
requests to it from timer ticks. Local and remote runs then differ only by address.

* Started on first use (:meth:`EngineProcess.ensure_started`, non-blocking), on a random
  free port with a random token (passed in the environment, never on the command line or
  in a log), on Slicer's Python or on the interpreter the user names in Settings.
* :meth:`check` tells "starting" / "ready" without blocking, and turns a dead process into
  one line (:class:`EngineProcessError`) naming the exit code and the last line of its log;
  the next run starts a fresh process.
* The model loads once, at start, and stays loaded until :meth:`stop` (module cleanup,
  application exit, or a change of model, device, folder or interpreter).
* Inside Slicer the interpreter is CTK's launcher, which starts the real interpreter as its
  child and forwards no signal: :meth:`stop` ends the whole process tree
  (:func:`~.proctree.kill_tree`), and the server gets ``--parent-pid`` (this process), so
  it also ends when Slicer crashes. The environment is Slicer's startup environment for
  an interpreter that is not Slicer's own (:mod:`.child_env`).
* The log in the temp folder is deleted when the process is stopped; after a crash the
  last one is kept, and the error names it.
* :func:`engine_leftovers` lists what is still alive or bound after the stops so far
  (benchmarks, tests).
"""
from __future__ import annotations

import atexit
import collections
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from TextSegLib.errors import RemoteError

from .child_env import child_environment, popen_options
from .proctree import Tree, kill_tree, leftovers

#: the folder holding the TextSegLib package this module uses (put first on the engine's path)
LIB_PARENT = Path(__import__("TextSegLib").__file__).resolve().parents[1]
_LIVE: "weakref.WeakSet[EngineProcess]" = weakref.WeakSet()
#: (process tree before the stop, port) of the recent stops, for :func:`engine_leftovers`
STOPPED: "collections.deque[tuple[Tree, int]]" = collections.deque(maxlen=64)
_KEPT_LOG: list[Path] = []  # the last crash log (older ones are deleted)


class EngineProcessError(RemoteError):
    """The engine process could not start, or stopped."""


@dataclass(frozen=True)
class EngineConfig:
    """What a process is started with; a different config means a different process."""

    model: str = "textseg-mini"
    device: str = "auto"
    model_dir: str = ""
    python: str = ""  # "" = this interpreter (Slicer's Python inside Slicer)
    threads: int = 0  # 0 = torch's default


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def engine_leftovers(wait_s: float = 10.0) -> list[str]:
    """Processes still alive and ports still bound from every engine stop so far (empty: none)."""
    trees = [t for t, _ in STOPPED]
    return leftovers(trees, [port for _, port in STOPPED], wait_s=wait_s)


def keep_crash_log(path: Path | None) -> None:
    """Keep ``path`` (a crashed process's log) and delete the one kept before."""
    if path is None:
        return
    for old in [p for p in _KEPT_LOG if p != path]:
        old.unlink(missing_ok=True)
        _KEPT_LOG.remove(old)
    if path not in _KEPT_LOG:
        _KEPT_LOG.append(path)


class EngineProcess:
    """One local engine process (see the module docstring)."""

    def __init__(self, config: EngineConfig | None = None, *, startup_timeout_s: float = 600.0) -> None:
        self.config = config or EngineConfig()
        self.startup_timeout_s = float(startup_timeout_s)
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self._token = ""
        self._log_path: Path | None = None
        self._log = None
        self._started_at = 0.0
        self._ready = False
        self._client: Any = None
        self.starts = 0  # how many processes this object has started (restarts after a crash count)
        self.last_error = ""
        _LIVE.add(self)

    # -- lifecycle -------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        c = self.config
        cmd = [c.python or sys.executable, "-m", "TextSegLib.cli.main", "serve", "--host", "127.0.0.1",
               "--port", str(self.port), "--device", c.device or "auto", "--parent-pid", str(os.getpid())]
        cmd += ["--model-path", c.model_dir] if c.model_dir else ["--model", c.model]
        return cmd

    def ensure_started(self) -> None:
        """Start the process unless it runs (returns at once; :meth:`check` says when it is ready)."""
        if self.running():
            return
        if self.proc is not None:  # it died since the last run: say so once, then start a new one
            self.last_error = (f"The TextSeg engine process (PID {self.proc.pid}) had stopped with exit code "
                               f"{self.proc.returncode}{self._crash_detail()}; restarted.")
            self.stop(keep_log=True)  # what the dead launcher had started goes too
        self._close()
        self.port = free_port()
        self._token = secrets.token_urlsafe(24)
        extra = {"TEXTSEG_API_KEY": self._token}
        if self.config.threads:
            extra["OMP_NUM_THREADS"] = str(self.config.threads)
        env = child_environment(self.config.python, LIB_PARENT, extra, defaults={"HF_HUB_OFFLINE": "1"})
        fd, name = tempfile.mkstemp(prefix="textseg-engine-", suffix=".log")
        self._log_path = Path(name)
        self._log = os.fdopen(fd, "w")
        try:
            self.proc = subprocess.Popen(
                self.command(), env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                cwd=tempfile.gettempdir(), **popen_options())
        except OSError as exc:
            self._close(delete_log=True)
            raise EngineProcessError(f"The TextSeg engine could not be started with {self.command()[0]} ({exc}).",
                                     "Check the engine Python in TextSeg's Settings (empty = Slicer's own).") from None
        self._started_at = time.monotonic()
        self._ready = False
        self._client = None
        self.starts += 1

    def log_tail(self, lines: int = 1) -> str:
        """The last lines the process wrote (its error, after a crash)."""
        try:
            text = self._log_path.read_text(encoding="utf-8", errors="replace") if self._log_path else ""
        except OSError:
            return ""
        rows = [r.strip() for r in text.splitlines() if r.strip()]
        return " | ".join(rows[-lines:])

    def _crash_detail(self) -> str:
        """': <last log line> (log: <path>)' for a process that died by itself."""
        tail = self.log_tail()
        where = f" (log: {self._log_path})" if self._log_path is not None else ""
        return f"{': ' + tail if tail else ''}{where}"

    def check(self, grace_s: float = 0.0) -> str:
        """'ready' or 'starting' (non-blocking); raises :class:`EngineProcessError` if it died.

        ``grace_s``: after a failed request, wait for a dying process to exit, at most 50 ms per
        call (a GUI tick; the caller asks again on the next one). While the engine starts, each
        call steps one ``GET /v1/info`` on a non-blocking socket for at most :attr:`PROBE_BUDGET_S`:
        the request waits in the listening socket's backlog while the model loads, and its answer
        (our token, our API version) says the engine is ready."""
        if self.proc is None:
            raise EngineProcessError("The TextSeg engine process is not started.")
        code = self.proc.poll()
        if code is None and grace_s > 0:
            try:
                code = self.proc.wait(min(grace_s, 0.05))
            except subprocess.TimeoutExpired:
                code = None
        if code is not None:
            self.last_error = (f"The TextSeg engine process (PID {self.proc.pid}) stopped with exit code {code}"
                               f"{self._crash_detail()}. It will be restarted on the next run.")
            self.stop(keep_log=True)  # what the dead launcher had started goes too
            raise EngineProcessError(self.last_error)
        if self._ready:
            return "ready"
        if time.monotonic() - self._started_at > self.startup_timeout_s:
            log = self._log_path
            self.stop(keep_log=True)
            raise EngineProcessError(f"The TextSeg engine did not start within {self.startup_timeout_s:.0f} s.",
                                     f"See the engine log {log}, or pick a smaller model.")
        from TextSegLib.remote.stepped import Call

        proc, probe = getattr(self, "_probe", (None, None))
        if proc is not self.proc or probe is None:  # a new process, or the last probe ended unanswered
            probe = Call(self.client(), "GET", "/v1/info", timeout_s=self.startup_timeout_s)
            probe.request.connect_timeout_s = 1.0
            self._probe = (self.proc, probe)
        if not probe.step(self.PROBE_BUDGET_S):
            return "starting"
        self._probe = (self.proc, None)
        if probe.error is not None:
            if getattr(probe.error, "status", None) != 401:
                return "starting"  # not listening yet (refused, lost): a new probe on the next call
            other = True
        else:
            from TextSegLib.remote.client import check_api_version

            try:
                check_api_version(self.url, probe.result)
                other = False
            except RemoteError:
                other = True
        if other:  # someone else's server on our port (not our token, or not TextSeg)
            self.stop()
            raise EngineProcessError(f"Port {self.port} is answered by another program.",
                                     "Run again: a new port is chosen.") from None
        self.client()._info = probe.result
        self._ready = True
        return "ready"

    #: the most one :meth:`check` spends on its probe (a GUI tick must stay short)
    PROBE_BUDGET_S = 0.005

    def client(self) -> Any:
        """A ``RemoteEngine`` for this process (uploads uncompressed: loopback)."""
        if self._client is None:
            from TextSegLib.remote import RemoteEngine

            self._client = RemoteEngine(self.url, api_key=self._token, timeout=30.0, compress=False)
        return self._client

    def wait_ready(self, timeout_s: float | None = None, poll_s: float = 0.1) -> None:
        """Block until ready (scripts, tests, benchmarks; the module polls :meth:`check` instead)."""
        self.ensure_started()
        end = time.monotonic() + (timeout_s if timeout_s is not None else self.startup_timeout_s)
        while self.check() != "ready":
            if time.monotonic() > end:
                raise EngineProcessError("The TextSeg engine did not become ready in time.")
            time.sleep(poll_s)

    def stop(self, keep_log: bool = False) -> None:
        """Stop the process and all it started (SIGTERM, then SIGKILL after 5 s; Windows:
        ``taskkill /T /F``) and forget it. Its log is deleted, unless it had crashed already."""
        proc = self.proc
        if proc is not None:
            crashed = proc.poll() not in (None, 0)
            STOPPED.append((kill_tree(proc, grace_s=5.0), self.port))
            self._close(keep_log=keep_log or crashed, delete_log=True)
        else:
            self._close()

    def _close(self, keep_log: bool = False, delete_log: bool = False) -> None:
        """Forget the process; ``keep_log``: keep its log as the last crash log, ``delete_log``: delete it."""
        self.proc = None
        self._ready = False
        self._client = None
        if self._log is not None:
            try:
                self._log.close()
            except OSError:
                pass
            self._log = None
        if keep_log:
            keep_crash_log(self._log_path)
        elif delete_log and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.stop()
        except Exception:
            pass


@atexit.register
def stop_all() -> None:
    """Stop every engine process this interpreter started (application exit)."""
    for p in list(_LIVE):
        try:
            p.stop()
        except Exception:
            pass
