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
  application exit, or a change of model, device, folder or interpreter). On Linux the
  process also dies with its parent.
"""
from __future__ import annotations

import atexit
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

#: the folder holding the TextSegLib package this module uses (put first on the engine's path)
LIB_PARENT = Path(__import__("TextSegLib").__file__).resolve().parents[1]
_LIVE: "weakref.WeakSet[EngineProcess]" = weakref.WeakSet()


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


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except Exception:
        pass


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
               "--port", str(self.port), "--device", c.device or "auto"]
        cmd += ["--model-path", c.model_dir] if c.model_dir else ["--model", c.model]
        return cmd

    def ensure_started(self) -> None:
        """Start the process unless it runs (returns at once; :meth:`check` says when it is ready)."""
        if self.running():
            return
        if self.proc is not None:  # it died since the last run: say so once, then start a new one
            tail = self.log_tail()
            self.last_error = (f"The TextSeg engine process (PID {self.proc.pid}) had stopped with exit code "
                               f"{self.proc.returncode}{': ' + tail if tail else ''}; restarted.")
        self._close()
        self.port = free_port()
        self._token = secrets.token_urlsafe(24)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(LIB_PARENT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env["TEXTSEG_API_KEY"] = self._token
        env.setdefault("HF_HUB_OFFLINE", "1")
        if self.config.threads:
            env["OMP_NUM_THREADS"] = str(self.config.threads)
        fd, name = tempfile.mkstemp(prefix="textseg-engine-", suffix=".log")
        self._log_path = Path(name)
        self._log = os.fdopen(fd, "w")
        try:
            self.proc = subprocess.Popen(
                self.command(), env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                cwd=tempfile.gettempdir(), preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        except OSError as exc:
            self._close()
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
            tail = self.log_tail()
            self.last_error = (f"The TextSeg engine process (PID {self.proc.pid}) stopped with exit code {code}"
                               f"{': ' + tail if tail else ''}. It will be restarted on the next run.")
            self._close()
            raise EngineProcessError(self.last_error)
        if self._ready:
            return "ready"
        if time.monotonic() - self._started_at > self.startup_timeout_s:
            self.stop()
            raise EngineProcessError(f"The TextSeg engine did not start within {self.startup_timeout_s:.0f} s.",
                                     "See the engine log, or pick a smaller model.")
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

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 5 s) and forget it."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._close()

    def _close(self) -> None:
        self.proc = None
        self._ready = False
        self._client = None
        if self._log is not None:
            try:
                self._log.close()
            except OSError:
                pass
            self._log = None

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
